"""MLflow artifacts as rows: a path under the server's artifact root, and the content id
and size of the file there. The bytes are in the store, deduplicated like every version's.

MLflow lets a path be written again, so a path is one row that an upload replaces, unlike
a version or a run attachment. Folders are not rows: a folder is every path under it. A
path is never both a file and a folder (`a/b` a file and `a/b/c` another) — the second
upload is refused, so a listing is never ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, or_, select, text, true
from sqlalchemy.orm import Session

from modelkeep.errors import ArtifactPathConflict, InvalidArgument
from modelkeep.meta.db import Database
from modelkeep.meta.models import MlflowArtifactRow

MAX_PATH = 1024
_LOCK = 0x6D6B6172  # the advisory lock of artifact rows on PostgreSQL ('mkar')
MAX_SEGMENTS = 64


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    path: str  # relative to the folder asked about (or the artifact root)
    digest: str  # hex BLAKE3 of the file
    size: int
    user: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in a folder's listing."""

    name: str
    is_dir: bool
    size: int | None  # a file's; None for a folder


def check_path(path: object, *, root: bool = False) -> str:
    """A path is plain relative segments (`1/<run>/artifacts/model/MLmodel`): no empty,
    `.` or `..` segment, no backslash or control character, so no path names a place
    outside the artifact root. root=True also allows "" (the root itself)."""
    if root and path == "":
        return ""
    segments = path.split("/") if isinstance(path, str) else []
    if (
        not isinstance(path, str)
        or not path
        or len(path) > MAX_PATH
        or len(segments) > MAX_SEGMENTS
        or any(ord(c) < 32 or c in "\\\x7f" for c in path)
        or any(seg in ("", ".", "..") for seg in segments)
    ):
        raise InvalidArgument(
            f"artifact path {str(path)[:80]!r} must be 1-{MAX_PATH} characters of relative "
            "segments (no empty, '.' or '..' segment, no backslash or control character)"
        )
    return path


def _under(prefix: str):  # type: ignore[no-untyped-def]
    return MlflowArtifactRow.path.startswith(prefix + "/", autoescape=True)


def _parents(path: str) -> list[str]:
    segments = path.split("/")
    return ["/".join(segments[:i]) for i in range(1, len(segments))]


def put(db: Database, path: str, digest: str, size: int, store_id: str | None, user: str) -> None:
    """Record (or replace) the file at path. Caller holds the store's `writing()` until this
    returns, so gc never sees the content without the row that keeps it."""
    check_path(path)
    with db.write() as s:
        # PostgreSQL: one artifact write at a time, so two uploads never make one path a
        # file and a folder, nor race to insert one row (SQLite writes one at a time anyway)
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
        clash = s.scalar(
            select(MlflowArtifactRow.path)
            .where(or_(MlflowArtifactRow.path.in_(_parents(path)), _under(path)))
            .limit(1)
        )
        if clash is not None:
            raise ArtifactPathConflict(path, clash)
        row = s.get(MlflowArtifactRow, path)
        if row is None:
            row = MlflowArtifactRow(path=path)
            s.add(row)
        row.digest, row.size, row.store_id = digest, size, store_id
        row.user, row.created_at = user, datetime.now(UTC)


def get(db: Database, path: str) -> ArtifactFile | None:
    with db.read() as s:
        row = s.get(MlflowArtifactRow, path)
        return None if row is None else _of(row, "")


def files_under(db: Database, prefix: str) -> list[ArtifactFile]:
    """Every file under a folder (all of them for ""), paths relative to it, sorted."""
    with db.read() as s:
        return _files(s, prefix)


def _files(s: Session, prefix: str) -> list[ArtifactFile]:
    query = select(MlflowArtifactRow).order_by(MlflowArtifactRow.path)
    if prefix:
        query = query.where(_under(prefix))
    return [_of(r, prefix) for r in s.scalars(query)]


def of_run(db: Database, run_id: str) -> list[ArtifactFile]:
    """The files the MLflow client logged for a run (in the server's own artifact folder
    of its experiment), paths relative to the run's folder."""
    from modelkeep.meta.experiments import DEFAULT_ID
    from modelkeep.meta.models import RunRow

    with db.read() as s:
        experiment = s.scalar(select(RunRow.experiment_id).where(RunRow.id == run_id))
        return _files(s, f"{experiment or DEFAULT_ID}/{run_id}/artifacts")


def listing(db: Database, prefix: str) -> list[Entry]:
    """The names directly in a folder; nothing for a file or for no folder (as MLflow's
    server answers, and how its client tells a file from a folder)."""
    names: dict[str, Entry] = {}
    for f in files_under(db, prefix):
        head, sep, _ = f.path.partition("/")
        names.setdefault(head, Entry(head, True, None) if sep else Entry(head, False, f.size))
    return [names[n] for n in sorted(names)]


def remove(db: Database, path: str) -> int:
    """Forget the file at path, or every file under it (all for ""): how many."""
    with db.write() as s:
        where = or_(MlflowArtifactRow.path == path, _under(path)) if path else true()
        result = s.execute(delete(MlflowArtifactRow).where(where))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def all_digests(db: Database) -> set[str]:
    """Every content id (hex) an artifact row names: gc keeps them."""
    with db.read() as s:
        return set(s.scalars(select(MlflowArtifactRow.digest).distinct()))


def stored_here(db: Database, store_id: str | None) -> dict[str, str]:
    """The artifacts this store received (or that record no store), as label -> content id
    (hex): fsck checks them whole, as it does this store's versions."""
    with db.read() as s:
        rows = s.execute(
            select(MlflowArtifactRow.path, MlflowArtifactRow.digest).where(
                (MlflowArtifactRow.store_id == store_id) | MlflowArtifactRow.store_id.is_(None)
            )
        )
        return {f"MLflow artifact {r.path}": r.digest for r in rows}


def _of(row: MlflowArtifactRow, prefix: str) -> ArtifactFile:
    path = row.path[len(prefix) + 1 :] if prefix else row.path
    return ArtifactFile(path, row.digest, row.size, row.user, row.created_at)
