"""The reads behind the everyday commands (`ls`, `versions`, `show`, `models`), written once
as SQL that SQLite and PostgreSQL both speak and run through `Database.query`: on the default
SQLite file by the standard library's sqlite3, so these commands never import SQLAlchemy
(most of a short command's time), and elsewhere through SQLAlchemy. Writers that resolve a
ref inside their own transaction run the same SQL on their session (`session_query`).

Rows come back as the driver gives them; `records.version_of` checks and normalises them
(times, booleans) like an ORM row, and trusts nothing a database row says.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelkeep.errors import (
    AliasNotFound,
    ArtifactNotFound,
    DigestNotFound,
    VersionDeleted,
    VersionNotFound,
)
from modelkeep.meta.db import Database, Query
from modelkeep.meta.records import Added, Artifact, NewVersion, Version, version_of, when
from modelkeep.refs import AliasRef, DigestRef, Ref, content_id, parse_ref

STAGE_ALIASES = ("staging", "production")
_ARTIFACT = "SELECT id, name, type, created_at, latest_number, registered FROM artifacts"
_VERSION_COLUMNS = (
    "v.id, v.number, v.kind, v.digest, v.size, v.file_count, v.mode, v.source_name, "
    'v.created_at, v."user", v.message, v.metadata_json, v.run_id, v.registered, v.stage, '
    "v.stage_changed_at, v.deleted_at, v.host, v.store_id"
)
_VERSIONS = f"SELECT {_VERSION_COLUMNS} FROM versions v"
_WITH_ARTIFACT = (
    f"SELECT a.name AS a_name, a.type AS a_type, {_VERSION_COLUMNS} "
    "FROM versions v JOIN artifacts a ON a.id = v.artifact_id"
)


@dataclass(frozen=True, slots=True)
class _Named:
    """An artifact's name and type, as `version_of` reads them from a joined row."""

    name: str
    type: str


def similar_names(name: str, names: Sequence[str]) -> list[str]:
    """Up to three names like name, for "did you mean" in ArtifactNotFound."""
    similar = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    similar += [n for n in names if n.startswith(name) and n not in similar][:3]
    return similar[:3]


def find_artifact_in(q: Query, name: str, *, lock: bool = False) -> Any:
    """The artifact row called name, or None. lock: held for the writer's transaction
    (`Change.for_update`)."""
    return q.row(f"{_ARTIFACT} WHERE name = :name{q.for_update if lock else ''}", name=name)


def artifact_in(q: Query, name: str, *, lock: bool = False) -> Any:
    """The artifact row called name; ArtifactNotFound naming similar names if there is none.
    lock: held for the writer's transaction (`Change.for_update`)."""
    found = find_artifact_in(q, name, lock=lock)
    if found is None:
        names = [r.name for r in q.rows("SELECT name FROM artifacts")]
        raise ArtifactNotFound(name, similar_names(name, names), len(names))
    return found


def artifacts(db: Database) -> list[Artifact]:
    """Every artifact by name, with its newest version (deleted or not)."""
    with db.query() as q:
        arts = q.rows(f"{_ARTIFACT} ORDER BY name")
        latest = {
            r.artifact_id: r
            for r in q.rows(
                f"SELECT v.artifact_id, {_VERSION_COLUMNS} FROM versions v "
                "JOIN artifacts a ON a.id = v.artifact_id AND v.number = a.latest_number"
            )
        }
    out = []
    for a in arts:
        row = latest.get(a.id)
        newest = version_of(a, row) if row is not None else None
        out.append(Artifact(a.name, a.type, when(a.created_at), newest))
    return out


def versions(db: Database, name: str) -> list[Version]:
    with db.query() as q:
        art = artifact_in(q, name)
        rows = q.rows(f"{_VERSIONS} WHERE v.artifact_id = :id ORDER BY v.number", id=art.id)
    return [version_of(art, r) for r in rows]


