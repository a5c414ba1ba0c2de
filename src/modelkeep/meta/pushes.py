"""Which versions are on which remote, by canonical URL: shared by everyone on a team.

A push row is written only after every object of the version is published on the remote,
so it is a promise another machine may rely on. Reads are `Database.query`'s SQL (see
`meta.reads`), so `show` on the default SQLite file does not import SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from modelkeep.errors import VersionNotFound
from modelkeep.meta.db import Database


@dataclass(frozen=True, slots=True)
class PushState:
    ref: str
    host: str | None  # the machine that added it
    store_id: str | None  # the store that added it
    user: str
    remotes: tuple[str, ...]  # URLs it was pushed to


def _version_ids(s: object, refs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    from sqlalchemy import select

    from modelkeep.meta.models import ArtifactRow, VersionRow

    wanted = set(refs)
    names = {n for n, _ in wanted}
    rows = s.execute(  # type: ignore[attr-defined]
        select(ArtifactRow.name, VersionRow.number, VersionRow.id)
        .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
        .where(ArtifactRow.name.in_(names))
    )
    return {(n, num): vid for n, num, vid in rows if (n, num) in wanted}


def mark_pushed(db: Database, refs: Iterable[tuple[str, int]], remote: str, host: str) -> None:
    from sqlalchemy import select

    from modelkeep.meta.models import PushRow

    refs = list(refs)
    if not refs:
        return
    now = datetime.now(UTC)
    with db.write() as s:
        ids = _version_ids(s, refs)
        done = set(
            s.scalars(
                select(PushRow.version_id).where(
                    PushRow.remote == remote, PushRow.version_id.in_(ids.values())
                )
            )
        )
        for vid in sorted(set(ids.values()) - done):
            s.add(PushRow(version_id=vid, remote=remote, pushed_at=now, host=host))


_PUSHED = (
    "SELECT DISTINCT a.name, v.number FROM versions v JOIN artifacts a ON a.id = v.artifact_id "
    "JOIN pushes p ON p.version_id = v.id"
)


def pushed(db: Database, remote: str) -> set[tuple[str, int]]:
    """(name, number) of every version pushed to remote."""
    with db.query() as q:
        return {(r.name, r.number) for r in q.rows(f"{_PUSHED} WHERE p.remote = :r", r=remote)}


def push_state(db: Database, name: str, number: int) -> PushState:
    with db.query() as q:
        row = q.row(
            'SELECT v.id, v.host, v."user", v.store_id FROM versions v '
            "JOIN artifacts a ON a.id = v.artifact_id WHERE a.name = :name AND v.number = :n",
            name=name,
            n=number,
        )
        if row is None:
            raise VersionNotFound(name, number, 0)
        urls = q.rows("SELECT remote FROM pushes WHERE version_id = :id ORDER BY remote", id=row.id)
    return PushState(
        f"{name}:v{number}", row.host, row.store_id, row.user, tuple(r.remote for r in urls)
    )


def pushed_anywhere(db: Database) -> set[tuple[str, int]]:
    """(name, number) of every version pushed to some remote."""
    with db.query() as q:
        return {(r.name, r.number) for r in q.rows(_PUSHED)}
