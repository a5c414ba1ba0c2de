"""Sending webhook deliveries: claim due ones from the outbox, POST them, record how it went.

The outbox and its rules are in `meta/webhooks.py`; this module only moves bytes. Each
delivery is POSTed as JSON with headers a receiver checks:

- `X-Modelkeep-Delivery`: the delivery's id, the same on every retry: drop a repeat by it;
- `X-Modelkeep-Event`: its kind (`stage.changed`, ...);
- `X-Modelkeep-Timestamp`: unix seconds when this attempt was sent;
- `X-Modelkeep-Signature`: `sha256=` and the hex HMAC-SHA256 of `f"{timestamp}.{body}"`
  with the webhook's secret (absent when the webhook has none); `verify_signature` checks it.

The secret is read from the environment variable the webhook names when a delivery is
sent, never stored: the database (often shared, sometimes pushed) holds only its name.
A 2xx answer is delivered; anything else, a redirect included, or no answer within the
timeout, is retried later with the error recorded as one line.

Several dispatchers (one per server replica) may run against one database: each takes
what it sends under a lease, so they never send one delivery at the same time, and one
that dies leaves its deliveries to be claimed again once the lease ends.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from modelkeep.redact import mask_url

if TYPE_CHECKING:  # imported where used: a receiver checking signatures needs neither
    from modelkeep.meta import Database
    from modelkeep.meta import webhooks as outbox

log = logging.getLogger(__name__)

SIGNATURE_PREFIX = "sha256="


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The X-Modelkeep-Signature header of body sent at timestamp."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes | str,
    header: str | None,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether a delivery is genuine: header is the signature of body at timestamp, and
    timestamp is within tolerance seconds of now (so a captured delivery cannot be
    replayed later). For a receiver: pass the raw body bytes, before parsing them."""
    if not header:
        return False
    try:
        sent = int(str(timestamp).strip())
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(secret, str(timestamp).strip(), raw).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt: delivered, pending (to be retried) or failed (given up)."""

    delivery: int
    webhook: int
    kind: str
    status: str
    attempts: int
    error: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "delivery": self.delivery,
            "webhook": self.webhook,
            "event": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
        }


def _ignore(_outcome: Outcome) -> None:
    """The callback that does nothing."""


def _one_line(text: str, url: str, limit: int = 300) -> str:
    """An error fit to record: one line, the URL (whose path may be a token) masked."""
    line = " ".join(text.split())
    if url:
        line = line.replace(url, mask_url(url))
    return line[:limit]


class Dispatcher:
    """Sends due deliveries of one database; `run_once` for a pass, `run_forever` for a
    thread or a `modelkeep webhook deliver --watch` process.

    A batch is sent by `workers` threads at once, so one slow receiver delays the others
    by at most the timeout; lease must exceed the time a batch can take.
    """

    def __init__(
        self,
        db: Database,
        *,
        timeout: float = 10.0,
        lease: float = 60.0,
        workers: int = 8,
        retry: outbox.Retry | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        import httpx

        from modelkeep.meta import webhooks as outbox

        self.db = db
        self.lease = timedelta(seconds=lease)
        self.workers = max(1, workers)
        self.retry = retry or outbox.Retry()
        self._outbox = outbox
        self.environ = os.environ if environ is None else environ
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,  # a redirect could carry a signed delivery elsewhere
            headers={"User-Agent": "modelkeep-webhooks"},
            trust_env=False,  # no proxy from the environment sees the deliveries
        )
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="modelkeep-webhook")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- one attempt ----------------------------------------------------------------------

    def send(self, claimed: outbox.Claimed) -> str:
        """POST one delivery; "" when the receiver answered 2xx, else why not (one line)."""
        import httpx

        d = claimed.delivery
        body = d.body()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Modelkeep-Delivery": str(d.id),
            "X-Modelkeep-Event": d.kind,
            "X-Modelkeep-Timestamp": timestamp,
        }
        if claimed.secret_env:
            secret = self.environ.get(claimed.secret_env)
            if not secret:
                return (
                    f"environment variable {claimed.secret_env} (the webhook's signing "
                    "secret) is not set where the dispatcher runs; set it there"
                )
            headers["X-Modelkeep-Signature"] = sign(secret, timestamp, body)
        try:
            response = self._client.post(claimed.url, content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            reason = str(exc) or "no reason given"
            return _one_line(f"{type(exc).__name__}: {reason}", claimed.url)
        if 200 <= response.status_code < 300:
            return ""
        return _one_line(f"HTTP {response.status_code} {response.reason_phrase}", claimed.url)

    def _record(self, claimed: outbox.Claimed, error: str) -> Outcome:
        d = claimed.delivery
        now = datetime.now(UTC)
        if not error:
            self._outbox.mark_delivered(self.db, d.id, now)
            status = "delivered"
        else:
            status = self._outbox.mark_failed(self.db, d, error, now, self.retry)
        return Outcome(d.id, d.webhook_id, d.kind, status, d.attempts, error)

    # -- passes -------------------------------------------------------------------------

    def run_once(self, on_outcome: Callable[[Outcome], None] = _ignore) -> list[Outcome]:
        """Send what is due now, a batch at a time, until nothing due is left (a delivery
        that fails here is due again only after its retry delay)."""
        outcomes: list[Outcome] = []
        tried: set[int] = set()
        while True:
            batch = self._outbox.claim(
                self.db, datetime.now(UTC), lease=self.lease, limit=self.workers
            )
            errors = list(self._pool.map(self.send, batch))
            for claimed, error in zip(batch, errors, strict=True):
                outcome = self._record(claimed, error)
                outcomes.append(outcome)
                on_outcome(outcome)
            again = any(c.delivery.id in tried for c in batch)
            tried.update(c.delivery.id for c in batch)
            if len(batch) < self.workers or again:
                return outcomes

    def run_forever(
        self,
        stop: threading.Event,
        interval: float = 1.0,
        on_outcome: Callable[[Outcome], None] = _ignore,
    ) -> None:
        """Pass after pass, interval seconds apart, until stop is set. A failing pass (the
        database unreachable for a moment) is logged and tried again: webhooks do not
        stop for good because of one bad minute."""
        while not stop.is_set():
            try:
                self.run_once(on_outcome)
            except Exception:
                log.exception("webhook deliveries failed; trying again in %.1fs", interval)
            stop.wait(interval)
