"""Artifacts and versions as rows: allocate numbers, resolve refs, list.

Version numbers come from bumping `artifacts.latest_number` inside the write transaction
that inserts the version, under a row lock (PostgreSQL) or the database write lock
(SQLite), so they start at 1 and never repeat or skip, whoever adds at the same time.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from modelkeep.errors import (
    ArtifactNotFound,
    DatabaseError,
    DigestNotFound,
    InvalidArgument,
    TypeMismatch,
    VersionDeleted,
    VersionNotFound,
)
from modelkeep.meta.db import Database
from modelkeep.meta.models import ArtifactRow, VersionRow
from modelkeep.meta.records import ARTIFACT_TYPES, Artifact, Version, version_of
from modelkeep.meta.runs import check_running
from modelkeep.refs import AliasRef, DigestRef, Ref

_RETRIES = 20


@dataclass(frozen=True, slots=True)
class NewVersion:
    kind: str
    digest: str  # 64 hex digits
    size: int
    file_count: int
    mode: int
    source_name: str
    user: str
    message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # the run that produced it
    host: str | None = None  # the machine that added it


@dataclass(frozen=True, slots=True)
class Added:
    version: Version
    created: bool  # False: the content equals the latest version, which is returned
    same_as: Version | None = None  # an older version with the same content, if any


def check_type(type_: str) -> str:
    if type_ not in ARTIFACT_TYPES:
        raise InvalidArgument(
            f"unknown artifact type {type_!r}; use one of {', '.join(ARTIFACT_TYPES)}"
        )
    return type_


def add_version(db: Database, name: str, type_: str | None, new: NewVersion) -> Added:
    if type_ is not None:
        check_type(type_)
    metadata_json = json.dumps(new.metadata, sort_keys=True)
    for _attempt in range(_RETRIES):
        try:
            with db.write() as s:
                if new.run_id is not None:
                    check_running(s, new.run_id)
                art = s.scalars(
                    select(ArtifactRow).where(ArtifactRow.name == name).with_for_update()
                ).one_or_none()
                now = datetime.now(UTC)
                if art is None:
                    art = ArtifactRow(
                        name=name, type=type_ or "other", created_at=now, latest_number=0
                    )
                    s.add(art)
                    s.flush()
                elif type_ is not None and type_ != art.type:
                    raise TypeMismatch(name, art.type, type_)
                if art.latest_number:
                    latest = s.scalars(
                        select(VersionRow).where(
                            VersionRow.artifact_id == art.id,
                            VersionRow.number == art.latest_number,
                        )
                    ).one()
                    if latest.deleted_at is None and (latest.kind, latest.digest, latest.mode) == (
                        new.kind,
                        new.digest,
                        new.mode,
                    ):
                        return Added(version_of(art, latest), created=False)
                earlier = s.scalars(
                    select(VersionRow)
                    .where(VersionRow.artifact_id == art.id, VersionRow.digest == new.digest)
                    .order_by(VersionRow.number.desc())
                    .limit(1)
                ).one_or_none()
                art.latest_number += 1
                row = VersionRow(
                    artifact_id=art.id,
                    number=art.latest_number,
                    kind=new.kind,
                    digest=new.digest,
                    size=new.size,
                    file_count=new.file_count,
                    mode=new.mode,
                    source_name=os.fsencode(new.source_name),
                    created_at=now,
                    user=new.user,
                    message=new.message,
                    metadata_json=metadata_json,
                    run_id=new.run_id,
                    host=new.host,
                )
                s.add(row)
                s.flush()
                same = version_of(art, earlier) if earlier is not None else None
                return Added(version_of(art, row), created=True, same_as=same)
        except DatabaseError as exc:
            # Two writers created the same new artifact at once: the loser tries again.
            if not isinstance(exc.__cause__, sa_exc.IntegrityError):
                raise
    raise DatabaseError(db.display_url, f"could not add a version of {name!r}: too much contention")


def artifact_type(db: Database, name: str) -> str | None:
    """The type of an existing artifact, or None if there is no artifact of that name."""
    with db.read() as s:
        found: str | None = s.scalars(
            select(ArtifactRow.type).where(ArtifactRow.name == name)
        ).one_or_none()
        return found


def _artifact(s: Any, name: str) -> ArtifactRow:
    art: ArtifactRow | None = s.scalars(
        select(ArtifactRow).where(ArtifactRow.name == name)
    ).one_or_none()
    if art is None:
        names = list(s.scalars(select(ArtifactRow.name)))
        similar = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        similar += [n for n in names if n.startswith(name) and n not in similar][:3]
        raise ArtifactNotFound(name, similar[:3], len(names))
    return art


def artifact_row_locked(s: Any, name: str) -> ArtifactRow:
    """The artifact's row, locked for this transaction (PostgreSQL; SQLite locks it all)."""
    art: ArtifactRow | None = s.scalars(
        select(ArtifactRow).where(ArtifactRow.name == name).with_for_update()
    ).one_or_none()
    return art if art is not None else _artifact(s, name)


