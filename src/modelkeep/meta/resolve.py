"""The one resolver: every ref form (`NAME`, `NAME:vN`, `NAME:latest`, `NAME@stage`,
`NAME@alias`, `b3:PREFIX`) to a version, now (`meta.reads`: no SQLAlchemy on the default
SQLite file) or as it stood at a past moment (replaying the registry's event log)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from modelkeep.errors import NothingAtTime, VersionDeleted
from modelkeep.meta import reads
from modelkeep.meta.db import Database
from modelkeep.meta.records import Version, version_of
from modelkeep.refs import AliasRef, DigestRef, Ref, parse_ref

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from modelkeep.meta.events import Replayed


def resolve(db: Database, target: Ref | str, *, at: datetime | None = None) -> Version:
    """The version target names now, or named at a past moment."""
    parsed = parse_ref(target) if isinstance(target, str) else target
    return reads.resolve(db, parsed) if at is None else resolve_at(db, parsed, at)


def replay(s: Session, name: str, at: datetime) -> Replayed:
    """Model name's registry state at a moment, from its events up to then."""
    from sqlalchemy import select

    from modelkeep.meta.events import Replayed
    from modelkeep.meta.models import EventRow

    state = Replayed()
    for e in s.scalars(
        select(EventRow).where(EventRow.model == name, EventRow.at <= at).order_by(EventRow.id)
    ):
        state.apply(e)
    return state


def resolve_at(db: Database, target: Ref, at: datetime) -> Version:
    """The version target named at a past moment, from the event log."""
    from sqlalchemy import select

    from modelkeep.meta.models import VersionRow
    from modelkeep.meta.rows import artifact, ref_of

    when = at.astimezone(UTC).isoformat(timespec="seconds")
    with db.read() as s:
        if isinstance(target, DigestRef):
            raise NothingAtTime(str(target), when, "a content id names the same bytes at any time")
        art = artifact(s, target.name)
        if art.created_at > at:
            raise NothingAtTime(str(target), when, f"{target.name!r} did not exist yet")
        state = replay(s, target.name, at)
        if isinstance(target, AliasRef):
            if target.alias in ("staging", "production"):
                number = state.holder(target.alias)
            else:
                number = state.aliases.get(target.alias)
            if number is None:
                raise NothingAtTime(str(target), when, f"no version held {target.alias!r} then")
        else:
            query = select(VersionRow.number).where(
                VersionRow.artifact_id == art.id, VersionRow.created_at <= at
            )
            if target.number is not None:
                query = query.where(VersionRow.number == target.number)
            else:  # the newest version then: one already deleted then does not count
                query = query.where(VersionRow.deleted_at.is_(None) | (VersionRow.deleted_at > at))
            number = s.scalars(query.order_by(VersionRow.number.desc()).limit(1)).one_or_none()
            if number is None:
                raise NothingAtTime(str(target), when, "that version did not exist yet")
        row = s.scalars(
            select(VersionRow).where(VersionRow.artifact_id == art.id, VersionRow.number == number)
        ).one()
        if row.deleted_at is not None and row.deleted_at <= at:
            raise VersionDeleted(ref_of(art, row), row.deleted_at.isoformat())
        version = version_of(art, row)
    # Shown as it stood then: its stage at that moment.
    return dataclasses.replace(version, stage=state.stages.get(number, "none"), deleted_at=None)
