"""The pack codecs: byte-grouped zstd for float tensors beside raw and
zstd. Every codec round-trips any bytes; a damaged or crafted payload is refused with
CorruptObject and never decodes to a wrong length; an unknown codec byte is refused; packs
written before the new codecs still read; real float tensors get the grouping and shrink
more than under plain zstd."""

from __future__ import annotations

import random
import shutil
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

import modelkeep as mk
import modelkeep.store.add as store_add
from modelkeep.errors import CorruptObject, CorruptRemoteObject
from modelkeep.store import Kind, ObjectStore, Root, put
from modelkeep.store._bytegroup import group, ungroup
from modelkeep.store.chunking import chunk_bytes, digest
from modelkeep.store.codec import GROUPS, MIN_GROUPED, Compressor, decode, encode_as
from modelkeep.store.limits import MAX_CHUNK, stored_bound
from modelkeep.store.packs import (
    CODEC_BG2,
    CODEC_BG4,
    CODEC_RAW,
    CODEC_ZSTD,
    KIND_CHUNK,
    PackEntry,
    read_index,
)
from modelkeep.store.restore import restore

FAST = settings(max_examples=40, deadline=None)
STORE = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CODECS = [CODEC_RAW, CODEC_ZSTD, CODEC_BG2, CODEC_BG4]
OLD_PACK = Path(__file__).parent / "data" / "pack-codec-0-1"


def _entry(data: bytes, codec: int, payload: bytes | bytearray | memoryview) -> PackEntry:
    return PackEntry(digest(data), KIND_CHUNK, codec, 0, len(payload), len(data))


def _floats(values: list[float], fmt: str) -> bytes:
    """Values as little-endian fp32, fp16 or bf16 (fp32's upper half) bytes."""
    if fmt == "bf16":
        return b"".join(struct.pack("<f", v)[2:] for v in values)
    return struct.pack(f"<{len(values)}{'f' if fmt == 'f32' else 'e'}", *values)


