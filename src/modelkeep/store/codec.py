"""How an object's bytes are stored in a pack: raw, zstd, or byte-grouped for float tensors.

Float weights barely shrink under plain zstd: each fp32 value mixes a sign/exponent byte
(a few distinct values) with three bytes of near-random mantissa, and zstd's one Huffman
table per block sees them all at once. Regrouping the bytes by their position within a
value (all byte 0s, then all byte 1s, ... as ZipNN and Xet's BG4 do) puts the exponents
side by side, where zstd shrinks them to about a third, while the mantissa groups are
stored as they are. A content-defined chunk starts anywhere in a value, so
the groups are taken by position within the chunk: the exponents still fall into one
group, just not always the last one.

Codec byte of a pack entry (stored in every pack index; readers refuse any other):

- 0 `CODEC_RAW`: the bytes as they are;
- 1 `CODEC_ZSTD`: one zstd frame;
- 2 `CODEC_BG2`: byte-grouped by 2 (fp16/bf16), 3 `CODEC_BG4`: by 4 (fp32). The payload is
  one little-endian u32 per group with that group's stored length, then the groups in
  order; group k holds bytes k, k+w, k+2w, ... of the object. A group stored at its raw
  length is raw; a shorter one is one zstd frame; a longer one is damage.

The choice is made per chunk from a small sample, so text still gets plain zstd, random
bytes are stored raw without being compressed in full, and only data that is float-like
pays for grouping. The regrouping itself is native code (`_bytegroup.c`): CPython's
extended slicing did it a byte at a time (about 1 ns a byte) with the GIL held, which
kept an add's and a restore's threads on one core; numpy's strided copy measured no
faster.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field

import zstandard

from modelkeep.errors import CorruptObject
from modelkeep.store._bytegroup import group, ungroup
from modelkeep.store.limits import stored_bound
from modelkeep.store.packs import CODEC_BG2, CODEC_BG4, CODEC_RAW, CODEC_ZSTD, PackEntry

GROUPS = {CODEC_BG2: 2, CODEC_BG4: 4}

SAMPLE = 4096  # bytes of a chunk compressed to choose its codec
MIN_GROUPED = SAMPLE  # smaller objects are never grouped: the sample would be all of it
_MAX_SKIP = 64  # chunks stored raw, at most, before incompressible data is sampled again
_GAIN = 0.9  # a codec (or a group) must save 10% on the sample to be used
_KEEP = 0.95  # and 5% on the whole chunk (or group) to be kept
RECHECK = 16  # chunks that keep a chosen codec before it is chosen afresh
PROBE = 512  # bytes of a group compressed to see whether the whole group is worth it
_HEADER = struct.Struct("<I")


def _group_lengths(n: int, width: int) -> list[int]:
    """Raw length of each group of an n-byte object grouped by width."""
    return [(n - k + width - 1) // width for k in range(width)]


def _split(
    data: bytes | memoryview, width: int, head: int = 0
) -> tuple[bytearray, list[memoryview]]:
    """data grouped by width into a new buffer after head free bytes: (buffer, its groups)."""
    buffer = group(data, width, head)
    view = memoryview(buffer)
    groups, at = [], head
    for length in _group_lengths(len(buffer) - head, width):  # bytes, whatever data's items
        groups.append(view[at : at + length])
        at += length
    return buffer, groups


def stored_limit(codec: int, raw_length: int) -> int | None:
    """The most bytes an object of raw_length may take stored with codec; None: unknown."""
    if codec == CODEC_RAW:
        return raw_length
    if codec == CODEC_ZSTD:
        return stored_bound(raw_length)
    width = GROUPS.get(codec)
    if width is None:
        return None
    return raw_length + width * _HEADER.size  # each group at most raw, plus its length


# -- encoding -------------------------------------------------------------------


def _group_params() -> zstandard.ZstdCompressionParameters:
    """zstd for an exponent group: a few byte values, short repeats, so it is mostly
    Huffman coding. A long minimum match and the smallest hash table make it faster than
    level 1 and, measured on real fp32, bf16 and fp16 weights, a little smaller too."""
    return zstandard.ZstdCompressionParameters(
        strategy=zstandard.STRATEGY_FAST,
        min_match=7,
        hash_log=6,
        chain_log=6,
        search_log=1,
        window_log=17,
        write_content_size=True,
    )


@dataclass(slots=True)
class Compressor:
    """Choose and apply a codec per object. Not thread-safe: one per writing thread.

    The choice: a chunk's first SAMPLE bytes are compressed plainly and grouped by 2 and
    by 4, and the smallest that saves at least 10% wins. The next RECHECK chunks keep that
    codec without the full comparison; a chunk it does not shrink sends the next one back
    to it. In a grouping, only the groups that shrink are compressed: those of the last
    chunk, shifted by its length (a chunk starts anywhere in a value, so the exponents
    move from group to group), or, without that guess, those whose first PROBE bytes
    shrink. When
    nothing saves, the data is taken as incompressible and the next chunks are stored raw
    without sampling, for an exponentially growing number of them: random bytes cost
    almost nothing.
    """

    cctx: zstandard.ZstdCompressor = field(default_factory=lambda: zstandard.ZstdCompressor(3))
    sampler: zstandard.ZstdCompressor = field(default_factory=lambda: zstandard.ZstdCompressor(1))
    grouper: zstandard.ZstdCompressor = field(
        default_factory=lambda: zstandard.ZstdCompressor(compression_params=_group_params())
    )
    skip: int = 0
    backoff: int = 1
    codec: int = CODEC_RAW  # the codec chosen by the last full choice
    recheck: int = 0  # chunks left before the next full choice
    groups: list[bool] = field(default_factory=list)  # groups to compress in the next chunk

    def encode(self, data: bytes | memoryview) -> tuple[int, bytes | memoryview]:
        n = len(data)
        if n < 64:
            return CODEC_RAW, data
        if self.skip > 0:
            self.skip -= 1
            return CODEC_RAW, data
        fresh = n < MIN_GROUPED or self.recheck == 0 or self.codec == CODEC_RAW
        if fresh:
            codec = self._choose(data)
        else:
            self.recheck -= 1
            codec = self.codec
        if codec == CODEC_RAW:
            return CODEC_RAW, data
        payload: bytes | memoryview | None
        if codec == CODEC_ZSTD:
            payload = self._zstd(data, sampled=fresh)
        else:
            payload = self._grouped(data, GROUPS[codec])
        if payload is None:
            self.recheck, self.groups = 0, []  # it did not pay: choose afresh next time
            return CODEC_RAW, data
        return codec, payload

    def _choose(self, data: bytes | memoryview) -> int:
        """The codec that shrinks the sample most, if any saves at least 10%."""
        n = len(data)
        sample = data[: min(SAMPLE, n)]
        best = (len(self.sampler.compress(sample)), CODEC_ZSTD)
        if n >= MIN_GROUPED:
            for codec in (CODEC_BG2, CODEC_BG4):  # by 2 first: a tie keeps fewer frames
                total = sum(
                    min(len(self.grouper.compress(g)), len(g))
                    for g in _split(sample, GROUPS[codec])[1]
                )
                if total < best[0]:
                    best = (total, codec)
        if best[0] >= len(sample) * _GAIN:
            self.skip = self.backoff
            self.backoff = min(self.backoff * 2, _MAX_SKIP)
            return CODEC_RAW
        self.backoff = 1
        if n >= MIN_GROUPED:
            self.codec, self.recheck, self.groups = best[1], RECHECK, []
        return best[1]

    def _zstd(self, data: bytes | memoryview, sampled: bool) -> bytes | None:
        if not sampled:  # the codec is the last choice's: is it still worth trying?
            sample = data[:SAMPLE]
            if len(self.sampler.compress(sample)) >= len(sample) * _GAIN:
                return None
        packed: bytes = self.cctx.compress(data)
        return packed if len(packed) < len(data) * _KEEP else None

    def _grouped(self, data: bytes | memoryview, width: int) -> memoryview | None:
        """Group the bytes and compress the groups that shrink.

        Which groups those are is predicted from the last chunk (its length moves the
        exponents from group to group); without a prediction, or when one fails, a group
        is compressed if its first PROBE bytes shrink by 10%."""
        head = width * _HEADER.size
        buffer, grouped = _split(data, width, head)
        groups: list[bytes | memoryview] = list(grouped)
        tried = [False] * width
        shrunk = [False] * width
        guess = self.groups if len(self.groups) == width else None
        for k in range(width):
            if guess[k] if guess is not None else self._probe(groups[k]):
                tried[k] = True
                shrunk[k] = self._shrink(groups, k)
        if guess is not None and shrunk != guess:  # a wrong guess: look at the rest
            for k in range(width):
                if not tried[k] and self._probe(groups[k]):
                    shrunk[k] = self._shrink(groups, k)
        shift = len(data) % width
        self.groups = shrunk[shift:] + shrunk[:shift]  # where they fall in the next chunk
        return _assemble(buffer, groups, len(data))

    def _probe(self, part: bytes | memoryview) -> bool:
        return len(self.grouper.compress(part[:PROBE])) < PROBE * _GAIN

    def _shrink(self, groups: list[bytes | memoryview], k: int) -> bool:
        """Compress group k in place if that saves 5%; say whether it did."""
        packed = self.grouper.compress(groups[k])
        if len(packed) < len(groups[k]) * _KEEP:
            groups[k] = packed
            return True
        return False


def _assemble(buffer: bytearray, groups: list[bytes | memoryview], n: int) -> memoryview | None:
    """The grouped payload of an n-byte object, in buffer (its groups at their raw places
    after the header, as `_split` left them), each compressed group moved over its raw
    one and those after it moved up; None if it does not save 5%."""
    width = len(groups)
    view = memoryview(buffer)
    at = width * _HEADER.size
    for k, part in enumerate(groups):
        _HEADER.pack_into(buffer, k * _HEADER.size, len(part))
        view[at : at + len(part)] = part  # a memoryview copy is a memmove: overlap is fine
        at += len(part)
    return view[:at] if at < n * _KEEP else None


def encode(data: bytes | memoryview) -> tuple[int, bytes | memoryview]:
    """(codec, payload) for one object, chosen as a fresh Compressor would."""
    return Compressor().encode(data)


def encode_as(codec: int, data: bytes | memoryview) -> bytes | memoryview:
    """data stored with the given codec whether or not that saves anything (a grouping
    compresses every group that shrinks): for tests and benchmarks that compare codecs."""
    if codec == CODEC_RAW:
        return data
    if codec == CODEC_ZSTD:
        packed: bytes = zstandard.ZstdCompressor(3).compress(data)
        return packed
    grouper = zstandard.ZstdCompressor(compression_params=_group_params())
    groups: list[bytes | memoryview] = []
    for part in _split(data, GROUPS[codec])[1]:
        packed = grouper.compress(part)
        groups.append(packed if len(packed) < len(part) else part)
    return b"".join([*(_HEADER.pack(len(g)) for g in groups), *groups])


# -- decoding -------------------------------------------------------------------

_local = threading.local()  # zstd contexts are not shared between threads


def _dctx() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def _unzstd(entry: PackEntry, frame: bytes | memoryview, raw_length: int, where: str) -> bytes:
    """One zstd frame, inflated to exactly raw_length bytes and never past it, whatever
    its frame header claims."""
    key = entry.key.hex()
    try:
        claimed = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise CorruptObject(key, f"{where}: {exc}") from exc
    if claimed > raw_length:  # -1 (not stated) is capped by max_output_size
        raise CorruptObject(key, f"{where}: inflates past its length")
    try:
        raw: bytes = _dctx().decompress(frame, max_output_size=max(raw_length, 1))
    except zstandard.ZstdError as exc:
        raise CorruptObject(key, f"{where}: {exc}") from exc
    if len(raw) != raw_length:
        raise CorruptObject(key, f"{where}: wrong length")
    return raw


def _ungroup(
    entry: PackEntry, data: bytes | memoryview, width: int, where: str, out: bytearray, at: int
) -> None:
    """Write the object's raw bytes into out[at : at + raw_length], group by group."""
    key = entry.key.hex()
    n = entry.raw_length
    head = width * _HEADER.size
    if len(data) < head:
        raise CorruptObject(key, f"{where}: grouped payload shorter than its header")
    stored = [_HEADER.unpack_from(data, k * _HEADER.size)[0] for k in range(width)]
    sizes = _group_lengths(n, width)
    if any(s > r for s, r in zip(stored, sizes, strict=True)) or head + sum(stored) != len(data):
        raise CorruptObject(key, f"{where}: grouped payload lengths do not add up")
    view = memoryview(data)
    offset = head
    parts: list[bytes | memoryview] = []
    for s, r in zip(stored, sizes, strict=True):
        part = view[offset : offset + s]
        offset += s
        parts.append(part if s == r else _unzstd(entry, part, r, where))
    ungroup(parts, out, at)


