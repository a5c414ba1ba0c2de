"""The model registry as rows: stages, aliases and tombstones.

Every change of registry state is one write transaction (`Write`, from chain.py) that
changes the rows and appends its event to the hash-chained log. The everyday changes
(register, promote, archive, rollback, aliases, approvals) run plain SQL on that
transaction (`session_query`), the readers' SQL for what they read: the ORM's unit of
work cost more than the change itself. Deletion, rarer, still goes through the ORM.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from modelkeep.errors import AliasNotFound, RegistryRefused, VersionDeleted
from modelkeep.meta.chain import Write, append, clock
from modelkeep.meta.db import Database, Query, session_query
from modelkeep.meta.events import STAGE_ACTIONS
from modelkeep.meta.models import AliasRow, ArtifactRow, EventRow, VersionRow
from modelkeep.meta.reads import artifact_in, holders_in, numbered_in, resolve_in, version_in
from modelkeep.meta.records import Version, version_of
from modelkeep.meta.rows import (
    artifact_locked,
    artifact_locked_in,
    create_version,
    ref_of,
    version_row,
)
from modelkeep.refs import Ref, content_hex

TARGET_STAGES = ("staging", "production", "archived")
_REGISTER_MODEL = "UPDATE artifacts SET registered = :yes WHERE id = :id"
_REGISTER_VERSION = "UPDATE versions SET registered = :yes, stage_changed_at = :at WHERE id = :id"


# -- registering --------------------------------------------------------------------


def register(
    db: Database, source_ref: Ref, name: str, actor: str, reason: str = ""
) -> tuple[Version, bool]:
    """Make the version source_ref names the next version of model name (no bytes
    copied); True if a new version was made.

    A version of name itself, or content equal to name's latest version, is marked a
    registry candidate without a new number.
    """
    with Write(db) as s:
        q = session_query(s)
        now = clock(s)
        source = resolve_in(q, source_ref)
        art = artifact_locked_in(q, name, create="model", now=now)
        digest = content_hex(source.digest)
        row = None
        if source.name == name:
            row = version_in(q, art, source.number)
        else:
            latest = numbered_in(q, art, art.latest_number) if art.latest_number else None
            same = latest is not None and (latest.digest, latest.kind, latest.mode) == (
                digest,
                source.kind,
                source.mode,
            )
            row = latest if latest is not None and same and latest.deleted_at is None else None
        if not art.registered:
            q.execute(_REGISTER_MODEL, yes=True, id=art.id)
        if row is not None and row.registered:
            return version_of(art, row), False
        created = row is None
        if row is None:
            row = create_version(
                s,
                art,
                kind=source.kind,
                digest=digest,
                size=source.size,
                file_count=source.file_count,
                mode=source.mode,
                source_name=source.source_name,
                user=actor,
                message=source.message,
                metadata=source.metadata,
                run_id=source.run_id,
                host=source.host,  # the bytes are where the source's are
                store_id=source.store_id,
                now=now,
                registered=True,
            )
            registered = version_of(art, row)
        else:
            q.execute(_REGISTER_VERSION, yes=True, at=q.time(now), id=row.id)
            registered = replace(version_of(art, row), registered=True)
        after = {"stage": row.stage, "source": source.ref}
        append(s, actor, "register", name, ref_of(art, row), {}, after, reason, now)
        return registered, created


# -- stages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holders:
    """Who holds each stage of a model, as seen when a promotion was checked."""

    staging: Version | None
    production: Version | None

    def get(self, stage: str) -> Version | None:
        return self.production if stage == "production" else self.staging


def holders(db: Database, name: str, number: int) -> tuple[Holders, Version]:
    """The holders of each stage, and name:vN as it stands now, read together."""
    with db.query() as q:
        art = artifact_in(q, name)
        found = {stage: version_of(art, row) for stage, row in holders_in(q, art).items()}
        current = version_of(art, version_in(q, art, number))
    return Holders(found.get("staging"), found.get("production")), current


class StaleCheck(Exception):
    """The stage holders changed between checking a promotion and making it: check again."""


def move(
    db: Database,
    name: str,
    number: int,
    stage: str,
    actor: str,
    reason: str,
    *,
    checked: Mapping[str, int | None] | None = None,
    from_stage: str | None = None,
    overridden: Sequence[str] = (),
) -> tuple[Version, Version | None]:
    """Move a registered version to stage; returns it and the version it displaced.

    checked and from_stage are what the caller's policy check read (the number of the
    version holding each stage its gates compare with, and the version's own stage); if
    either changed since, StaleCheck is raised and nothing is written. Only what the check
    read is compared: a change elsewhere (another version entering staging while the gates
    look at production) does not invalidate it, so busy registries do not retry in vain.
    overridden lists unmet gates a `--force` skipped, recorded as an override event.
    """
    if stage not in TARGET_STAGES:
        raise RegistryRefused(f"unknown stage {stage!r}; use one of {', '.join(TARGET_STAGES)}")
    with Write(db) as s:
        q = session_query(s)
        now = clock(s)
        art = artifact_locked_in(q, name)
        row = version_in(q, art, number)
        ref = ref_of(art, row)
        if not row.registered:
            raise RegistryRefused(
                f"{ref} is not registered; run `modelkeep register {ref} --as {name}` first"
            )
        if from_stage is not None and row.stage != from_stage:
            raise StaleCheck()
        if row.stage == stage:
            raise RegistryRefused(f"{ref} is already in {stage}")
        now_held = holders_in(q, art)
        for held, seen in (checked or {}).items():
            now_holder = now_held.get(held)
            if (now_holder.number if now_holder else None) != seen:
                raise StaleCheck()
        if overridden:
            append(
                s,
                actor,
                "override",
                name,
                ref,
                {},
                {"to": stage, "unmet": list(overridden)},
                reason,
                now,
            )
        displaced = None
        if stage == "production":
            old = now_held.get("production")
            if old is not None:
                displaced = _set_stage(
                    s,
                    art,
                    old,
                    "archived",
                    actor,
                    f"replaced in production by {ref}",
                    now,
                    action="archive",
                )
        moved = _set_stage(
            s,
            art,
            row,
            stage,
            actor,
            reason,
            now,
            action="promote" if stage != "archived" else "archive",
        )
        return moved, displaced


_SET_STAGE = "UPDATE versions SET stage = :stage, stage_changed_at = :at WHERE id = :id"


def _set_stage(
    s: Session,
    art: Any,
    row: Any,
    stage: str,
    actor: str,
    reason: str,
    now: datetime,
    *,
    action: str,
) -> Version:
    """Move the version of row (a plain row, `session_query`) to stage, with its event;
    the version as it is now."""
    q = session_query(s)
    q.execute(_SET_STAGE, stage=stage, at=q.time(now), id=row.id)
    ref = ref_of(art, row)
    append(s, actor, action, art.name, ref, {"stage": row.stage}, {"stage": stage}, reason, now)
    return replace(version_of(art, row), stage=stage)


def production_history(q: Query, name: str) -> list[int]:
    """Version numbers in the order they entered production."""
    numbers = []
    for r in q.rows(
        "SELECT target, after_json FROM events WHERE model = :name AND action IN :actions "
        "ORDER BY id",
        name=name,
        actions=("promote", "rollback"),
    ):
        if json.loads(r.after_json).get("stage") == "production":
            numbers.append(int(r.target.rsplit(":v", 1)[1]))
    return numbers


def rollback(
    db: Database, name: str, to: int | None, actor: str, reason: str
) -> tuple[Version, Version]:
    """Put back the previous production version (or `to`); returns it and the one archived."""
    with Write(db) as s:
        q = session_query(s)
        now = clock(s)
        art = artifact_locked_in(q, name)
        current = holders_in(q, art).get("production")
        if current is None:
            raise RegistryRefused(f"no version of {name!r} is in production; nothing to roll back")
        history = production_history(q, name)
        if to is None:
            target = next(
                (
                    row
                    for number in reversed(history)
                    if number != current.number and (row := _live(q, art, number)) is not None
                ),
                None,
            )
            if target is None:
                raise RegistryRefused(
                    f"{name}:v{current.number} is the only version of {name!r} that has been "
                    "in production; there is nothing earlier to roll back to"
                )
        else:
            target = version_in(q, art, to)
            if to == current.number:
                raise RegistryRefused(f"{name}:v{to} is already in production")
            if to not in history:
                raise RegistryRefused(
                    f"{name}:v{to} has never been in production; promote it instead"
                )
        archived = _set_stage(
            s,
            art,
            current,
            "archived",
            actor,
            f"rolled back to v{target.number}: {reason}",
            now,
            action="archive",
        )
        restored = _set_stage(s, art, target, "production", actor, reason, now, action="rollback")
        return restored, archived


def _live(q: Query, art: Any, number: int) -> Any | None:
    """name:vN's row, or None if it was deleted."""
    try:
        return version_in(q, art, number)
    except VersionDeleted:
        return None


