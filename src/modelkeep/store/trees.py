"""Trees (folders) and blob manifests: their one canonical binary serialisation.

A tree's id is the BLAKE3 of its serialisation, so folders form a Merkle tree. Names are
bytes, because file names on disk need not be UTF-8. Parsing refuses any entry that could
escape a restore destination, whatever wrote it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from modelkeep.store.chunking import digest

TREE_MAGIC = b"MKTREE01"
BLOB_MAGIC = b"MKBLOB01"
_ENTRY = struct.Struct("<BIQ32sH")  # kind, mode, size, id, name length
_CHUNK = struct.Struct("<32sI")


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
        parts = [TREE_MAGIC, struct.pack("<I", len(self.entries))]
        for e in sorted(self.entries, key=lambda e: e.name):
            parts.append(_ENTRY.pack(e.kind, e.mode, e.size, e.id, len(e.name)))
            parts.append(e.name)
        return b"".join(parts)

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


def decode_tree(data: bytes) -> Tree:
    if data[: len(TREE_MAGIC)] != TREE_MAGIC:
        raise BadTree(None, "not a tree")
    (count,) = struct.unpack_from("<I", data, len(TREE_MAGIC))
    pos = len(TREE_MAGIC) + 4
    entries: list[TreeEntry] = []
    previous: bytes | None = None
    for _ in range(count):
        kind, mode, size, oid, name_len = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        name = data[pos : pos + name_len]
        pos += name_len
        check_name(name)
        if previous is not None and name <= previous:
            raise BadTree(name, "entries not in canonical order")
        if kind not in (0, 1, 2):
            raise BadTree(name, "unknown entry kind")
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
        body = BLOB_MAGIC + struct.pack("<QI", self.size, len(self.chunks))
        body += b"".join(_CHUNK.pack(cid, n) for cid, n in self.chunks)
        return body + digest(body)


def decode_manifest(data: bytes) -> Manifest:
    body, check = data[:-32], data[-32:]
    if digest(body) != check or body[: len(BLOB_MAGIC)] != BLOB_MAGIC:
        raise ValueError("manifest checksum mismatch")
    size, count = struct.unpack_from("<QI", body, len(BLOB_MAGIC))
    start = len(BLOB_MAGIC) + 12
    chunks = tuple(_CHUNK.iter_unpack(body[start:]))
    if len(chunks) != count or sum(n for _, n in chunks) != size:
        raise ValueError("manifest length mismatch")
    return Manifest(size, chunks)
