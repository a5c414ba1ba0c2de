"""The largest object of each kind the store reads, checked before anything is allocated.

Every length that comes from a pack index, a manifest or a tree (ours, or a remote's)
is compared with these first, so a crafted object can neither make a read allocate more
than the largest honest object of its kind nor make decompression inflate past it. The
same maxima are enforced when objects are written, so nothing `add` stores is refused
when it is read back.
"""

from __future__ import annotations

from modelkeep.store.chunking import MAX_SIZE

MAX_CHUNK = MAX_SIZE
"""Raw bytes of one chunk (the chunker never cuts a longer one; link targets are shorter)."""

MAX_MANIFEST_CHUNKS = 1 << 22
"""Chunks in one file's manifest: 4,194,304, about 256 GiB at the 64 KiB average chunk
(and never less than 64 GiB, the 16 KiB minimum chunk)."""

MAX_TREE_ENTRIES = 1 << 20
"""Entries in one folder: 1,048,576."""

MAX_TREE_BYTES = 128 << 20
"""Bytes of one folder's serialised tree: 128 MiB."""

MAX_NAME = 4096
"""Bytes of one entry name in a tree (file systems allow 255; some allow more)."""

_MANIFEST_HEAD = 8 + 12  # magic, size and count
_MANIFEST_CHUNK = 36  # chunk id and length
_CHECKSUM = 32


def manifest_bytes(chunks: int) -> int:
    """The exact serialised length of a manifest of that many chunks."""
    return _MANIFEST_HEAD + _MANIFEST_CHUNK * chunks + _CHECKSUM


MAX_MANIFEST_BYTES = manifest_bytes(MAX_MANIFEST_CHUNKS)


def stored_bound(raw_length: int) -> int:
    """The most bytes an object of raw_length may take in a pack: objects are compressed
    only where that makes them smaller, and zstd's worst case adds little."""
    return raw_length + (raw_length >> 7) + 512