def resolve(db: Database, ref: Ref) -> Version:
    with db.read() as s:
        return resolve_in(s, ref)


def resolve_in(s: Any, ref: Ref) -> Version:
    """resolve, inside a transaction the caller holds."""
    if isinstance(ref, DigestRef):
        rows = s.execute(
            select(ArtifactRow, VersionRow)
            .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
            .where(VersionRow.digest.like(f"{ref.prefix}%"), VersionRow.deleted_at.is_(None))
            .order_by(VersionRow.created_at.desc(), VersionRow.id.desc())
        ).all()
        digests = sorted({v.digest for _, v in rows})
        if len(digests) != 1:
            raise DigestNotFound(ref.prefix, [f"b3:{d[:16]}" for d in digests[:5]])
        art, row = rows[0]
        return version_of(art, row)
    art = _artifact(s, ref.name)
    if isinstance(ref, AliasRef):
        from modelkeep.meta.registry import resolve_alias

        found = resolve_alias(s, art, ref.alias)
    else:
        query = select(VersionRow).where(VersionRow.artifact_id == art.id)
        if ref.number is None:  # the newest version that was not deleted
            query = query.where(VersionRow.deleted_at.is_(None))
            query = query.order_by(VersionRow.number.desc()).limit(1)
        else:
            query = query.where(VersionRow.number == ref.number)
        maybe: VersionRow | None = s.scalars(query).one_or_none()
        if maybe is None:
            raise VersionNotFound(ref.name, ref.number or 0, art.latest_number)
        found = maybe
    if found.deleted_at is not None:
        raise VersionDeleted(f"{art.name}:v{found.number}", found.deleted_at.isoformat())
    return version_of(art, found)


def artifacts(db: Database) -> list[Artifact]:
    with db.read() as s:
        rows = s.execute(
            select(ArtifactRow, VersionRow)
            .outerjoin(
                VersionRow,
                (VersionRow.artifact_id == ArtifactRow.id)
                & (VersionRow.number == ArtifactRow.latest_number),
            )
            .order_by(ArtifactRow.name)
        ).all()
        return [
            Artifact(a.name, a.type, a.created_at, version_of(a, v) if v is not None else None)
            for a, v in rows
        ]


def versions(db: Database, name: str) -> list[Version]:
    with db.read() as s:
        art = _artifact(s, name)
        rows = s.execute(  # plain rows, not ORM objects: a long list builds 3x faster
            select(*VersionRow.__table__.c)
            .where(VersionRow.artifact_id == art.id)
            .order_by(VersionRow.number)
        )
        return [version_of(art, r) for r in rows]


def all_versions(db: Database) -> list[Version]:
    with db.read() as s:
        rows = s.execute(
            select(ArtifactRow, VersionRow)
            .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
            .where(VersionRow.deleted_at.is_(None))
            .order_by(ArtifactRow.name, VersionRow.number)
        ).all()
        return [version_of(a, v) for a, v in rows]
