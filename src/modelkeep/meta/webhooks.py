"""Webhooks as rows: who wants to hear of which changes, and the outbox of deliveries.

A delivery row is written by the transaction that makes its change (`enqueue`, called
from the chain's `append` and from `create_version`), so it exists exactly when the
change committed: a change rolled back sends nothing, and a committed change is sent even
if the process that made it dies the next moment (the transactional outbox).

Dispatchers (`modelkeep.webhooks`) `claim` due deliveries under a lease: the claim moves
`next_at` past the lease, so another dispatcher (another server replica) leaves them
alone meanwhile; PostgreSQL claims with FOR UPDATE SKIP LOCKED, SQLite's write lock
serialises claims. A dispatcher that dies mid-delivery leaves its deliveries to be
claimed again when the lease ends, with the same id: delivery is at least once, and a
receiver drops a repeat by its delivery id.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, Row, Table, Update, insert, select, update
from sqlalchemy.orm import Session

from modelkeep.errors import InvalidArgument, InvalidWebhookUrl, UnknownEventKind, WebhookNotFound
from modelkeep.meta.db import Database, session_query
from modelkeep.meta.models import DeliveryRow, EventRow, WebhookRow
from modelkeep.redact import has_credentials, mask_url
from modelkeep.refs import content_id

KINDS = (
    "version.created",
    "version.deleted",
    "stage.changed",
    "alias.moved",
    "rollback",
    "approval",
    "approval.requested",
    "override",
)
ALL = "*"  # a webhook's events: every kind, those added later too
# The registry's event actions (meta/registry.py) and the kind each is delivered as.
ACTION_KINDS = {
    "register": "stage.changed",
    "promote": "stage.changed",
    "archive": "stage.changed",
    "rollback": "rollback",
    "approve": "approval",
    "request": "approval.requested",
    "alias-set": "alias.moved",
    "alias-remove": "alias.moved",
    "override": "override",
    "delete": "version.deleted",
}
STATUSES = ("pending", "delivered", "failed", "cancelled")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SESSION_KEY = "webhooks"  # s.info: the active webhooks, read once per transaction


# -- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    url: str
    events: tuple[str, ...]
    model_glob: str
    secret_env: str | None  # the environment variable holding the signing secret
    created_at: datetime
    removed_at: datetime | None = None

    def wants(self, kind: str, model: str) -> bool:
        return _wants(self.events, self.model_glob, kind, model)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": mask_url(self.url),  # a query string may carry a token: never printed
            "events": list(self.events),
            "model": self.model_glob,
            "secret_env": self.secret_env,
            "created_at": self.created_at.isoformat(),
            "removed_at": self.removed_at.isoformat() if self.removed_at else None,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    webhook_id: int
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_at: datetime  # when it is due, or (while claimed) when its lease ends
    last_error: str
    created_at: datetime
    delivered_at: datetime | None

    def body(self) -> bytes:
        """The JSON document POSTed: the same bytes on every attempt."""
        doc = {
            "delivery": self.id,
            "event": self.kind,
            "created_at": self.created_at.isoformat(),
            "data": self.payload,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook": self.webhook_id,
            "event": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "next_at": self.next_at.isoformat(),
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "data": self.payload,
        }


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery taken for sending, with where it goes and the name of its secret."""

    delivery: Delivery
    url: str
    secret_env: str | None


@dataclass(frozen=True, slots=True)
class Retry:
    """When a failed delivery is tried again: first after `first`, doubling up to `cap`;
    after `max_attempts` attempts it is given up (status failed)."""

    first: timedelta = timedelta(seconds=10)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 10

    def delay(self, attempts: int) -> timedelta:
        doubled: timedelta = self.first * 2 ** max(0, min(attempts - 1, 32))
        return min(self.cap, doubled)


def _wants(events: Sequence[str], glob: str, kind: str, model: str) -> bool:
    return (ALL in events or kind in events) and fnmatchcase(model, glob)


