"""Trees (folders) and blob manifests: their one canonical binary serialisation.

A tree's id is the BLAKE3 of its serialisation, so folders form a Merkle tree. Names are
bytes, because file names on disk need not be UTF-8. Parsing refuses any entry that could
escape a restore destination, whatever wrote it, and every length is checked against
the maxima in `limits` before anything is allocated.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import overload

import blake3

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
_MANIFEST_HEAD = struct.Struct("<8sQI")  # magic, size, chunk count
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


class Chunks(Sequence[tuple[bytes, int]]):
    """A file's (chunk id, length) pairs, held as its manifest's 36-byte records.

    A file of 20 GiB has ~330,000 chunks: as tuples of bytes and int they would take
    ~150 bytes each in Python, as records 36. Pairs are unpacked when asked for."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        if len(data) % _CHUNK.size:
            raise ValueError("chunk records of a partial length")
        self._data = data

    @classmethod
    def of(cls, pairs: Iterable[tuple[bytes, int]]) -> Chunks:
        return cls(b"".join(_CHUNK.pack(cid, n) for cid, n in pairs))

    @property
    def records(self) -> bytes | bytearray | memoryview:
        """The records as a manifest stores them."""
        return self._data

    def __len__(self) -> int:
        return len(self._data) // _CHUNK.size

    @overload
    def __getitem__(self, i: int) -> tuple[bytes, int]: ...

    @overload
    def __getitem__(self, i: slice) -> Chunks: ...

    def __getitem__(self, i: int | slice) -> tuple[bytes, int] | Chunks:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return Chunks.of(self[j] for j in range(start, stop, step))
            return Chunks(self._data[start * _CHUNK.size : max(start, stop) * _CHUNK.size])
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("chunk index out of range")
        cid, n = _CHUNK.unpack_from(self._data, i * _CHUNK.size)
        return cid, n

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        return _CHUNK.iter_unpack(self._data)

    def ids(self) -> list[bytes]:
        return [cid for cid, _ in _CHUNK.iter_unpack(self._data)]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Chunks):
            return bytes(self._data) == bytes(other._data)
        if isinstance(other, Sequence):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(bytes(self._data))

    def __repr__(self) -> str:
        return f"Chunks({len(self)} chunks)"


def chunk_records(ids: Iterable[bytes], lengths: Iterable[int]) -> bytes:
    """(id, length) pairs as manifest records, for a writer that builds a Chunks."""
    return b"".join(map(_CHUNK.pack, ids, lengths))


class ManifestBuilder:
    """A file's manifest written as its chunks come, in one buffer: at the end it is the
    manifest (head filled in, checksum appended), with no copy of its records, so that
    adding a file holds its chunk list once, 36 bytes a chunk."""

    __slots__ = ("_buf", "count", "size")

    def __init__(self) -> None:
        self._buf = bytearray(_MANIFEST_HEAD.size)  # filled in by finish
        self.count = 0
        self.size = 0

    def add(self, ids: Sequence[bytes], lengths: Sequence[int]) -> None:
        self._buf += chunk_records(ids, lengths)
        self.count += len(ids)
        self.size += sum(lengths)

    def finish(self) -> memoryview:
        """The manifest, byte for byte what `Manifest(size, chunks).encode()` gives."""
        if self.count > MAX_MANIFEST_CHUNKS:
            raise TooLarge("file", f"{self.count:,} chunks", f"{MAX_MANIFEST_CHUNKS:,}")
        _MANIFEST_HEAD.pack_into(self._buf, 0, BLOB_MAGIC, self.size, self.count)
        self._buf += blake3.blake3(self._buf).digest()
        return memoryview(self._buf)


@dataclass(frozen=True, slots=True)
class Manifest:
    """The ordered chunks of a file of more than one chunk, keyed by the file's id.

    It ends with the BLAKE3 of its own body, because its key (the file's id) cannot be
    checked without reading the whole file.
    """

    size: int
    chunks: Sequence[tuple[bytes, int]]  # (chunk id, length); a Chunks when decoded

    def encode(self) -> bytes:
        if len(self.chunks) > MAX_MANIFEST_CHUNKS:
            raise TooLarge("file", f"{len(self.chunks):,} chunks", f"{MAX_MANIFEST_CHUNKS:,}")
        chunks = self.chunks if isinstance(self.chunks, Chunks) else Chunks.of(self.chunks)
        head = _MANIFEST_HEAD.pack(BLOB_MAGIC, self.size, len(chunks))
        check = blake3.blake3(head)
        check.update(chunks.records)
        return b"".join((head, chunks.records, check.digest()))


def decode_manifest(data: bytes) -> Manifest:
    """Parse a manifest: chunks of lengths the chunker can cut, adding up to the size it
    states. Its checksum proves only that it is intact, not that it belongs to its key:
    readers check the whole file's hash (and that it has two chunks at least: a file of
    one chunk has no manifest). Its chunks stay records in data (no copy, no tuples)."""
    if len(data) > manifest_bytes(MAX_MANIFEST_CHUNKS) or len(data) < manifest_bytes(1):
        raise ValueError("manifest length out of range")
    view = memoryview(data)
    body, check = view[:-32], view[-32:]
    if body[: len(BLOB_MAGIC)] != BLOB_MAGIC or digest(body) != check:
        raise ValueError("manifest checksum mismatch")
    size, count = struct.unpack_from("<QI", body, len(BLOB_MAGIC))
    if len(data) != manifest_bytes(count):
        raise ValueError("manifest length mismatch")
    chunks = Chunks(body[len(BLOB_MAGIC) + 12 :])
    total = 0
    for _, n in chunks:
        if not 0 < n <= MAX_CHUNK:
            raise ValueError("manifest length mismatch")
        total += n
    if total != size:
        raise ValueError("manifest length mismatch")
    return Manifest(size, chunks)