def _weights(n: int, seed: int, dtype: str = "f32") -> bytes:
    """n values like trained weights (small, normal), as fp32, fp16 or bf16 bytes."""
    w = (np.random.default_rng(seed).standard_normal(n) * 0.05).astype(np.float32)
    if dtype == "f16":
        return w.astype(np.float16).tobytes()
    if dtype == "bf16":
        return (w.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return w.tobytes()


weights_like = st.lists(
    st.floats(-4.0, 4.0, allow_nan=False, width=32), min_size=1, max_size=3000
).map(lambda v: [x * 0.01 for x in v])
float_bytes = st.tuples(weights_like, st.sampled_from(["f32", "f16", "bf16"])).map(
    lambda t: _floats(*t)
)
any_bytes = st.one_of(
    st.binary(max_size=5000),
    float_bytes,
    st.integers(0, 70_000).map(lambda n: random.Random(n).randbytes(n)),
)


# -- round trips ----------------------------------------------------------------


@FAST
@given(any_bytes, st.sampled_from(CODECS))
def test_every_codec_round_trips(data: bytes, codec: int) -> None:
    payload = encode_as(codec, data)
    entry = _entry(data, codec, payload)
    assert decode(entry, bytes(payload), "here") == data


@FAST
@given(any_bytes, st.integers(1, 8), st.integers(0, 16))
def test_native_grouping_is_the_formats_definition(data: bytes, width: int, head: int) -> None:
    """Group k holds bytes k, k+w, k+2w, ... (the format codec.py documents) at any length
    and width; ungrouping puts them back at any offset of a larger buffer; and a payload
    grouped by slicing, as packs written before the native code were, still decodes."""
    parts = [data[k::width] for k in range(width)]
    assert bytes(group(data, width, head)[head:]) == b"".join(parts)
    out = bytearray(b"\xee" * (len(data) + 2 * head))
    ungroup(parts, out, head)
    assert out == b"\xee" * head + data + b"\xee" * head
    codec = {2: CODEC_BG2, 4: CODEC_BG4}.get(width)
    if codec is not None:
        sliced = b"".join([*(struct.pack("<I", len(p)) for p in parts), *parts])
        assert decode(_entry(data, codec, sliced), sliced, "here") == data


def test_native_grouping_refuses_what_would_reach_outside_a_buffer() -> None:
    three = [b"ac", b"b"]  # b"abc" grouped by 2
    shared = bytearray(b"acb!")
    refused: list[tuple[Callable[[], object], str]] = [
        (lambda: ungroup(three, bytearray(2), 0), "3 bytes do not fit at 0 of 2"),
        (lambda: ungroup(three, bytearray(5), 3), "3 bytes do not fit at 3 of 5"),
        (lambda: ungroup(three, bytearray(5), -1), "do not fit at -1"),
        (lambda: ungroup([b"a", b"bc"], bytearray(5), 0), "group 0 is 1 bytes, not 2"),
        (lambda: ungroup([], bytearray(5), 0), "width 0"),
        (lambda: ungroup([b"a"] * 9, bytearray(9), 0), "width 9"),
        (lambda: group(b"abcd", 0, 0), "width 0"),
        (lambda: group(b"abcd", 4, -1), "do not fit"),
        (lambda: ungroup([memoryview(shared)[:2], b"b"], shared, 1), "group 0 overlaps"),
    ]
    for call, message in refused:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(TypeError):
        ungroup(three, b"read-only", 0)  # a buffer it cannot write
    with pytest.raises(TypeError):
        ungroup([b"ac", 3], bytearray(3), 0)  # type: ignore[list-item]


@FAST
@given(st.lists(st.one_of(float_bytes, any_bytes), min_size=1, max_size=8))
def test_the_compressor_round_trips_a_mixed_stream(pieces: list[bytes]) -> None:
    """One Compressor over float, random and empty pieces in turn (its state carries on)."""
    compressor = Compressor()
    for data in pieces:
        codec, payload = compressor.encode(data)
        assert len(payload) <= len(data) or codec == CODEC_RAW
        assert decode(_entry(data, codec, payload), bytes(payload), "here") == data


@pytest.mark.parametrize(("dtype", "codec"), [("f32", CODEC_BG4), ("f16", CODEC_BG2)])
def test_float_chunks_are_grouped_and_smaller_than_zstd(dtype: str, codec: int) -> None:
    data = _weights(200_000, 1, dtype)
    compressor = Compressor()
    grouped = plain = 0
    for chunk in chunk_bytes(data):
        got, payload = compressor.encode(chunk)
        assert got == codec
        assert decode(_entry(chunk, got, payload), bytes(payload), "here") == chunk
        grouped += len(payload)
        plain += min(len(encode_as(CODEC_ZSTD, chunk)), len(chunk))
    assert grouped < plain * 0.95
    assert grouped < len(data) * 0.9


def test_bf16_is_grouped_by_two() -> None:
    data = _weights(200_000, 2, "bf16")
    codec, payload = Compressor().encode(data[:65536])
    assert codec == CODEC_BG2
    assert len(payload) < 65536 * 0.8


def test_text_and_random_bytes_keep_their_codecs() -> None:
    words = [b"alpha", b"beta", b"gamma", b"delta"]
    rng = random.Random(3)
    text = b" ".join(rng.choice(words) for _ in range(20_000))
    assert Compressor().encode(text[:65536])[0] == CODEC_ZSTD
    assert Compressor().encode(rng.randbytes(65536))[0] == CODEC_RAW
    assert Compressor().encode(_weights(1000, 3)[: MIN_GROUPED - 1])[0] == CODEC_RAW


# -- damaged and crafted payloads --------------------------------------------------


def _decoded_or_refused(entry: PackEntry, payload: bytes) -> bytes | None:
    """decode's answer: exactly raw_length bytes, or None after a CorruptObject."""
    try:
        raw = decode(entry, payload, "here")
    except CorruptObject as exc:
        assert entry.key.hex() in str(exc)
        assert "\n" not in str(exc)
        return None
    assert len(raw) == entry.raw_length
    return raw


@FAST
@given(any_bytes, st.sampled_from(CODECS[1:]), st.data())
def test_truncated_payloads_are_refused(data: bytes, codec: int, draw: st.DataObject) -> None:
    payload = bytes(encode_as(codec, data))
    cut = draw.draw(st.integers(0, max(len(payload) - 1, 0)))
    entry = _entry(data, codec, payload[:cut])
    if len(payload) == 0:
        return
    got = _decoded_or_refused(entry, payload[:cut])
    # A shorter payload cannot give back all of the object: refused, or (a raw group of
    # a frame-less tail) never the original bytes. An empty object has no bytes to lose:
    # a zstd frame cut inside its header may still say "empty", which is the truth.
    assert got is None or got != data or not data


@FAST
@given(any_bytes, st.sampled_from(CODECS), st.data())
def test_flipped_payloads_are_refused_or_caught_by_the_hash(
    data: bytes, codec: int, draw: st.DataObject
) -> None:
    payload = bytearray(encode_as(codec, data))
    if not payload:
        return
    at = draw.draw(st.integers(0, len(payload) - 1))
    payload[at] ^= 1 << draw.draw(st.integers(0, 7))
    entry = _entry(data, codec, payload)
    got = _decoded_or_refused(entry, bytes(payload))
    if got is not None and got != data:
        assert digest(got) != entry.key  # what ObjectStore.verify then refuses


@FAST
@given(
    st.sampled_from([CODEC_BG2, CODEC_BG4, CODEC_ZSTD]),
    st.binary(max_size=300),
    st.integers(0, 4096),
)
def test_crafted_payloads_never_decode_to_a_wrong_length(
    codec: int, payload: bytes, raw_length: int
) -> None:
    entry = PackEntry(b"\x01" * 32, KIND_CHUNK, codec, 0, len(payload), raw_length)
    _decoded_or_refused(entry, payload)


def test_a_group_claiming_more_than_its_share_is_refused() -> None:
    """A zstd group whose frame inflates past its group's length, or lengths that lie."""
    data = _weights(4096, 4)
    group = bytes(bytearray(data)[3::4])
    bomb = encode_as(CODEC_ZSTD, group + bytes(1000))
    header = struct.pack("<4I", 4096, 4096, 4096, len(bomb))
    fake = header + bytes(bytearray(data)[0::4] + bytearray(data)[1::4] + bytearray(data)[2::4])
    with pytest.raises(CorruptObject, match="inflates past"):
        decode(_entry(data, CODEC_BG4, fake + bomb), fake + bomb, "here")
    lying = struct.pack("<4I", 4096, 4096, 4096, 5000) + bytes(16384 - 4)
    with pytest.raises(CorruptObject, match="do not add up"):
        decode(_entry(data, CODEC_BG4, lying), lying, "here")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    opened = ObjectStore(tmp_path_factory.mktemp("codec") / "store")
    yield opened
    opened.close()


@STORE
@given(st.integers(0, 255), st.integers(0, MAX_CHUNK), st.integers(0, MAX_CHUNK + 4096))
def test_check_lengths_bounds_every_codec(
    store: ObjectStore, codec: int, raw: int, stored: int
) -> None:
    entry = PackEntry(b"\x02" * 32, KIND_CHUNK, codec, 0, stored, raw)
    limit = {CODEC_RAW: raw, CODEC_ZSTD: stored_bound(raw)}.get(codec)
    if codec in GROUPS:
        limit = raw + 4 * GROUPS[codec]
    if limit is not None and stored <= limit:
        store.check_lengths(entry)
        return
    with pytest.raises(CorruptObject, match="unknown codec" if limit is None else "stored as"):
        store.check_lengths(entry)
    if limit is None:
        with pytest.raises(CorruptObject, match="unknown codec"):
            decode(entry, bytes(stored), "here")


# -- packs on disk ----------------------------------------------------------------


def test_a_pack_from_before_the_new_codecs_still_reads(tmp_path: Path) -> None:
    """tests/data/pack-codec-0-1 was written by modelkeep before codecs 2 and 3: a folder
    of a zstd text file and a raw random one (regenerated here from the same seed)."""
    store = ObjectStore(tmp_path / "store")
    for f in OLD_PACK.iterdir():
        shutil.copy(f, store.packs_dir / f.name)
    store.reconcile()
    assert {e.codec for e in read_index(next(OLD_PACK.glob("*.idx")))} == {CODEC_RAW, CODEC_ZSTD}
    root = Root(
        Kind.DIR, bytes.fromhex("42a8a0137e529dad01a5b6083aaf04bf5ed0bca02e89c71a29e3a5517f1cfc36")
    )
    restore(store, root, tmp_path / "out", size=9466 + 300)
    rng = random.Random(14)
    words = [b"weights", b"bias", b"layer", b"norm", b"attention", b"query", b"key", b"value"]
    assert (tmp_path / "out" / "a.txt").read_bytes() == b" ".join(
        rng.choice(words) for _ in range(1500)
    )
    assert (tmp_path / "out" / "b.bin").read_bytes() == rng.randbytes(300)
    store.close()


def test_a_real_tensor_file_is_stored_grouped_and_reads_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    tensors = {
        "encoder.weight": (rng.standard_normal((256, 384)) * 0.04).astype(np.float32),
        "encoder.bias": (rng.standard_normal(384) * 0.01).astype(np.float32),
        "head.weight": (rng.standard_normal((384, 128)) * 0.06).astype(np.float32),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    data = path.read_bytes()
    store = ObjectStore(tmp_path / "store")
    with store.writing():
        added = put(store, path)
    manifest = store.manifest(added.root.id, len(data))
    codecs = []
    for cid, _ in manifest.chunks:
        located = store.index.locate(cid)
        assert located is not None
        codecs.append(located.entry.codec)
    assert codecs.count(CODEC_BG4) >= len(codecs) - 1  # the header's chunk may differ
    plain = sum(min(len(encode_as(CODEC_ZSTD, c)), len(c)) for c in chunk_bytes(data))
    assert added.stored_bytes < plain * 0.95
    assert added.stored_bytes < len(data) * 0.88
    restore(store, added.root, tmp_path / "out.safetensors", size=len(data))
    assert (tmp_path / "out.safetensors").read_bytes() == data
    store.close()


def test_grouped_objects_travel_through_a_remote_and_damage_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Push and pull carry codec 3 as stored (verified on both sides); a bit flipped in a
    grouped payload on the remote is refused, and nothing is written."""
    monkeypatch.setenv("MODELKEEP_DATABASE_URL", f"sqlite:///{tmp_path}/team.db")
    data = _weights(300_000, 9)
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    remote = tmp_path / "remote"
    with mk.init(tmp_path / "a") as a:
        a.add_remote("origin", str(remote), default=True)
        a.add(path, "w", track=False)
        a.push()
    with mk.init(tmp_path / "b") as b:
        b.add_remote("origin", str(remote), default=True)
        assert b.get("w:v1", tmp_path / "out-b").read_bytes() == data
    grouped = [
        (idx.with_suffix(".pack"), e)
        for idx in (remote / "packs").glob("*.idx")
        for e in read_index(idx)
        if e.codec == CODEC_BG4
    ]
    assert grouped
    pack, entry = grouped[0]
    body = bytearray(pack.read_bytes())
    body[entry.offset + entry.length - 1] ^= 0x40
    pack.chmod(0o644)
    pack.write_bytes(body)
    with mk.init(tmp_path / "c") as c:
        c.add_remote("origin", str(remote), default=True)
        with pytest.raises(CorruptRemoteObject, match="damaged on remote"):
            c.get("w:v1", tmp_path / "out-c")
    assert not (tmp_path / "out-c").exists()


# -- every width, odd lengths, bounded memory ---------------------------------------


@FAST
@given(
    st.sampled_from(["f32", "f16", "bf16"]),
    st.integers(MIN_GROUPED, 3 * MIN_GROUPED),
    st.integers(0, 3),
    st.integers(0, 2**32 - 1),
)
def test_float_chunks_of_any_length_and_phase_round_trip(
    dtype: str, n: int, phase: int, seed: int
) -> None:
    """A chunk cut anywhere in a value and ending anywhere in one (odd lengths, every
    width), through the compressor and through each grouping forced."""
    data = _weights(n // 2 + 4, seed % 1000, dtype)[phase : phase + n]
    compressor = Compressor()
    for piece in (data, data[1:], data[: len(data) - 3]):
        codec, payload = compressor.encode(piece)
        assert decode(_entry(piece, codec, payload), bytes(payload), "here") == piece
        for forced in (CODEC_BG2, CODEC_BG4):
            grouped = encode_as(forced, piece)
            assert decode(_entry(piece, forced, grouped), bytes(grouped), "here") == piece


def _zstd_header(claimed: int) -> bytes:
    """The start of a zstd frame that claims `claimed` bytes of content (8-byte field),
    followed by one last RLE block of 4 bytes."""
    return (
        struct.pack("<IB", 0xFD2FB528, 0xE0)
        + struct.pack("<Q", claimed)
        + (1 | 1 << 1 | 4 << 3).to_bytes(3, "little")
        + b"\x00"
    )


@FAST
@given(
    st.sampled_from([CODEC_BG2, CODEC_BG4]),
    st.integers(0, MAX_CHUNK),
    st.one_of(st.none(), st.lists(st.integers(0, 2**32 - 1), min_size=4, max_size=4)),
    st.integers(0, 2**62),
)
def test_crafted_grouped_headers_allocate_no_more_than_the_object(
    codec: int, raw_length: int, lengths: list[int] | None, claimed: int
) -> None:
    """Group lengths and zstd frames that claim anything: refused (or decoded to exactly
    raw_length), and decoding never allocates much beyond raw_length, which the store has
    already bounded by the object's kind (check_lengths) before it reads."""
    width = GROUPS[codec]
    frame = _zstd_header(claimed)
    lengths = lengths or [len(frame)] * width  # None: lengths that add up
    body = b"".join([struct.pack("<I", n) for n in lengths[:width]]) + frame * width
    entry = PackEntry(b"\x03" * 32, KIND_CHUNK, codec, 0, len(body), raw_length)
    tracemalloc.start()
    try:
        _decoded_or_refused(entry, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 3 * raw_length + (1 << 20)


def test_a_frame_claiming_more_than_its_group_is_refused_before_inflating() -> None:
    data = _weights(8192, 5)
    width = 4
    frame = _zstd_header(1 << 40)
    body = struct.pack("<4I", *([len(frame)] * width)) + frame * width
    tracemalloc.start()
    try:
        with pytest.raises(CorruptObject, match="inflates past"):
            decode(_entry(data, CODEC_BG4, body), body, "here")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_multi_block_tensor_file_is_compressed_on_two_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of several 8 MiB blocks: each block's new chunks are compressed half by the
    storer, half by the compressor thread; chunks come out in order, a chunk repeated
    within a block is stored once, and the file reads back byte for byte."""
    threads: set[str] = set()
    real = store_add._encode_all

    def spy(compressor: Compressor, pieces: list[tuple[bytes, memoryview]]) -> list[object]:
        threads.add(threading.current_thread().name.split("_")[0])
        return real(compressor, pieces)  # type: ignore[return-value]

    monkeypatch.setattr(store_add, "_encode_all", spy)
    tensor = _weights(3_000_000, 11)  # 12 MB
    repeated = _weights(200_000, 12)  # 800 kB, several chunks, written twice in a block
    data = tensor[:5_000_000] + repeated + repeated + tensor[5_000_000:] + b"tail" * 1001
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    store = ObjectStore(tmp_path / "store")
    with store.writing():
        added = put(store, path)
    assert {"modelkeep-store", "modelkeep-compress"} <= threads
    manifest = store.manifest(added.root.id, len(data))
    ids = [cid for cid, _ in manifest.chunks]
    entries = [e for idx in store.packs_dir.glob("*.idx") for e in read_index(idx)]
    stored_chunks = [e.key for e in entries if e.kind == KIND_CHUNK]
    assert sorted(stored_chunks) == sorted(set(ids))  # each distinct chunk once
    assert len(set(ids)) < len(ids)  # the repeated run did repeat chunks
    codecs = [e.codec for e in entries if e.kind == KIND_CHUNK]
    assert codecs.count(CODEC_BG4) >= len(codecs) - 3
    assert added.stored_bytes < len(data) * 0.88
    restore(store, added.root, tmp_path / "out.bin", size=len(data))
    assert (tmp_path / "out.bin").read_bytes() == data
    store.close()