def _changed(s: Session, statement: Update) -> int:
    """How many rows an UPDATE changed."""
    result = cast(CursorResult[Any], s.execute(statement))
    return int(result.rowcount or 0)


def _webhook(row: WebhookRow) -> Webhook:
    events = tuple(e for e in row.events.split(",") if e)
    return Webhook(
        row.id, row.url, events, row.model_glob, row.secret_env, row.created_at, row.removed_at
    )


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        row.id,
        row.webhook_id,
        row.kind,
        json.loads(row.payload_json),
        row.status,
        row.attempts,
        row.next_at,
        row.last_error,
        row.created_at,
        row.delivered_at,
    )


# -- checking what a user gives -----------------------------------------------------------


def check_url(url: str, *, insecure: bool = False) -> str:
    """url if deliveries may go there: http(s) with a host, no credentials, and plain
    http only to this machine unless insecure (a delivery can say who changed what)."""
    text = url.strip()
    shown = mask_url(text)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise InvalidWebhookUrl(shown, f"it cannot be parsed ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidWebhookUrl(shown, "deliveries are POSTed: use http:// or https://")
    if not parts.hostname:
        raise InvalidWebhookUrl(shown, "it names no host")
    if has_credentials(text):
        raise InvalidWebhookUrl(
            shown, "it carries credentials; sign deliveries with --secret-env instead"
        )
    if parts.scheme == "http" and not insecure and not _loopback(parts.hostname):
        raise InvalidWebhookUrl(
            shown,
            f"plain http to {parts.hostname} sends every delivery unencrypted; use https://, "
            "or pass --insecure",
        )
    return text


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_events(events: Iterable[str]) -> tuple[str, ...]:
    """The event kinds, each known (or `*`), in the order given, without repeats."""
    kinds: list[str] = []
    for kind in (e.strip() for e in events):
        if kind and kind not in kinds:
            if kind != ALL and kind not in KINDS:
                raise UnknownEventKind(kind, KINDS)
            kinds.append(kind)
    if not kinds:
        raise UnknownEventKind("", KINDS)
    return (ALL,) if ALL in kinds else tuple(kinds)


def _check_secret_env(name: str | None) -> str | None:
    if name is not None and not _ENV_NAME.fullmatch(name):
        raise InvalidArgument(  # the value is not shown: it may be the secret itself
            "--secret-env takes the NAME of the environment variable holding the secret "
            "(letters, digits and _, e.g. MODELKEEP_WEBHOOK_SECRET), not the secret"
        )
    return name


def _check_glob(glob: str) -> str:
    if not glob.strip() or len(glob) > 128:
        raise InvalidArgument(
            f"model glob {glob!r} must be 1-128 characters, e.g. 'fraud' or 'team/*'"
        )
    return glob.strip()


# -- webhooks -------------------------------------------------------------------------------


def add_webhook(
    db: Database,
    url: str,
    events: Sequence[str],
    model_glob: str = "*",
    secret_env: str | None = None,
    *,
    insecure: bool = False,
    now: datetime | None = None,
) -> Webhook:
    """A webhook POSTing the given event kinds (or `*`) of the models model_glob matches
    to url; deliveries are signed with the secret in environment variable secret_env."""
    row = WebhookRow(
        url=check_url(url, insecure=insecure),
        events=",".join(check_events(events)),
        model_glob=_check_glob(model_glob),
        secret_env=_check_secret_env(secret_env),
        created_at=now or datetime.now(UTC),
    )
    with db.write() as s:
        s.add(row)
        s.flush()
        return _webhook(row)


def list_webhooks(db: Database, *, removed: bool = False) -> list[Webhook]:
    with db.read() as s:
        query = select(WebhookRow).order_by(WebhookRow.id)
        if not removed:
            query = query.where(WebhookRow.removed_at.is_(None))
        return [_webhook(r) for r in s.scalars(query)]


def _active_ids(s: Session) -> list[int]:
    return list(s.scalars(select(WebhookRow.id).where(WebhookRow.removed_at.is_(None))))


def remove_webhook(
    db: Database, webhook_id: int, *, now: datetime | None = None
) -> tuple[Webhook, int]:
    """Stop a webhook; its pending deliveries are cancelled (never sent). Returns it and
    how many were cancelled; its delivery history stays."""
    with db.write() as s:
        row = s.get(WebhookRow, webhook_id)
        if row is None or row.removed_at is not None:
            raise WebhookNotFound(webhook_id, _active_ids(s))
        row.removed_at = now or datetime.now(UTC)
        cancelled = _changed(
            s,
            update(DeliveryRow)
            .where(DeliveryRow.webhook_id == webhook_id, DeliveryRow.status == "pending")
            .values(status="cancelled", last_error="the webhook was removed"),
        )
        return _webhook(row), cancelled


def deliveries(
    db: Database, webhook_id: int | None = None, status: str | None = None, limit: int = 100
) -> list[Delivery]:
    """The newest deliveries first, of one webhook (removed ones too) or of all."""
    if status is not None and status not in STATUSES:
        raise InvalidArgument(
            f"unknown delivery status {status!r}; use one of {', '.join(STATUSES)}"
        )
    with db.read() as s:
        query = select(DeliveryRow).order_by(DeliveryRow.id.desc()).limit(max(1, limit))
        if webhook_id is not None:
            if s.get(WebhookRow, webhook_id) is None:
                raise WebhookNotFound(webhook_id, _active_ids(s))
            query = query.where(DeliveryRow.webhook_id == webhook_id)
        if status is not None:
            query = query.where(DeliveryRow.status == status)
        return [_delivery(r) for r in s.scalars(query)]


# -- the outbox: written inside the change's transaction ---------------------------------------


_Target = tuple[int, tuple[str, ...], str]  # an active webhook's id, events and model glob
# Plain SQL in the change's own transaction (`session_query`): every registry change runs it.
_ACTIVE = "SELECT id, events, model_glob FROM webhooks WHERE removed_at IS NULL"


def _active(s: Session) -> list[_Target]:
    """The active webhooks, read once per transaction: a store without webhooks pays one
    small SELECT per change, and a change that makes many events pays it once."""
    hooks = s.info.get(_SESSION_KEY)
    if hooks is None:
        rows = session_query(s).rows(_ACTIVE)
        hooks = [(r.id, tuple(r.events.split(",")), r.model_glob) for r in rows]
        s.info[_SESSION_KEY] = hooks
    return cast(list[_Target], hooks)


def enqueue(s: Session, kind: str, model: str, payload: dict[str, Any], now: datetime) -> int:
    """Insert a pending delivery for each active webhook that wants kind for model, in the
    caller's transaction; returns how many."""
    targets = [hook for hook, events, glob in _active(s) if _wants(events, glob, kind, model)]
    if targets:
        doc = json.dumps(payload, sort_keys=True)
        table = cast(Table, DeliveryRow.__table__)
        s.connection().execute(
            insert(table),
            [
                {
                    "webhook_id": hook,
                    "kind": kind,
                    "payload_json": doc,
                    "status": "pending",
                    "attempts": 0,
                    "next_at": now,
                    "last_error": "",
                    "created_at": now,
                }
                for hook in targets
            ],
        )
    return len(targets)


def event_appended(
    s: Session, row: EventRow, before: dict[str, Any], after: dict[str, Any]
) -> None:
    """Enqueue the delivery of a registry event just appended (meta/chain.py)."""
    kind = ACTION_KINDS.get(row.action)
    if kind is None:
        return
    payload = {
        "event": row.id,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "model": row.model,
        "target": row.target,
        "before": before,
        "after": after,
        "reason": row.reason,
        "hash": row.hash,
    }
    enqueue(s, kind, row.model, payload, row.at)


def version_created(s: Session, art: Any, row: Any) -> None:
    """Enqueue the delivery of a version just made (meta/rows.py `create_version`): art
    and row are plain rows of the artifact and of the version's columns."""
    payload = {
        "name": art.name,
        "type": art.type,
        "number": row.number,
        "ref": f"{art.name}:v{row.number}",
        "digest": content_id(row.digest),
        "kind": row.kind,
        "size": row.size,
        "user": row.user,
        "message": row.message,
        "run_id": row.run_id,
        "created_at": row.created_at.isoformat(),
    }
    enqueue(s, "version.created", art.name, payload, row.created_at)


# -- dispatching: claim, then record the outcome --------------------------------------------


def claim(
    db: Database, now: datetime, *, lease: timedelta = timedelta(seconds=60), limit: int = 16
) -> list[Claimed]:
    """Take up to limit due deliveries for sending, oldest first: each is leased until
    now + lease (its attempt counted now, so a delivery that kills its dispatcher is still
    given up in the end). Pending deliveries of a removed webhook are cancelled instead.

    A read first: a dispatcher polling an idle outbox every second takes no write lock
    (on SQLite, the whole database's) to find nothing."""
    with db.read() as s:
        due = s.execute(
            select(DeliveryRow.id)
            .where(DeliveryRow.status == "pending", DeliveryRow.next_at <= now)
            .limit(1)
        ).first()
    if due is None:
        return []
    with db.write() as s:
        query = (
            select(DeliveryRow, WebhookRow.url, WebhookRow.secret_env, WebhookRow.removed_at)
            .join(WebhookRow, WebhookRow.id == DeliveryRow.webhook_id)
            .where(DeliveryRow.status == "pending", DeliveryRow.next_at <= now)
            .order_by(DeliveryRow.next_at, DeliveryRow.id)
            .limit(limit)
        )
        if s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=DeliveryRow)
        rows: list[Row[Any]] = list(s.execute(query))
        dropped = [r[0].id for r in rows if r.removed_at is not None]
        taken = [r for r in rows if r.removed_at is None]
        if dropped:
            s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id.in_(dropped))
                .values(status="cancelled", last_error="the webhook was removed")
            )
        if not taken:
            return []
        until = now + lease
        # Read before the UPDATE, which the session also applies to the loaded rows.
        claimed = [
            Claimed(
                replace(_delivery(r[0]), attempts=r[0].attempts + 1, next_at=until),
                r.url,
                r.secret_env,
            )
            for r in taken
        ]
        s.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id.in_([c.delivery.id for c in claimed]))
            .values(attempts=DeliveryRow.attempts + 1, next_at=until)
        )
        return claimed


