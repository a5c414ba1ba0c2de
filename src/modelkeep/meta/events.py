"""The event log: an append-only, hash-chained record of every registry change.

Each event holds the hash of the one before it, and `chain_head` holds the newest, so
editing, removing or reordering an event is detected by `verify`; and since the events
say what every stage and alias became, `verify` also replays them and compares the
result with the rows that answer `NAME@production`, so a row edited behind the log's back
is named too. Writers take one lock
for the chain (PostgreSQL: an advisory lock; SQLite: the database write lock), so they
append one at a time and the chain never forks; event times are taken under that lock,
so they rise with event ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from modelkeep.errors import CorruptEvent, NothingAtTime
from modelkeep.meta.chain import GENESIS, event_hash
from modelkeep.meta.db import Database, session_query
from modelkeep.meta.evaluations import problems as evaluation_problems
from modelkeep.meta.models import AliasRow, ArtifactRow, ChainHeadRow, EventRow, VersionRow
from modelkeep.meta.records import when
from modelkeep.meta.rows import artifact

# Actions whose `after.stage` sets a version's stage when the log is replayed.
STAGE_ACTIONS = ("register", "promote", "archive", "rollback")


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
            art = artifact(s, model)
            if until is not None and art.created_at > until:
                when = until.astimezone(UTC).isoformat(timespec="seconds")
                raise NothingAtTime(model, when, f"{model!r} did not exist yet")
            query = query.where(_of_model(s, model))
        if since is not None:
            query = query.where(EventRow.at >= since)
        if until is not None:
            query = query.where(EventRow.at <= until)
        return [_event(r) for r in s.scalars(query)]


def _of_model(s: Session, name: str) -> ColumnElement[bool]:
    """Which events are model name's: under each name it had, between its renames (a
    rename's event is written under the new name; a later model may take the old one)."""
    renames = s.execute(
        select(EventRow.id, EventRow.model, EventRow.before_json)
        .where(EventRow.action == "rename")
        .order_by(EventRow.id.desc())
    ).all()
    parts: list[ColumnElement[bool]] = []
    upper: int | None = None
    for event_id, new_name, before_json in renames:
        if upper is not None and event_id >= upper:
            continue
        old = _renamed_from(before_json)
        if new_name == name:  # this name began here; before it, the model had the old one
            parts.append(_segment(name, event_id, upper))
            name, upper = old, event_id
        elif old == name:  # another model had this name before, and left it here
            parts.append(_segment(name, event_id + 1, upper))
            return or_(*parts)
    parts.append(_segment(name, 0, upper))
    return or_(*parts)


def _segment(name: str, lower: int, upper: int | None) -> ColumnElement[bool]:
    test = and_(EventRow.model == name, EventRow.id >= lower)
    return test if upper is None else and_(test, EventRow.id < upper)


def _renamed_from(before_json: str) -> str:
    try:
        before = json.loads(before_json)
    except ValueError:
        return ""
    name = before.get("name") if isinstance(before, dict) else None
    return name if isinstance(name, str) else ""


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


@dataclass(slots=True)
class Replayed:
    """One model's registry state as its events tell it: replaying the log gives the
    state at any moment (`--at`), and at the end must give the rows' state."""

    stages: dict[int, str] = field(default_factory=dict)
    moved: dict[int, int] = field(default_factory=dict)  # number -> event id of its last move
    aliases: dict[str, int] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    registered: set[int] = field(default_factory=set)

    def apply(self, e: EventRow) -> None:
        """Play one event; CorruptEvent if it cannot say what it changed."""
        try:
            after = json.loads(e.after_json)
            if not isinstance(after, dict):
                raise ValueError("its `after` is not an object")
            if e.action in STAGE_ACTIONS:
                number = _number(e.target)
                stage = after["stage"]
                if not isinstance(stage, str):
                    raise ValueError(f"stage {stage!r} is not a string")
                self.stages[number] = stage
                self.moved[number] = e.id
                if e.action == "register":
                    self.registered.add(number)
            elif e.action == "alias-set":
                version = after["version"]
                if isinstance(version, bool) or not isinstance(version, int):
                    raise ValueError(f"version {version!r} is not a number")
                self.aliases[_alias(e.target)] = version
            elif e.action == "alias-remove":
                self.aliases.pop(_alias(e.target), None)
            elif e.action == "delete":
                number = _number(e.target)
                self.deleted.add(number)
                self.aliases = {a: n for a, n in self.aliases.items() if n != number}
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"no {exc.args[0]!r} in it" if isinstance(exc, KeyError) else str(exc)
            raise CorruptEvent(e.id, e.action, e.target, reason) from exc

    def holder(self, stage: str) -> int | None:
        """The version holding stage: the last one moved there."""
        held = [n for n, st in self.stages.items() if st == stage]
        return max(held, key=lambda n: self.moved[n]) if held else None


def _number(target: str) -> int:
    name, sep, number = target.rpartition(":v")
    if not sep or not name or not number.isdigit():
        raise ValueError(f"target {target!r} is not NAME:vN")
    return int(number)


def _alias(target: str) -> str:
    name, sep, alias = target.partition("@")
    if not sep or not name or not alias:
        raise ValueError(f"target {target!r} is not NAME@ALIAS")
    return alias


