"""The registry's hash chain: one lock for every writer, one clock, one append.

Every write that records a time a `--at` query can see (a new version, any registry
change) takes the chain lock (PostgreSQL: an advisory lock; SQLite: the database write
lock) and reads its time with `clock` under it, so times never run behind the newest
event and rise with event ids.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

import blake3
from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.orm import Session

from modelkeep.meta.db import Database
from modelkeep.meta.models import ChainHeadRow, EventRow
from modelkeep.meta.webhooks import event_appended

GENESIS = "0" * 64
_CHAIN_LOCK = 7160250516
# Statements built once: building one costs more than running it on SQLite.
_EVENTS, _HEADS = cast(Table, EventRow.__table__), cast(Table, ChainHeadRow.__table__)
_HEAD = select(ChainHeadRow.last_id, ChainHeadRow.last_hash, ChainHeadRow.last_at)
_INSERT_EVENT, _INSERT_HEAD = insert(_EVENTS), insert(_HEADS)
_UPDATE_HEAD = update(_HEADS).where(_HEADS.c.id == 1)


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
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text(f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK})"))


def read_head(s: Session) -> tuple[int, str, datetime | None]:
    """The newest event's (id, hash, time), read once per transaction under the lock."""
    head = s.info.get("chain_head")
    if head is None:
        row = s.execute(_HEAD).first()
        head = (row.last_id, row.last_hash, row.last_at) if row else (0, GENESIS, None)
        s.info["chain_head"] = head
    return head


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

    Plain INSERT and UPDATE statements, not ORM objects: every registry change pays for
    this, and the unit of work would cost more than the change itself.
    """
    last_id, prev, _ = read_head(s)
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
    conn = s.connection()  # Core, past the ORM's bulk-insert machinery
    conn.execute(_INSERT_EVENT, {c.key: getattr(row, c.key) for c in _EVENTS.c})
    head = {"last_id": row.id, "last_hash": row.hash, "last_at": now}
    if last_id == 0:
        conn.execute(_INSERT_HEAD, {"id": 1, **head})
    else:
        conn.execute(_UPDATE_HEAD, head)
    s.info["chain_head"] = (row.id, row.hash, now)
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
        lock_chain(s)
        return s

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)