# -- aliases, approvals, deletion -----------------------------------------------------------


_ALIAS = (
    "SELECT l.version_id, v.number FROM aliases l LEFT JOIN versions v ON v.id = l.version_id "
    "WHERE l.artifact_id = :art AND l.alias = :alias"
)
_MOVE_ALIAS = "UPDATE aliases SET version_id = :version WHERE artifact_id = :art AND alias = :alias"
_NEW_ALIAS = "INSERT INTO aliases (artifact_id, alias, version_id) VALUES (:art, :alias, :version)"


def set_alias(
    db: Database, name: str, alias: str, number: int, actor: str, reason: str = ""
) -> Version:
    with Write(db) as s:
        q = session_query(s)
        now = clock(s)
        art = artifact_locked_in(q, name)
        row = version_in(q, art, number)
        existing = q.row(_ALIAS, art=art.id, alias=alias)
        if existing is not None and existing.version_id == row.id:
            return version_of(art, row)
        where = {"art": art.id, "alias": alias, "version": row.id}
        q.execute(_NEW_ALIAS if existing is None else _MOVE_ALIAS, **where)
        append(
            s,
            actor,
            "alias-set",
            name,
            f"{name}@{alias}",
            {"version": existing.number if existing is not None else None},
            {"version": row.number},
            reason,
            now,
        )
        return version_of(art, row)


