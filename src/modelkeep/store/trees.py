"""Trees (folders) and blob manifests: their one canonical binary serialisation.

A tree's id is the BLAKE3 of its serialisation, so folders form a Merkle tree. Names are
bytes, because file names on disk need not be UTF-8. Parsing refuses any entry that could
escape a restore destination, whatever wrote it, and every length is checked against
the maxima in `limits` before anything is allocated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from modelkeep.errors import TooLarge
from modelkeep.store.chunking import digest
from modelkeep.store.limits import (
    MAX_CHUNK,
    MAX_MANIFEST_CHUNKS,
    MAX_NAME,
    MAX_TREE_BYTES,
    MAX_TREE_ENTRIES,
    manifest_bytes,
)

TREE_MAGIC = b"MKTREE01"
BLOB_MAGIC = b"MKBLOB01"
_ENTRY = struct.Struct("<BIQ32sH")  # kind, mode, size, id, name length
_CHUNK = struct.Struct("<32sI")
_HEAD = len(TREE_MAGIC) + 4
FILE_MODES = (0o644, 0o755)  # the only modes a file is stored and restored with


class Kind(IntEnum):
    FILE = 0
    DIR = 1
    LINK = 2


@dataclass(frozen=True, slots=True)
class TreeEntry:
    name: bytes
    kind: Kind
    mode: int  # 0o644 or 0o755 for files; 0 for folders and links
    size: int  # bytes of the file, the link target, or everything under a folder
    id: bytes  # blob id, tree id, or the id of the link target's bytes


@dataclass(frozen=True, slots=True)
class Tree:
    entries: tuple[TreeEntry, ...]

    def encode(self) -> bytes:
        if len(self.entries) > MAX_TREE_ENTRIES:
            raise TooLarge("folder", f"{len(self.entries):,} entries", f"{MAX_TREE_ENTRIES:,}")
        parts = [TREE_MAGIC, struct.pack("<I", len(self.entries))]
        for e in sorted(self.entries, key=lambda e: e.name):
            if len(e.name) > MAX_NAME:
                raise TooLarge("file name", f"{len(e.name):,} bytes", f"{MAX_NAME:,}")
            parts.append(_ENTRY.pack(e.kind, e.mode, e.size, e.id, len(e.name)))
            parts.append(e.name)
        data = b"".join(parts)
        if len(data) > MAX_TREE_BYTES:
            raise TooLarge("folder listing", f"{len(data):,} bytes", f"{MAX_TREE_BYTES:,}")
        return data

    @property
    def id(self) -> bytes:
        return digest(self.encode())

    def get(self, name: bytes) -> TreeEntry | None:
        for e in self.entries:
            if e.name == name:
                return e
        return None


class BadTree(ValueError):
    def __init__(self, name: bytes | None, reason: str) -> None:
        self.name = name
        super().__init__(reason)


def check_name(name: bytes) -> None:
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise BadTree(name, "unsafe entry name")


def _check_entry(name: bytes, kind: int, mode: int) -> None:
    if kind not in (0, 1, 2):
        raise BadTree(name, "unknown entry kind")
    if kind == Kind.FILE and mode not in FILE_MODES:
        raise BadTree(name, f"file mode {mode:#o} is neither 0o644 nor 0o755")
    if kind != Kind.FILE and mode != 0:
        raise BadTree(name, f"mode {mode:#o} on a folder or link")


def decode_tree(data: bytes) -> Tree:
    """Parse a tree, refusing it unless every length and field is one `add` could write."""
    if len(data) > MAX_TREE_BYTES:
        raise BadTree(None, f"over {MAX_TREE_BYTES:,} bytes")
    if len(data) < _HEAD or data[: len(TREE_MAGIC)] != TREE_MAGIC:
        raise BadTree(None, "not a tree")
    (count,) = struct.unpack_from("<I", data, len(TREE_MAGIC))
    if count > MAX_TREE_ENTRIES or _HEAD + count * _ENTRY.size > len(data):
        raise BadTree(None, f"claims {count:,} entries")
    pos = _HEAD
    entries: list[TreeEntry] = []
    previous: bytes | None = None
    for _ in range(count):
        if pos + _ENTRY.size > len(data):
            raise BadTree(None, "truncated")
        kind, mode, size, oid, name_len = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        if name_len > MAX_NAME or pos + name_len > len(data):
            raise BadTree(None, "truncated entry name")
        name = data[pos : pos + name_len]
        pos += name_len
        check_name(name)
        if previous is not None and name <= previous:
            raise BadTree(name, "entries not in canonical order")
        _check_entry(name, kind, mode)
        if kind == Kind.LINK and size > MAX_CHUNK:
            raise BadTree(name, "link target too long")
        previous = name
        entries.append(TreeEntry(name, Kind(kind), mode, size, oid))
    if pos != len(data):
        raise BadTree(None, "trailing bytes")
    return Tree(tuple(entries))


@dataclass(frozen=True, slots=True)
class Manifest:
    """The ordered chunks of a file of more than one chunk, keyed by the file's id.

    It ends with the BLAKE3 of its own body, because its key (the file's id) cannot be
    checked without reading the whole file.
    """

    size: int
    chunks: tuple[tuple[bytes, int], ...]  # (chunk id, length)

    def encode(self) -> bytes:
        if len(self.chunks) > MAX_MANIFEST_CHUNKS:
            raise TooLarge("file", f"{len(self.chunks):,} chunks", f"{MAX_MANIFEST_CHUNKS:,}")
        body = BLOB_MAGIC + struct.pack("<QI", self.size, len(self.chunks))
        body += b"".join(_CHUNK.pack(cid, n) for cid, n in self.chunks)
        return body + digest(body)


def decode_manifest(data: bytes) -> Manifest:
    """Parse a manifest: chunks of lengths the chunker can cut, adding up to the size it
    states. Its checksum proves only that it is intact, not that it belongs to its key:
    readers check the whole file's hash (and that it has two chunks at least: a file of
    one chunk has no manifest)."""
    if len(data) > manifest_bytes(MAX_MANIFEST_CHUNKS) or len(data) < manifest_bytes(1):
        raise ValueError("manifest length out of range")
    body, check = data[:-32], data[-32:]
    if body[: len(BLOB_MAGIC)] != BLOB_MAGIC or digest(body) != check:
        raise ValueError("manifest checksum mismatch")
    size, count = struct.unpack_from("<QI", body, len(BLOB_MAGIC))
    if len(data) != manifest_bytes(count):
        raise ValueError("manifest length mismatch")
    start = len(BLOB_MAGIC) + 12
    chunks = tuple(_CHUNK.iter_unpack(body[start:]))
    if any(not 0 < n <= MAX_CHUNK for _, n in chunks) or sum(n for _, n in chunks) != size:
        raise ValueError("manifest length mismatch")
    return Manifest(size, chunks)
