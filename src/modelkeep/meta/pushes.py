"""Which versions are on which remote, by canonical URL: shared by everyone on a team.

A push row is written only after every object of the version is published on the remote,
so it is a promise another machine may rely on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from modelkeep.meta.db import Database
from modelkeep.meta.models import ArtifactRow, PushRow, VersionRow


@dataclass(frozen=True, slots=True)
class PushState:
    ref: str
    host: str | None  # the machine that added it
    store_id: str | None  # the store that added it
    user: str
    remotes: tuple[str, ...]  # URLs it was pushed to


def _version_ids(s: object, refs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    wanted = set(refs)
    names = {n for n, _ in wanted}
    rows = s.execute(  # type: ignore[attr-defined]
        select(ArtifactRow.name, VersionRow.number, VersionRow.id)
        .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
        .where(ArtifactRow.name.in_(names))
    )
    return {(n, num): vid for n, num, vid in rows if (n, num) in wanted}


def mark_pushed(db: Database, refs: Iterable[tuple[str, int]], remote: str, host: str) -> None:
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


def pushed(db: Database, remote: str) -> set[tuple[str, int]]:
    """(name, number) of every version pushed to remote."""
    with db.read() as s:
        rows = s.execute(
            select(ArtifactRow.name, VersionRow.number)
            .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
            .join(PushRow, PushRow.version_id == VersionRow.id)
            .where(PushRow.remote == remote)
        )
        return {(n, num) for n, num in rows}


def push_state(db: Database, name: str, number: int) -> PushState:
    with db.read() as s:
        row = s.execute(
            select(VersionRow.id, VersionRow.host, VersionRow.user, VersionRow.store_id)
            .join(ArtifactRow, VersionRow.artifact_id == ArtifactRow.id)
            .where(ArtifactRow.name == name, VersionRow.number == number)
        ).one()
        urls = s.scalars(
            select(PushRow.remote).where(PushRow.version_id == row.id).order_by(PushRow.remote)
        )
        return PushState(f"{name}:v{number}", row.host, row.store_id, row.user, tuple(urls))


def pushed_anywhere(db: Database) -> set[tuple[str, int]]:
    """(name, number) of every version pushed to some remote."""
    with db.read() as s:
        rows = s.execute(
            select(ArtifactRow.name, VersionRow.number)
            .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
            .join(PushRow, PushRow.version_id == VersionRow.id)
            .distinct()
        )
        return {(n, num) for n, num in rows}
