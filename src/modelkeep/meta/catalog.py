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
    VersionNotFound,
)
from modelkeep.meta.db import Database
from modelkeep.meta.models import ArtifactRow, VersionRow
from modelkeep.meta.records import ARTIFACT_TYPES, Artifact, Version, version_of
from modelkeep.meta.runs import check_running
from modelkeep.refs import DigestRef, Ref, VersionRef

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
                    if (latest.kind, latest.digest, latest.mode) == (
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


def resolve(db: Database, ref: Ref) -> Version:
    with db.read() as s:
        if isinstance(ref, DigestRef):
            rows = s.execute(
                select(ArtifactRow, VersionRow)
                .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
                .where(VersionRow.digest.like(f"{ref.prefix}%"))
                .order_by(VersionRow.created_at.desc(), VersionRow.id.desc())
            ).all()
            digests = sorted({v.digest for _, v in rows})
            if len(digests) != 1:
                raise DigestNotFound(ref.prefix, [f"b3:{d[:16]}" for d in digests[:5]])
            art, row = rows[0]
            return version_of(art, row)
        assert isinstance(ref, VersionRef)
        art = _artifact(s, ref.name)
        number = ref.number or art.latest_number
        found = s.scalars(
            select(VersionRow).where(VersionRow.artifact_id == art.id, VersionRow.number == number)
        ).one_or_none()
        if found is None:
            raise VersionNotFound(ref.name, number, art.latest_number)
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
        rows = s.scalars(
            select(VersionRow).where(VersionRow.artifact_id == art.id).order_by(VersionRow.number)
        ).all()
        return [version_of(art, r) for r in rows]


def all_versions(db: Database) -> list[Version]:
    with db.read() as s:
        rows = s.execute(
            select(ArtifactRow, VersionRow)
            .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
            .order_by(ArtifactRow.name, VersionRow.number)
        ).all()
        return [version_of(a, v) for a, v in rows]
