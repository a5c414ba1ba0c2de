"""Pack files: chunks and manifests appended to files of tens of MiB, each with an index.

A pack is `pack-<uuid>.pack` with its index `pack-<uuid>.idx` beside it. Both are written
under temporary names, fsynced and renamed, the index last: an index file on disk is the
promise that its pack is complete and durable. The index ends with the BLAKE3 of its body,
so a damaged index is detected rather than trusted.
"""

from __future__ import annotations

import contextlib
import os
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelkeep.store.chunking import digest

PACK_TARGET = 64 * 1024 * 1024
IDX_MAGIC = b"MKIDX001"
_RECORD = struct.Struct("<32sBBQII")  # key, kind, codec, offset, length, raw_length

KIND_CHUNK = 0
KIND_BLOB = 1  # manifest of a multi-chunk file, keyed by the file's content id
KIND_TREE = 2
CODEC_RAW = 0
CODEC_ZSTD = 1
CODEC_BG2 = 2  # byte-grouped by 2 (fp16, bf16), see codec.py
CODEC_BG4 = 3  # byte-grouped by 4 (fp32)


@dataclass(frozen=True, slots=True)
class PackEntry:
    key: bytes
    kind: int
    codec: int
    offset: int
    length: int
    raw_length: int


class CorruptIndex(Exception):
    """Raised by read_index; the store translates it into a ModelkeepError."""


def encode_index(entries: list[PackEntry]) -> bytes:
    body = IDX_MAGIC + struct.pack("<I", len(entries))
    body += b"".join(
        _RECORD.pack(e.key, e.kind, e.codec, e.offset, e.length, e.raw_length)
        for e in sorted(entries, key=lambda e: e.key)
    )
    return body + digest(body)


def decode_index(data: bytes) -> list[PackEntry]:
    body, check = data[:-32], data[-32:]
    if len(data) < len(IDX_MAGIC) + 4 + 32 or digest(body) != check:
        raise CorruptIndex("checksum mismatch")
    if body[: len(IDX_MAGIC)] != IDX_MAGIC:
        raise CorruptIndex("not a modelkeep pack index")
    (count,) = struct.unpack_from("<I", body, len(IDX_MAGIC))
    start = len(IDX_MAGIC) + 4
    if len(body) != start + count * _RECORD.size:
        raise CorruptIndex("wrong length")
    return [PackEntry(*fields) for fields in _RECORD.iter_unpack(body[start:])]


def read_index(path: Path) -> list[PackEntry]:
    return decode_index(path.read_bytes())


def write_all(fd: int, buffers: Sequence[bytes | memoryview]) -> None:
    """Write every buffer, in order, with writev calls of at most 512 buffers each."""
    views = [memoryview(b) for b in buffers]
    while views:
        written = os.writev(fd, views[:512])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:  # a short write stopped inside this buffer
            views[0] = views[0][written:]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PackWriter:
    """Appends entries to a pack in a temporary file; `seal` makes it durable and visible."""

    def __init__(self, packs_dir: Path, tmp_dir: Path) -> None:
        self.name = f"pack-{uuid.uuid4().hex}"
        self._packs_dir = packs_dir
        self._tmp_dir = tmp_dir
        self._tmp_pack = tmp_dir / f"{self.name}.pack"
        self._fd = os.open(self._tmp_pack, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with contextlib.suppress(OSError):
            # Allocating the extent up front makes appends much cheaper on ext4 and XFS.
            os.posix_fallocate(self._fd, 0, PACK_TARGET)
        self.size = 0
        self.entries: list[PackEntry] = []

    def append(self, items: list[tuple[bytes, int, int, bytes | memoryview, int]]) -> None:
        """Append (key, kind, codec, data, raw_length) items, in few system calls."""
        write_all(self._fd, [data for _, _, _, data, _ in items])
        for key, kind, codec, data, raw_length in items:
            self.entries.append(PackEntry(key, kind, codec, self.size, len(data), raw_length))
            self.size += len(data)

    def seal(self, durable: bool = True) -> Path:
        """fsync the pack, write and fsync its index, rename both: after this, durable.

        durable=False skips the fsyncs, for a pack that is only a staging copy (one being
        uploaded to a remote, where the remote's own publish makes it durable)."""
        os.ftruncate(self._fd, self.size)
        if durable:
            os.fsync(self._fd)
        os.close(self._fd)
        tmp_idx = self._tmp_dir / f"{self.name}.idx"
        fd = os.open(tmp_idx, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, encode_index(self.entries))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(self._tmp_pack, self._packs_dir / f"{self.name}.pack")
        os.rename(tmp_idx, self._packs_dir / f"{self.name}.idx")
        if durable:
            fsync_dir(self._packs_dir)
        return self._packs_dir / f"{self.name}.idx"

    def abort(self) -> None:
        os.close(self._fd)
        self._tmp_pack.unlink(missing_ok=True)