def verify(db: Database) -> Verification:
    """Recompute the chain, naming every event edited, removed or out of order; then
    replay it and name every stage, alias or tombstone the rows hold that it does not, and
    every evaluation row its `evaluate` event does not vouch for as it stands."""
    problems: list[str] = []
    with db.read() as s:
        rows = list(s.scalars(select(EventRow).order_by(EventRow.id)))
        head = s.get(ChainHeadRow, 1)
        problems += _state_problems(s, rows)
        problems += evaluation_problems(s)
    expected_id, prev = 1, GENESIS
    chain: list[str] = []
    for row in rows:
        if row.id != expected_id:
            gap = f"{expected_id}" if row.id == expected_id + 1 else f"{expected_id}-{row.id - 1}"
            chain.append(f"event(s) {gap} removed (the log jumps to event {row.id})")
        if row.prev_hash != prev:
            chain.append(
                f"event {row.id} ({row.action} {row.target}) does not follow the event before "
                "it: an earlier event was removed, edited or reordered"
            )
        if event_hash(row) != row.hash:
            chain.append(
                f"event {row.id} ({row.action} {row.target} by {row.actor} at "
                f"{row.at.isoformat(timespec='seconds')}) was edited after it was written"
            )
        expected_id, prev = row.id + 1, row.hash
    last = rows[-1] if rows else None
    if head is None and last is not None:
        chain.append("the chain head record is missing")
    elif head is not None and (
        last is None or (head.last_id, head.last_hash) != (last.id, last.hash)
    ):
        chain.append(
            f"the chain ends at event {last.id if last else 0} but its head records event "
            f"{head.last_id}: the newest events were removed or rewritten"
        )
    return Verification(len(rows), head.last_hash if head else GENESIS, tuple(chain + problems))


def _state_problems(s: Session, rows: list[EventRow]) -> list[str]:
    """Each difference between what the events say and what the rows say, one per line:
    version, field, the events' value, the database's value."""
    problems: list[str] = []
    replayed: dict[str, Replayed] = {}
    for row in rows:
        if row.action == "rename":  # the model's state goes on under its new name
            replayed[row.model] = replayed.pop(_renamed_from(row.before_json), Replayed())
            continue
        try:
            replayed.setdefault(row.model, Replayed()).apply(row)
        except CorruptEvent as exc:
            problems.append(str(exc))
    arts = {a.id: a for a in s.scalars(select(ArtifactRow))}
    for name in sorted(set(replayed) - {a.name for a in arts.values()}):
        problems.append(
            f"the events record changes to model {name!r}, which the database does not have"
        )
    versions: dict[int, list[Any]] = {}
    for v in session_query(s).rows(  # plain columns: a store of 10,000 versions verifies fast
        "SELECT id, artifact_id, number, stage, registered, deleted_at, stage_changed_at "
        "FROM versions ORDER BY artifact_id, number"
    ):
        versions.setdefault(v.artifact_id, []).append(v)
    aliases: dict[int, dict[str, int]] = {}
    for art_id, alias, number in s.execute(
        select(AliasRow.artifact_id, AliasRow.alias, VersionRow.number).join(
            VersionRow, VersionRow.id == AliasRow.version_id
        )
    ):
        aliases.setdefault(art_id, {})[alias] = number
    for art_id, art in sorted(arts.items(), key=lambda item: item[1].name):
        said = replayed.get(art.name, Replayed())
        problems += _model_problems(art, said, versions.get(art_id, []), aliases.get(art_id, {}))
    return problems


def _differ(what: str, field_: str, said: object, found: object) -> str:
    return f"{what} {field_}: the events say {said}, the database says {found}"


def _model_problems(
    art: ArtifactRow, said: Replayed, rows: list[Any], aliases: dict[str, int]
) -> list[str]:
    problems: list[str] = []
    yes_no = {True: "yes", False: "no"}
    for v in rows:
        ref = f"{art.name}:v{v.number}"
        stage = said.stages.get(v.number, "none")
        if v.stage != stage:
            problems.append(_differ(ref, "stage", repr(stage), repr(v.stage)))
        registered = v.number in said.registered
        if bool(v.registered) != registered:
            problems.append(
                _differ(ref, "registered", yes_no[registered], yes_no[bool(v.registered)])
            )
        deleted = v.number in said.deleted
        if (v.deleted_at is not None) != deleted:
            problems.append(
                _differ(ref, "deleted", yes_no[deleted], yes_no[v.deleted_at is not None])
            )
    known = {v.number for v in rows}
    for number in sorted(set(said.stages) - known):
        problems.append(
            _differ(f"{art.name}:v{number}", "stage", repr(said.stages[number]), "no such version")
        )
    for alias in sorted(set(said.aliases) | set(aliases)):
        ev, db = said.aliases.get(alias), aliases.get(alias)
        if ev != db:
            problems.append(
                _differ(
                    f"{art.name}@{alias}",
                    "version",
                    f"v{ev}" if ev is not None else "no such alias",
                    f"v{db}" if db is not None else "no such alias",
                )
            )
    if not problems:  # same stages: then the same version must hold each one
        for stage in ("staging", "production"):
            ev_holder = said.holder(stage)
            db_holder = _db_holder(art, rows, stage)
            if ev_holder != db_holder:
                problems.append(
                    _differ(
                        f"{art.name}@{stage}",
                        "holder (stage_changed_at)",
                        f"v{ev_holder}",
                        f"v{db_holder}",
                    )
                )
    return problems


def _db_holder(art: ArtifactRow, rows: list[Any], stage: str) -> int | None:
    """The version `NAME@stage` resolves to from the rows (as meta.reads.holders_in)."""
    held = [v for v in rows if v.stage == stage]
    if not held:
        return None
    number: int = max(held, key=lambda v: (when(v.stage_changed_at or art.created_at), v.id)).number
    return number
