"""What the metadata layer returns: frozen values, never live database rows."""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from modelkeep.errors import InvalidArgument, UnsafeRecord
from modelkeep.refs import content_id

if TYPE_CHECKING:
    from modelkeep.meta.models import ArtifactRow, VersionRow

ARTIFACT_TYPES = ("model", "dataset", "code", "other")
KINDS = ("file", "dir", "link")
FILE_MODES = (0o644, 0o755)  # the only modes a file is stored and restored with
_HEX_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    number: int
    type: str
    kind: str  # "file", "dir" or "link"
    digest: str  # "b3:" and 64 hex digits: the BLAKE3 of the file, or the folder's tree id
    size: int
    file_count: int
    mode: int
    source_name: str
    created_at: datetime
    user: str
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # the run that produced it
    registered: bool = False  # a candidate of the model registry
    stage: str = "none"  # none, staging, production or archived
    deleted_at: datetime | None = None  # a tombstone: the version is gone, its record stays
    host: str | None = None  # the machine that added it (unknown for versions before 0.2)
    store_id: str | None = None  # the store that added it (unknown before migration 0006)

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.number}"

    @property
    def short_digest(self) -> str:
        return self.digest[:11]

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "name": self.name,
            "number": self.number,
            "type": self.type,
            "kind": self.kind,
            "digest": self.digest,
            "size": self.size,
            "file_count": self.file_count,
            "source_name": self.source_name,
            "created_at": self.created_at.isoformat(),
            "user": self.user,
            "message": self.message,
            "metadata": self.metadata,
            "run_id": self.run_id,
            "registered": self.registered,
            "stage": self.stage,
            "deleted_at": self.deleted_at.isoformat() if self.deleted_at else None,
            "host": self.host,
            "store": self.store_id,
        }


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    type: str
    created_at: datetime
    latest: Version | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "created_at": self.created_at.isoformat(),
            "versions": self.latest.number if self.latest else 0,
            "latest": self.latest.to_json() if self.latest else None,
        }


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
    store_id: str | None = None  # the store that added it


def new_identity() -> tuple[str, datetime]:
    """A new database's id and creation time: the `database_identity` row (what migration
    0005 gives a database), which every store records."""
    return uuid.uuid4().hex, datetime.now(UTC)


def check_type(type_: str) -> str:
    if type_ not in ARTIFACT_TYPES:
        raise InvalidArgument(
            f"unknown artifact type {type_!r}; use one of {', '.join(ARTIFACT_TYPES)}"
        )
    return type_


@dataclass(frozen=True, slots=True)
class Added:
    version: Version
    created: bool  # False: the content equals a version of this name, which is returned
    same_as: Version | None = None  # that version, when it is an older one (not the latest)


def when(value: datetime | str, ref: str = "a row", field: str = "time") -> datetime:
    """A stored time as the ORM gives it, timezone-aware UTC: from a driver's datetime, or
    from the text SQLite keeps (read through the standard library, `Database.query`).
    Anything else is an edited or damaged row (UnsafeRecord naming ref and field)."""
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise UnsafeRecord(ref, field, text[:40], "not a time") from None
    if not isinstance(value, datetime):
        raise UnsafeRecord(ref, field, value, "not a time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def when_or_none(
    value: datetime | str | None, ref: str = "a row", field: str = "time"
) -> datetime | None:
    return None if value is None else when(value, ref, field)


def _metadata(ref: str, text: object) -> dict[str, Any]:
    if text == "{}":
        return {}
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        shown = text[:40] if isinstance(text, str) else text
        raise UnsafeRecord(ref, "metadata", shown, "not a JSON object")
    return value


def version_of(artifact: ArtifactRow | Any, row: VersionRow | Any) -> Version:
    """row: an ORM row, or a plain result row of the versions table's columns (artifact:
    anything with the artifact's name and type).

    The database is not trusted more than a user: a kind, digest, mode or source name of a
    type or shape no `add` writes is refused here (UnsafeRecord), before anything uses it.
    Whether the source name is safe as a path is checked before restoring (`check_paths`),
    so a version that cannot be restored can still be listed and deleted.
    """
    ref = f"{artifact.name}:v{row.number}"
    if row.kind not in KINDS:
        raise UnsafeRecord(ref, "kind", row.kind, f"not one of {', '.join(KINDS)}")
    if not isinstance(row.digest, str) or not _HEX_ID.fullmatch(row.digest):
        raise UnsafeRecord(ref, "digest", row.digest, "not 64 lowercase hex digits")
    if type(row.mode) is not int:
        raise UnsafeRecord(ref, "mode", row.mode, "not an integer")
    source_name = row.source_name
    if isinstance(source_name, memoryview):  # bytea through a driver that gives views
        source_name = bytes(source_name)
    if not isinstance(source_name, (bytes, str)):
        raise UnsafeRecord(ref, "source_name", row.source_name, "not a file name")
    metadata = _metadata(ref, row.metadata_json)
    return Version(
        name=artifact.name,
        number=row.number,
        type=artifact.type,
        kind=row.kind,
        digest=content_id(row.digest),
        size=row.size,
        file_count=row.file_count,
        mode=row.mode,
        source_name=os.fsdecode(source_name),
        created_at=when(row.created_at, ref, "created_at"),
        user=row.user,
        message=row.message,
        metadata=metadata,
        run_id=row.run_id,
        registered=bool(row.registered),
        stage=row.stage,
        deleted_at=when_or_none(row.deleted_at, ref, "deleted_at"),
        host=row.host,
        store_id=row.store_id if isinstance(row.store_id, str) else None,
    )


def check_paths(version: Version) -> None:
    """Refuse a version whose name or mode would lead a restore astray (UnsafeRecord).

    Called before anything is restored from a version: its source name becomes a path (the
    default destination, or a file's name inside a destination folder), so it must be one
    plain path segment, and its mode must be one `add` stores (0644 or 0755 for a file, 0
    for a folder or link), never setuid, setgid, sticky or world-writable.
    """
    name = version.source_name
    raw = os.fsencode(name)
    if raw in (b"", b".", b"..") or b"/" in raw or b"\0" in raw or len(raw) > 255:
        raise UnsafeRecord(
            version.ref, "source_name", name, "not a single file name, so not a safe path"
        )
    allowed, said = (FILE_MODES, "0o644 or 0o755") if version.kind == "file" else ((0,), "0")
    if version.mode not in allowed:
        shown = oct(version.mode) if isinstance(version.mode, int) else version.mode
        reason = f"a {version.kind} is stored with mode {said}"
        raise UnsafeRecord(version.ref, "mode", shown, reason)
