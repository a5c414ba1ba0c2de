"""The event log: an append-only, hash-chained record of every registry change.

Each event holds the hash of the one before it, and `chain_head` holds the newest, so
editing, removing or reordering an event is detected by `verify`. Writers take one lock
for the chain (PostgreSQL: an advisory lock; SQLite: the database write lock), so they
append one at a time and the chain never forks; event times are taken under that lock,
so they rise with event ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import blake3
from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.orm import Session

from modelkeep.errors import NothingAtTime
from modelkeep.meta.catalog import _artifact
from modelkeep.meta.db import Database
from modelkeep.meta.models import ChainHeadRow, EventRow

GENESIS = "0" * 64
_CHAIN_LOCK = 7160250516


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: datetime
    actor: str
    action: str
    model: str
    target: str
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "model": self.model,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def _event(row: EventRow) -> Event:
    return Event(
        row.id,
        row.at,
        row.actor,
        row.action,
        row.model,
        row.target,
        json.loads(row.before_json),
        json.loads(row.after_json),
        row.reason,
        row.prev_hash,
        row.hash,
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


def _lock_chain(s: Session) -> None:
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text(f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK})"))


def _head(s: Session) -> tuple[int, str, datetime | None]:
    """The newest event's (id, hash, time), read once per transaction under the lock."""
    head = s.info.get("chain_head")
    if head is None:
        row = s.execute(
            select(ChainHeadRow.last_id, ChainHeadRow.last_hash, ChainHeadRow.last_at)
        ).first()
        head = (row.last_id, row.last_hash, row.last_at) if row else (0, GENESIS, None)
        s.info["chain_head"] = head
    return head


def _append(
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
    """Append one event; the caller holds the chain lock (see `_Write`).

    Plain INSERT and UPDATE statements, not ORM objects: every registry change pays for
    this, and the unit of work would cost more than the change itself.
    """
    last_id, prev, _ = _head(s)
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
    events, heads = cast(Table, EventRow.__table__), cast(Table, ChainHeadRow.__table__)
    conn = s.connection()  # Core, past the ORM's bulk-insert machinery
    conn.execute(insert(events).values({c.key: getattr(row, c.key) for c in events.c}))
    head = {"last_id": row.id, "last_hash": row.hash, "last_at": now}
    if last_id == 0:
        conn.execute(insert(heads).values(id=1, **head))
    else:
        conn.execute(update(heads).where(heads.c.id == 1).values(**head))
    s.info["chain_head"] = (row.id, row.hash, now)


def _clock(s: Session) -> datetime:
    """The time of a change, read under the chain lock: never before the newest event.

    Taken after the lock, not before waiting for it, and never behind the previous event
    (a clock stepped back, another host's clock), so event times rise with event ids and
    `--at`, which replays events up to a time, never sees a state that did not exist.
    """
    # The query comes first: on SQLite it is what begins the write transaction (the lock).
    last = _head(s)[2]
    now = datetime.now(UTC)
    return max(now, last) if last is not None else now


class _Write:
    """One registry change: the chain lock, then the model's row lock, then the change.

    Take the time of the change with `_clock` inside, once the lock is held.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Session:
        self._cm = self.db.write()
        s = self._cm.__enter__()
        _lock_chain(s)
        return s

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


def events(
    db: Database,
    model: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Event]:
    with db.read() as s:
        query = select(EventRow).order_by(EventRow.id)
        if model is not None:
            art = _artifact(s, model)
            if until is not None and art.created_at > until:
                when = until.astimezone(UTC).isoformat(timespec="seconds")
                raise NothingAtTime(model, when, f"{model!r} did not exist yet")
            query = query.where(EventRow.model == model)
        if since is not None:
            query = query.where(EventRow.at >= since)
        if until is not None:
            query = query.where(EventRow.at <= until)
        return [_event(r) for r in s.scalars(query)]


@dataclass(frozen=True, slots=True)
class Verification:
    events: int
    head: str  # the newest event's hash: publish it to make the log evidence
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "head": self.head,
            "problems": list(self.problems),
        }


def verify(db: Database) -> Verification:
    """Recompute the chain; name every event edited, removed or out of order."""
    problems: list[str] = []
    with db.read() as s:
        rows = list(s.scalars(select(EventRow).order_by(EventRow.id)))
        head = s.get(ChainHeadRow, 1)
    expected_id, prev = 1, GENESIS
    for row in rows:
        if row.id != expected_id:
            gap = f"{expected_id}" if row.id == expected_id + 1 else f"{expected_id}-{row.id - 1}"
            problems.append(f"event(s) {gap} removed (the log jumps to event {row.id})")
        if row.prev_hash != prev:
            problems.append(
                f"event {row.id} ({row.action} {row.target}) does not follow the event before "
                "it: an earlier event was removed, edited or reordered"
            )
        if event_hash(row) != row.hash:
            problems.append(
                f"event {row.id} ({row.action} {row.target} by {row.actor} at "
                f"{row.at.isoformat(timespec='seconds')}) was edited after it was written"
            )
        expected_id, prev = row.id + 1, row.hash
    last = rows[-1] if rows else None
    if head is None and last is not None:
        problems.append("the chain head record is missing")
    elif head is not None and (
        last is None or (head.last_id, head.last_hash) != (last.id, last.hash)
    ):
        problems.append(
            f"the chain ends at event {last.id if last else 0} but its head records event "
            f"{head.last_id}: the newest events were removed or rewritten"
        )
    return Verification(len(rows), head.last_hash if head else GENESIS, tuple(problems))