def mark_delivered(db: Database, delivery_id: int, now: datetime) -> bool:
    """Record a delivery as delivered (whichever dispatcher's attempt it was)."""
    with db.write() as s:
        done = _changed(
            s,
            update(DeliveryRow)
            .where(DeliveryRow.id == delivery_id, DeliveryRow.status == "pending")
            .values(status="delivered", delivered_at=now, last_error=""),
        )
    return bool(done)


def mark_failed(
    db: Database, claimed: Delivery, error: str, now: datetime, retry: Retry = Retry()
) -> str:
    """Record a failed attempt: due again after the retry's delay, or given up ("failed")
    after its last attempt. An attempt whose lease another dispatcher has since taken
    over records nothing (that one's outcome counts). Returns the status now held."""
    failed = claimed.attempts >= retry.max_attempts
    values: dict[str, Any] = {"last_error": error[:500]}
    if failed:
        values["status"] = "failed"
    else:
        values["next_at"] = now + retry.delay(claimed.attempts)
    with db.write() as s:
        s.execute(
            update(DeliveryRow)
            .where(
                DeliveryRow.id == claimed.id,
                DeliveryRow.status == "pending",
                DeliveryRow.attempts == claimed.attempts,
            )
            .values(**values)
        )
    return "failed" if failed else "pending"
