"""Row helpers every metadata writer and reader shares: finding an artifact, a version,
the holders of its stages, and the one way a version row is made."""

from __future__ import annotations

import json
import os
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from modelkeep.errors import ArtifactNotFound, VersionDeleted, VersionNotFound
from modelkeep.meta.db import Change, session_query
from modelkeep.meta.models import AliasRow, ArtifactRow, VersionRow
from modelkeep.meta.reads import artifact_in, find_artifact_in, holders_in, similar_names
from modelkeep.meta.webhooks import version_created

# Built once: every registry change runs these, and building a statement (coercing its
# clauses, computing its cache key) cost more than executing it.
_ARTIFACT = select(ArtifactRow).where(ArtifactRow.name == bindparam("name"))
_ARTIFACT_LOCKED = _ARTIFACT.with_for_update()
_VERSION = select(VersionRow).where(
    VersionRow.artifact_id == bindparam("art"), VersionRow.number == bindparam("number")
)


def artifact(s: Session, name: str) -> ArtifactRow:
    """The artifact called name; ArtifactNotFound naming similar names if there is none."""
    art: ArtifactRow | None = s.scalars(_ARTIFACT, {"name": name}).one_or_none()
    if art is None:
        names = list(s.scalars(select(ArtifactRow.name)))
        raise ArtifactNotFound(name, similar_names(name, names), len(names))
    return art


def artifact_locked(
    s: Session, name: str, *, create: str | None = None, now: datetime | None = None
) -> ArtifactRow:
    """The artifact's row, locked for this transaction (PostgreSQL; SQLite locks it all).

    create is the type of a new artifact made when none exists (made at now); without it,
    a missing artifact is ArtifactNotFound.
    """
    art: ArtifactRow | None = s.scalars(_ARTIFACT_LOCKED, {"name": name}).one_or_none()
    if art is not None:
        return art
    if create is None or now is None:
        return artifact(s, name)
    art = ArtifactRow(name=name, type=create, created_at=now, latest_number=0)
    s.add(art)
    s.flush()
    return art


_NEW_ARTIFACT = (
    "INSERT INTO artifacts (name, type, created_at, latest_number, registered, description) "
    "VALUES (:name, :type, :at, 0, :no, '')"
)


def artifact_locked_in(
    q: Change, name: str, *, create: str | None = None, now: datetime | None = None
) -> Any:
    """`artifact_locked` as a plain row (`reads.artifact_in`), for the writers that run
    their SQL on the transaction (`session_query`) rather than through the ORM."""
    if create is not None and now is not None and find_artifact_in(q, name, lock=True) is None:
        q.execute(_NEW_ARTIFACT, name=name, type=create, at=q.time(now), no=False)
    return artifact_in(q, name, lock=True)


def ref_of(art: ArtifactRow | Any, row: VersionRow | Any) -> str:
    return f"{art.name}:v{row.number}"


def version_row(s: Session, art: ArtifactRow, number: int) -> VersionRow:
    """name:vN's row; VersionNotFound or VersionDeleted when it cannot be used."""
    row = s.scalars(_VERSION, {"art": art.id, "number": number}).one_or_none()
    if row is None:
        raise VersionNotFound(art.name, number, art.latest_number)
    if row.deleted_at is not None:
        raise VersionDeleted(f"{art.name}:v{number}", row.deleted_at.isoformat())
    return row


_VERSION_COLUMNS = (
    *("artifact_id", "number", "kind", "digest", "size", "file_count", "mode", "source_name"),
    *("created_at", "user", "message", "metadata_json", "run_id", "registered", "stage"),
    *("stage_changed_at", "deleted_at", "host", "store_id", "description"),
)
_NEW_VERSION = "INSERT INTO versions ({}) VALUES ({})".format(
    ", ".join(f'"{c}"' for c in _VERSION_COLUMNS), ", ".join(f":{c}" for c in _VERSION_COLUMNS)
)
_BUMP = "UPDATE artifacts SET latest_number = :number WHERE id = :id"


def create_version(
    s: Session,
    art: Any,
    *,
    kind: str,
    digest: str,
    size: int,
    file_count: int,
    mode: int,
    source_name: str,
    user: str,
    message: str,
    metadata: dict[str, Any],
    run_id: str | None,
    host: str | None,
    store_id: str | None,
    now: datetime,
    registered: bool = False,
    description: str = "",
) -> Any:
    """The one way a version row is made (add and register): the next number of art (a
    plain row, `artifact_locked_in`), at now, which the caller read with `chain.clock` under
    the chain lock. A registered one is inserted as such (its stage time now), not inserted
    and then updated. Plain SQL (`session_query`); the row it returns has the columns of
    the versions table, as `version_of` reads them."""
    q = session_query(s)
    values = {
        "artifact_id": art.id,
        "number": art.latest_number + 1,
        "kind": kind,
        "digest": digest,
        "size": size,
        "file_count": file_count,
        "mode": mode,
        "source_name": os.fsencode(source_name),
        "created_at": now,
        "user": user,
        "message": message,
        "metadata_json": json.dumps(metadata, sort_keys=True),
        "run_id": run_id,
        "registered": registered,
        "stage": "none",
        "stage_changed_at": now if registered else None,
        "deleted_at": None,
        "host": host,
        "store_id": store_id,
        "description": description,
    }
    at = q.time(now)
    times = {"created_at": at, "stage_changed_at": at if registered else None}
    made = q.insert(_NEW_VERSION, **(values | times))
    q.execute(_BUMP, number=values["number"], id=art.id)
    row = SimpleNamespace(id=made, **values)
    version_created(s, art, row)  # its webhook deliveries, in this transaction
    return row


def holders(s: Session, art: ArtifactRow) -> dict[str, VersionRow]:
    """The versions holding staging and production (`reads.holders_in`), as ORM rows."""
    held = holders_in(session_query(s), art)
    return {stage: s.get_one(VersionRow, row.id) for stage, row in held.items()}


def alias_names(s: Session, art: ArtifactRow) -> list[str]:
    return sorted(s.scalars(select(AliasRow.alias).where(AliasRow.artifact_id == art.id)))