def all_versions(db: Database) -> list[Version]:
    """Every version not deleted, by name and number."""
    with db.query() as q:
        rows = q.rows(f"{_WITH_ARTIFACT} WHERE v.deleted_at IS NULL ORDER BY a.name, v.number")
    return [version_of(_Named(r.a_name, r.a_type), r) for r in rows]


def resolve(db: Database, target: Ref | str) -> Version:
    """The version target names now (every ref form; `meta.resolve` adds `at`)."""
    parsed = parse_ref(target) if isinstance(target, str) else target
    with db.query() as q:
        return resolve_in(q, parsed)


def resolve_in(q: Query, target: Ref) -> Version:
    """resolve, in a snapshot the caller holds (a writer's: `session_query`)."""
    if isinstance(target, DigestRef):
        rows = q.rows(
            f"{_WITH_ARTIFACT} WHERE v.digest LIKE :prefix AND v.deleted_at IS NULL "
            "ORDER BY v.created_at DESC, v.id DESC",
            prefix=f"{target.prefix}%",
        )
        digests = sorted({r.digest for r in rows})
        if len(digests) != 1:
            raise DigestNotFound(target.prefix, [content_id(d)[:19] for d in digests[:5]])
        return version_of(_Named(rows[0].a_name, rows[0].a_type), rows[0])
    art = artifact_in(q, target.name)
    if isinstance(target, AliasRef):
        return checked(art, alias_in(q, art, target.alias))
    if target.number is None:  # the newest version that was not deleted
        found = q.row(
            f"{_VERSIONS} WHERE v.artifact_id = :id AND v.deleted_at IS NULL "
            "ORDER BY v.number DESC LIMIT 1",
            id=art.id,
        )
        if found is None:
            raise VersionNotFound(target.name, 0, art.latest_number)
        return checked(art, found)
    return version_of(art, version_in(q, art, target.number))


def numbered_in(q: Query, art: Any, number: int) -> Any | None:
    """name:vN's row, deleted or not; None if there is none."""
    return q.row(
        f"{_VERSIONS} WHERE v.artifact_id = :id AND v.number = :number", id=art.id, number=number
    )


def version_in(q: Query, art: Any, number: int) -> Any:
    """name:vN's row; VersionNotFound or VersionDeleted when it cannot be used."""
    found = numbered_in(q, art, number)
    if found is None:
        raise VersionNotFound(art.name, number, art.latest_number)
    if found.deleted_at is not None:
        raise VersionDeleted(f"{art.name}:v{number}", when(found.deleted_at).isoformat())
    return found


def artifact_type(db: Database, name: str) -> str | None:
    """The type of an existing artifact, or None if there is no artifact of that name."""
    with db.query() as q:
        found: str | None = q.scalar("SELECT type FROM artifacts WHERE name = :name", name=name)
    return found


def same_version_in(q: Query, artifact_id: int, new: NewVersion) -> Any:
    """The newest live version of the artifact with new's content (digest, kind and mode),
    or None: adding the same bytes again gives that version, not another number."""
    return q.row(
        f"{_VERSIONS} WHERE v.artifact_id = :id AND v.digest = :digest AND v.kind = :kind "
        "AND v.mode = :mode AND v.deleted_at IS NULL ORDER BY v.number DESC LIMIT 1",
        id=artifact_id,
        digest=new.digest,
        kind=new.kind,
        mode=new.mode,
    )


def same_as(art: Any, row: Any) -> Added:
    """What adding content equal to version row of art gives: that version, named as an
    older one when it is not the latest."""
    older = None if row.number == art.latest_number else version_of(art, row)
    return Added(version_of(art, row), created=False, same_as=older)


def existing(db: Database, name: str, new: NewVersion) -> Added | None:
    """What adding new to name gives when name has that content already (no run to link),
    read without a write transaction: an unchanged re-add is then only a stat check and
    this read. None: the add must be written (`add_version`)."""
    if new.run_id is not None:  # the run's output link is a write
        return None
    with db.query() as q:
        art = q.row(f"{_ARTIFACT} WHERE name = :name", name=name)
        row = None if art is None else same_version_in(q, art.id, new)
    return None if row is None else same_as(art, row)


