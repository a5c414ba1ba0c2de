"""Run attachments as rows: a file that belongs to a run, by content id and size.

The bytes are in the store, deduplicated like every version's; a row names no artifact,
so attaching never makes a version, a lock entry or a `.gitignore` line. A name, once
attached, keeps its content: attaching the same bytes again is a no-op, other bytes are
refused (AttachmentExists).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from modelkeep.errors import AttachmentExists, AttachmentNotFound, InvalidArgument, RunNotFound
from modelkeep.meta.db import Database
from modelkeep.meta.models import AttachmentRow, RunRow

MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Attachment:
    run_id: str
    name: str
    digest: str  # hex BLAKE3 of the file
    size: int
    created_at: datetime

    @property
    def content_id(self) -> str:
        return f"b3:{self.digest}"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "name": self.name,
            "content_id": self.content_id,
            "size": self.size,
            "created_at": self.created_at.isoformat(),
        }


def check_name(name: str) -> str:
    """A name is a relative path of plain segments (`roc.png`, `plots/roc.png`), so `runs
    get` can suggest it as a file name and no name escapes a folder it is restored into."""
    segments = name.split("/") if isinstance(name, str) else []
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_NAME
        or name != name.strip()
        or any(ord(c) < 32 or c == "\\" for c in name)
        or any(seg in ("", ".", "..") for seg in segments)
    ):
        raise InvalidArgument(
            f"attachment name {name!r} must be 1-{MAX_NAME} characters of a relative path "
            "(no empty, '.' or '..' segments, no backslash or control characters)"
        )
    return name


def add(
    db: Database, run_id: str, name: str, digest: str, size: int, store_id: str | None
) -> Attachment:
    check_name(name)
    with db.write() as s:
        if s.get(RunRow, run_id) is None:
            raise RunNotFound(run_id)
        row = s.get(AttachmentRow, (run_id, name))
        if row is not None:
            if row.digest != digest:
                raise AttachmentExists(run_id, name)
            return _of(row)
        row = AttachmentRow(
            run_id=run_id,
            name=name,
            digest=digest,
            size=size,
            created_at=datetime.now(UTC),
            store_id=store_id,
        )
        s.add(row)
        s.flush()
        return _of(row)


def of_run(db: Database, run_id: str) -> list[Attachment]:
    with db.read() as s:
        rows = s.scalars(
            select(AttachmentRow).where(AttachmentRow.run_id == run_id).order_by(AttachmentRow.name)
        )
        return [_of(r) for r in rows]


def find(db: Database, run_id: str, name: str) -> Attachment:
    found = {a.name: a for a in of_run(db, run_id)}
    if name not in found:
        raise AttachmentNotFound(run_id, name, sorted(found))
    return found[name]


def stored_here(db: Database, store_id: str | None) -> dict[str, str]:
    """The attachments this store added (or that record no store), as label -> content id
    (hex): fsck checks them whole, as it does this store's versions."""
    with db.read() as s:
        rows = s.execute(
            select(AttachmentRow.run_id, AttachmentRow.name, AttachmentRow.digest).where(
                (AttachmentRow.store_id == store_id) | AttachmentRow.store_id.is_(None)
            )
        )
        return {f"run {r.run_id[:8]} attachment {r.name}": r.digest for r in rows}


def all_digests(db: Database) -> set[str]:
    """Every attached content id (hex): gc keeps them."""
    with db.read() as s:
        return set(s.scalars(select(AttachmentRow.digest).distinct()))


def _of(row: AttachmentRow) -> Attachment:
    return Attachment(row.run_id, row.name, row.digest, row.size, row.created_at)
