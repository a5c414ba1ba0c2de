"""The registry's hash chain: one lock for every writer, one clock, one append.

Every write that records a time a `--at` query can see (a new version, any registry
change) takes the chain lock (PostgreSQL: an advisory lock; SQLite: the database write
lock) and reads its time with `clock` under it, so times never run behind the newest
event and rise with event ids.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, cast

import blake3
from sqlalchemy.orm import Session

from modelkeep.meta.db import Change, Database, session_query
from modelkeep.meta.models import EventRow
from modelkeep.meta.records import when
from modelkeep.meta.webhooks import event_appended

GENESIS = "0" * 64
_CHAIN_LOCK = 7160250516
_HEAD = "SELECT last_id, last_hash, last_at FROM chain_head WHERE id = 1"
_FIELDS = "id, at, actor, action, model, target, before_json, after_json, reason, prev_hash, hash"
_INSERT_EVENT = f"INSERT INTO events ({_FIELDS}) VALUES (:{_FIELDS.replace(', ', ', :')})"
_INSERT_HEAD = (
    "INSERT INTO chain_head (id, last_id, last_hash, last_at) "
    "VALUES (1, :last_id, :last_hash, :last_at)"
)
_UPDATE_HEAD = (
    "UPDATE chain_head SET last_id = :last_id, last_hash = :last_hash, last_at = :last_at "
    "WHERE id = 1"
)


def event_hash(row: EventRow) -> str:
    """The hash of an event's content and its predecessor's hash."""
    fields = [
        row.id,
        row.at.astimezone(UTC).isoformat(timespec="microseconds"),
        row.actor,
        row.action,
        row.model,
        row.target,
        row.before_json,
        row.after_json,
        row.reason,
        row.prev_hash,
    ]
    data = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    return str(blake3.blake3(data).hexdigest())


def lock_chain(s: Session) -> None:
    """PostgreSQL's lock on the chain; on SQLite the write transaction (BEGIN IMMEDIATE,
    begun by the change's first statement) already holds the whole database."""
    if s.get_bind().dialect.name == "postgresql":
        session_query(s).rows(f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK})")


def read_head(s: Session | Change) -> tuple[int, str, datetime | None]:
    """The newest event's (id, hash, time), read once per transaction under the lock."""
    q = s if isinstance(s, Change) else session_query(s)
    head = q.info.get("chain_head")
    if head is None:
        row = q.row(_HEAD)
        head = (row.last_id, row.last_hash, when(row.last_at)) if row else (0, GENESIS, None)
        q.info["chain_head"] = head
    return cast(tuple[int, str, datetime | None], head)


def append(
    s: Session,
    actor: str,
    action: str,
    model: str,
    target: str,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str,
    now: datetime,
) -> None:
    """Append one event; the caller holds the chain lock (see `Write`).

    Plain SQL (`session_query`), not ORM objects: every registry change pays for this,
    and the unit of work would cost more than the change itself. The row object is only
    what `event_hash` and the webhook payload read; it never joins the session.
    """
    q = session_query(s)
    last_id, prev, _ = read_head(q)
    row = EventRow(
        id=last_id + 1,
        at=now,
        actor=actor,
        action=action,
        model=model,
        target=target,
        before_json=json.dumps(before, sort_keys=True),
        after_json=json.dumps(after, sort_keys=True),
        reason=reason,
        prev_hash=prev,
    )
    row.hash = event_hash(row)
    values = {name: getattr(row, name) for name in _FIELDS.split(", ")}
    q.execute(_INSERT_EVENT, **(values | {"at": q.time(now)}))
    q.execute(
        _INSERT_HEAD if last_id == 0 else _UPDATE_HEAD,
        last_id=row.id,
        last_hash=row.hash,
        last_at=q.time(now),
    )
    q.info["chain_head"] = (row.id, row.hash, now)
    event_appended(s, row, before, after)  # its webhook deliveries, in this transaction


def clock(s: Session) -> datetime:
    """The time of a change, read under the chain lock: never before the newest event.

    Taken after the lock, not before waiting for it, and never behind the previous event
    (a clock stepped back, another host's clock), so event times rise with event ids and
    `--at`, which replays events up to a time, never sees a state that did not exist.
    """
    # The query comes first: on SQLite it is what begins the write transaction (the lock).
    last = read_head(s)[2]
    now = datetime.now(UTC)
    return max(now, last) if last is not None else now


class Write:
    """One registry change: the chain lock, then the model's row lock, then the change.

    Take the time of the change with `clock` inside, once the lock is held.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Session:
        self._cm = self.db.write()
        s = self._cm.__enter__()
        try:
            lock_chain(s)
        except BaseException:  # the transaction ends here: translated, its lock released
            if not self._cm.__exit__(*sys.exc_info()):
                raise
        return s

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)