def checked(art: Any, row: Any) -> Version:
    """The version of a row, unless it was deleted (VersionDeleted)."""
    if row.deleted_at is not None:
        raise VersionDeleted(f"{art.name}:v{row.number}", when(row.deleted_at).isoformat())
    return version_of(art, row)


def holders_in(q: Query, art: Any) -> dict[str, Any]:
    """The version rows holding staging and production: the only one in production, the
    most recently moved one in staging."""
    rows = q.rows(
        f"{_VERSIONS} WHERE v.artifact_id = :id AND v.stage IN :stages",
        id=art.id,
        stages=STAGE_ALIASES,
    )
    created = when(art.created_at)
    found: dict[str, Any] = {}
    moved = sorted(rows, key=lambda r: (when(r.stage_changed_at or created), r.id))
    for row in moved:
        found[row.stage] = row  # the newest wins
    return found


def alias_in(q: Query, art: Any, alias: str) -> Any:
    """The version row NAME@alias names now: a stage's holder or a free alias's target."""
    if alias in STAGE_ALIASES:
        row = holders_in(q, art).get(alias)
    else:
        row = q.row(
            f"{_VERSIONS} JOIN aliases l ON l.version_id = v.id "
            "WHERE l.artifact_id = :id AND l.alias = :alias",
            id=art.id,
            alias=alias,
        )
    if row is None:
        names = q.rows(
            "SELECT alias FROM aliases WHERE artifact_id = :id ORDER BY alias", id=art.id
        )
        raise AliasNotFound(art.name, alias, [r.alias for r in names])
    return row


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    latest: int
    registered: int  # how many versions are registered
    stages: dict[str, list[int]]  # staging, production, archived -> version numbers
    aliases: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "latest": self.latest,
            "registered": self.registered,
            "production": self.stages.get("production", []),
            "staging": self.stages.get("staging", []),
            "archived": self.stages.get("archived", []),
            "aliases": self.aliases,
        }


def models(db: Database) -> list[Model]:
    """Every registered model by name, with its versions in each stage and its aliases."""
    with db.query() as q:
        arts = q.rows(f"{_ARTIFACT} WHERE registered = :yes ORDER BY name", yes=True)
        stages: dict[int, dict[str, list[int]]] = {a.id: {} for a in arts}
        counts: dict[int, int] = dict.fromkeys(stages, 0)
        # Counted in the database (a model of 100,000 versions is one row here), over the
        # versions alone: joining the artifacts costs a hash join of every version, and
        # the rows of artifacts that are not models are skipped below.
        live = "FROM versions v WHERE v.registered = :yes AND v.deleted_at IS NULL"
        for r in q.rows(
            f"SELECT v.artifact_id, count(*) AS n {live} GROUP BY v.artifact_id", yes=True
        ):
            if r.artifact_id in counts:
                counts[r.artifact_id] = r.n
        for r in q.rows(
            f"SELECT v.artifact_id, v.number, v.stage {live} AND v.stage IN :stages "
            "ORDER BY v.number",
            yes=True,
            stages=("staging", "production", "archived"),
        ):
            if r.artifact_id in stages:
                stages[r.artifact_id].setdefault(r.stage, []).append(r.number)
        aliases: dict[int, dict[str, int]] = {a.id: {} for a in arts}
        for r in q.rows(  # each alias's number looked up by key: no scan of the versions
            "SELECT l.artifact_id, l.alias, "
            "(SELECT v.number FROM versions v WHERE v.id = l.version_id) AS number "
            "FROM aliases l ORDER BY l.alias"
        ):
            if r.artifact_id in aliases and r.number is not None:
                aliases[r.artifact_id][r.alias] = r.number
    return [Model(a.name, a.latest_number, counts[a.id], stages[a.id], aliases[a.id]) for a in arts]
