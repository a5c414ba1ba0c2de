"""What the library's operations return: plain records with a `to_json` for `--json`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelkeep.meta.records import Version


@dataclass(frozen=True, slots=True)
class AddResult:
    version: Version
    created: bool  # False when the content equals a version of this name (returned instead)
    new_bytes: int  # bytes of content this add stored for the first time
    reused_bytes: int  # bytes already in the store
    stored_bytes: int  # what the new content takes on disk, after compression
    same_as: Version | None = None  # that version, when it is an older one (not the latest)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version.to_json(),
            "created": self.created,
            "new_bytes": self.new_bytes,
            "reused_bytes": self.reused_bytes,
            "stored_bytes": self.stored_bytes,
            "same_as": self.same_as.ref if self.same_as else None,
        }


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str  # relative, '/'-separated; undecodable bytes kept as surrogate escapes
    kind: str  # "file", "dir" or "link"
    size: int
    mode: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "mode": oct(self.mode) if self.mode else None,
            "digest": self.digest,
        }


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    status: str  # "added", "removed" or "modified"
    old_size: int | None
    new_size: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "old_size": self.old_size,
            "new_size": self.new_size,
        }


@dataclass(frozen=True, slots=True)
class Diff:
    old: Version
    new: Version
    changes: tuple[Change, ...]

    def to_json(self) -> dict[str, Any]:
        counts = {
            s: sum(c.status == s for c in self.changes) for s in ("added", "removed", "modified")
        }
        return {
            "old": self.old.ref,
            "new": self.new.ref,
            "counts": counts,
            "bytes_added": sum(c.new_size or 0 for c in self.changes if c.status == "added"),
            "bytes_removed": sum(c.old_size or 0 for c in self.changes if c.status == "removed"),
            "changes": [c.to_json() for c in self.changes],
        }


@dataclass(frozen=True, slots=True)
class Usage:
    artifacts: int
    versions: int
    logical_bytes: int  # every version at its full size, as plain copies would take
    unique_bytes: int  # distinct chunk content, before compression
    stored_bytes: int  # pack files on disk
    chunks: int
    packs: int

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.unique_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "artifacts": self.artifacts,
            "versions": self.versions,
            "logical_bytes": self.logical_bytes,
            "unique_bytes": self.unique_bytes,
            "stored_bytes": self.stored_bytes,
            "chunks": self.chunks,
            "packs": self.packs,
            "dedup_ratio": round(self.dedup_ratio, 3),
            "compression_ratio": round(self.compression_ratio, 3),
        }
