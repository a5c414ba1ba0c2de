"""The one resolver: every ref form (`NAME`, `NAME:vN`, `NAME:latest`, `NAME@stage`,
`NAME@alias`, `b3:PREFIX`) to a version, now or as it stood at a past moment."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.errors import DigestNotFound, NothingAtTime, VersionDeleted, VersionNotFound
from modelkeep.meta.db import Database
from modelkeep.meta.events import Replayed
from modelkeep.meta.models import ArtifactRow, EventRow, VersionRow
from modelkeep.meta.records import Version, version_of
from modelkeep.meta.rows import alias_row, artifact, ref_of
from modelkeep.refs import AliasRef, DigestRef, Ref, content_id, parse_ref


def resolve(db: Database, target: Ref | str, *, at: datetime | None = None) -> Version:
    """The version target names now, or named at a past moment (replaying the event log)."""
    parsed = parse_ref(target) if isinstance(target, str) else target
    if at is not None:
        return _resolve_at(db, parsed, at)
    with db.read() as s:
        return resolve_in(s, parsed)


def resolve_in(s: Session, target: Ref) -> Version:
    """resolve, now, inside a transaction the caller holds."""
    if isinstance(target, DigestRef):
        rows = s.execute(
            select(ArtifactRow, VersionRow)
            .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
            .where(VersionRow.digest.like(f"{target.prefix}%"), VersionRow.deleted_at.is_(None))
            .order_by(VersionRow.created_at.desc(), VersionRow.id.desc())
        ).all()
        digests = sorted({v.digest for _, v in rows})
        if len(digests) != 1:
            raise DigestNotFound(target.prefix, [content_id(d)[:19] for d in digests[:5]])
        art, row = rows[0]
        return version_of(art, row)
    art = artifact(s, target.name)
    if isinstance(target, AliasRef):
        found = alias_row(s, art, target.alias)
    else:
        query = select(VersionRow).where(VersionRow.artifact_id == art.id)
        if target.number is None:  # the newest version that was not deleted
            query = query.where(VersionRow.deleted_at.is_(None))
            query = query.order_by(VersionRow.number.desc()).limit(1)
        else:
            query = query.where(VersionRow.number == target.number)
        maybe: VersionRow | None = s.scalars(query).one_or_none()
        if maybe is None:
            raise VersionNotFound(target.name, target.number or 0, art.latest_number)
        found = maybe
    if found.deleted_at is not None:
        raise VersionDeleted(f"{art.name}:v{found.number}", found.deleted_at.isoformat())
    return version_of(art, found)


def replay(s: Session, name: str, at: datetime) -> Replayed:
    """Model name's registry state at a moment, from its events up to then."""
    state = Replayed()
    for e in s.scalars(
        select(EventRow).where(EventRow.model == name, EventRow.at <= at).order_by(EventRow.id)
    ):
        state.apply(e)
    return state


def _resolve_at(db: Database, target: Ref, at: datetime) -> Version:
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