def remove_alias(db: Database, name: str, alias: str, actor: str, reason: str = "") -> int:
    with Write(db) as s:
        q = session_query(s)
        now = clock(s)
        art = artifact_locked_in(q, name)
        existing = q.row(_ALIAS, art=art.id, alias=alias)
        if existing is None:
            names = q.rows(
                "SELECT alias FROM aliases WHERE artifact_id = :id ORDER BY alias", id=art.id
            )
            raise AliasNotFound(name, alias, [r.alias for r in names])
        number = existing.number or 0
        q.execute(
            "DELETE FROM aliases WHERE artifact_id = :art AND alias = :alias",
            art=art.id,
            alias=alias,
        )
        append(
            s,
            actor,
            "alias-remove",
            name,
            f"{name}@{alias}",
            {"version": number},
            {"version": None},
            reason,
            now,
        )
        return number


def record_event(
    db: Database, name: str, number: int, action: str, stage: str, actor: str, reason: str = ""
) -> None:
    """Append an `approve` or `request` event for moving name:vN to stage."""
    with Write(db) as s:
        q = session_query(s)
        now = clock(s)
        art = artifact_locked_in(q, name)
        row = version_in(q, art, number)
        append(s, actor, action, name, ref_of(art, row), {}, {"for": stage}, reason, now)


@dataclass(frozen=True, slots=True)
class Approvals:
    approvers: frozenset[str]
    requester: str | None  # who last asked for this move, if anyone


def approvals(db: Database, name: str, number: int, stage: str) -> Approvals:
    """Approvals of moving name:vN to stage since it last changed stage."""
    with db.read() as s:
        rows = s.execute(
            select(EventRow.action, EventRow.actor, EventRow.after_json)
            .where(EventRow.model == name, EventRow.target == f"{name}:v{number}")
            .order_by(EventRow.id)
        )
        approvers: set[str] = set()
        requester = None
        for action, actor, after in rows:
            doc = json.loads(after)
            if action in STAGE_ACTIONS:
                approvers.clear()  # a new stage: earlier approvals were for another move
                requester = None
            elif doc.get("for") == stage:
                if action == "approve":
                    approvers.add(actor)
                elif action == "request":
                    requester = actor
    return Approvals(frozenset(approvers), requester)


def delete(db: Database, name: str, number: int, actor: str, reason: str) -> Version:
    with Write(db) as s:
        now = clock(s)
        art = artifact_locked(s, name)
        row = version_row(s, art, number)
        refuse_held(art, [row])
        return tombstone(s, art, row, actor, reason, now)


def refuse_held(art: ArtifactRow, rows: Sequence[VersionRow], then: str = "") -> None:
    """RegistryRefused when any of the versions is in staging or production: those are
    archived first, never deleted (then: what to do after archiving, for the message)."""
    held = [(ref_of(art, r), r.stage) for r in rows if r.stage in ("staging", "production")]
    if len(held) == 1:
        ref, stage = held[0]
        raise RegistryRefused(
            f"{ref} is in {stage} and cannot be deleted; archive it first "
            f"(`modelkeep archive {ref}`){then}"
        )
    if held:
        raise RegistryRefused(
            f"{', '.join(ref for ref, _ in held)} are in staging or production and cannot be "
            f"deleted; archive them first (`modelkeep archive REF`){then}"
        )


def tombstone(
    s: Session, art: ArtifactRow, row: VersionRow, actor: str, reason: str, now: datetime
) -> Version:
    """Mark a version deleted (its aliases go), with its audit event, in the caller's
    transaction; the caller has checked it is in neither staging nor production."""
    for alias in s.scalars(select(AliasRow).where(AliasRow.version_id == row.id)):
        s.delete(alias)
    s.execute(update(VersionRow).where(VersionRow.id == row.id).values(deleted_at=now))
    s.refresh(row)
    ref = ref_of(art, row)
    append(s, actor, "delete", art.name, ref, {"stage": row.stage}, {"deleted": True}, reason, now)
    return version_of(art, row)