def decode_into(
    entry: PackEntry, data: bytes | memoryview, where: str, out: bytearray, at: int
) -> None:
    """Write the raw bytes of a stored object into out[at : at + raw_length], or raise
    CorruptObject: a run of raw or byte-grouped chunks is decoded straight into its
    reader's buffer, with no copy of each chunk in between.

    Nothing inflates past raw_length, which the caller has bounded by the object's kind
    (check_lengths) before reading; where names the place read, for the message."""
    n = entry.raw_length
    if at + n > len(out):
        raise ValueError(f"{n:,} bytes do not fit at {at:,} of {len(out):,}")
    width = GROUPS.get(entry.codec)
    if width is not None:
        _ungroup(entry, data, width, where, out, at)
    elif entry.codec == CODEC_ZSTD:
        out[at : at + n] = _unzstd(entry, data, n, where)
    elif entry.codec == CODEC_RAW:
        if len(data) != n:
            raise CorruptObject(entry.key.hex(), f"{where}: wrong length")
        out[at : at + n] = data
    else:
        raise CorruptObject(entry.key.hex(), f"{where}: unknown codec {entry.codec}")


def decode(entry: PackEntry, data: bytes, where: str) -> bytes:
    """The raw bytes of a stored object, exactly raw_length of them, or CorruptObject
    (see `decode_into`)."""
    if entry.codec == CODEC_RAW:
        if len(data) != entry.raw_length:
            raise CorruptObject(entry.key.hex(), f"{where}: wrong length")
        return data
    if entry.codec == CODEC_ZSTD:
        return _unzstd(entry, data, entry.raw_length, where)
    out = bytearray(entry.raw_length)
    decode_into(entry, data, where, out, 0)
    return bytes(out)
