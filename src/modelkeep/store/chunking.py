"""Content-defined chunking (FastCDC, native code) and the ids that name the pieces.

Chunk boundaries move with the content, so inserting bytes near the start of a file
changes only the chunks around the insertion. A file's identity is the BLAKE3 of its
whole content, so it never depends on these parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, BinaryIO

import blake3

# pyfastcdc's real average is avg_size + min_size: about 64 KiB here.
AVG_SIZE = 48 * 1024
MIN_SIZE = 16 * 1024
MAX_SIZE = 256 * 1024
BLOCK = 8 * 1024 * 1024
BUFFERS = 4  # blocks in flight: one being read, the others hashed and written
SMALL_READ = 64 * 1024


@functools.cache
def _cdc() -> Any:
    """The chunker, made on first use: reading metadata (trees, packs) needs `digest` and
    not the native chunker."""
    from pyfastcdc import FastCDC

    return FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE)


def digest(data: bytes | memoryview) -> bytes:
    return blake3.blake3(data).digest()


def iter_blocks(
    stream: BinaryIO, size_hint: int | None = None
) -> Iterator[tuple[memoryview, list[tuple[int, int]], bool]]:
    """Yield (block, chunk spans, whole_file) for a stream, in blocks of up to BLOCK bytes.

    BUFFERS buffers are used in turn, so a block stays valid until BUFFERS more have been
    asked for (the caller may hash and write earlier blocks while the next is read); the
    caller copies what it keeps longer. A buffer is allocated only when a block needs it.
    The last chunk of a block that is not the end of the stream is carried
    into the next block, which gives exactly the boundaries of chunking the stream in one
    go. Reading (not mmap) keeps resident memory bounded whatever the file size, and
    size_hint (the file's size) keeps a small file from costing a whole block.
    """
    capacity = BLOCK + MAX_SIZE
    if size_hint is not None:
        capacity = min(capacity, max(size_hint + 1, SMALL_READ))
    buffers = [memoryview(bytearray(capacity))]
    carry = memoryview(b"")  # the unfinished last chunk of the previous block
    first = True
    turn = 0
    while True:
        if turn == len(buffers):
            buffers.append(memoryview(bytearray(capacity)))
        buf = buffers[turn]
        turn = (turn + 1) % BUFFERS
        end = len(carry)
        buf[:end] = carry
        limit = min(capacity, end + BLOCK)
        while end < limit:
            n = stream.readinto(buf[end:limit])  # type: ignore[attr-defined]
            if not n:
                break
            end += n
        eof = end < limit
        block = buf[:end]
        spans = [(c.offset, c.length) for c in _cdc().cut_buf(block)] if end else []
        if eof:
            yield block, spans, first
            return
        last_offset = spans[-1][0]
        carry = block[last_offset:]
        yield block[:last_offset], spans[:-1], False
        first = False


def chunk_bytes(data: bytes) -> list[bytes]:
    return [bytes(c.data) for c in _cdc().cut_buf(data)] or [b""]
