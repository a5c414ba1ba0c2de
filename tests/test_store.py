"""The content store through the Repo: dedup, compression, the stat cache, open(), gc."""

from __future__ import annotations

import dataclasses
import io
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkeep as mk
import modelkeep.store.add as store_add
from modelkeep.store import chunking, put
from modelkeep.store.chunking import digest
from modelkeep.store.packs import CODEC_RAW, CODEC_ZSTD, KIND_CHUNK
from tests.conftest import write

MiB = 1024 * 1024
HOUR_AGO = time.time() - 3600


def _random(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _age(path: Path, when: float = HOUR_AGO) -> None:
    """Backdate a file so the stat cache may remember it (it skips just-written files)."""
    os.utime(path, (when, when))


def _blob(version: mk.Version) -> bytes:
    return bytes.fromhex(version.digest.removeprefix("b3:"))


def _pack_files(repo: mk.Repo) -> set[str]:
    return {p.name for p in (repo.root / ".modelkeep" / "store" / "packs").iterdir()}


# -- dedup ----------------------------------------------------------------------


def test_dedup_across_artifacts(repo: mk.Repo, tmp_path: Path) -> None:
    data = _random(3 * MiB, 1)
    a = write(tmp_path / "a" / "model.bin", data)
    b = write(tmp_path / "b" / "copy.bin", data)
    first = repo.add(a, "one")
    second = repo.add(b, "two")
    assert first.new_bytes == len(data)
    assert second.new_bytes == 0
    assert second.reused_bytes == len(data)
    assert first.version.digest == second.version.digest
    usage = repo.du()
    assert usage.artifacts == 2
    assert usage.versions == 2
    assert usage.logical_bytes == 2 * len(data)
    assert usage.unique_bytes == len(data)
    assert usage.dedup_ratio == pytest.approx(2.0)


def test_dedup_across_files_in_a_folder(repo: mk.Repo, tmp_path: Path) -> None:
    data = _random(2 * MiB, 2)
    write(tmp_path / "d" / "x.bin", data)
    write(tmp_path / "d" / "sub" / "y.bin", data)
    write(tmp_path / "d" / "sub" / "deeper" / "z.bin", data)
    added = repo.add(tmp_path / "d", "folder")
    assert added.version.size == 3 * len(data)
    assert added.new_bytes == len(data)
    assert repo.du().unique_bytes == len(data)
    digests = {f.digest for f in repo.files("folder") if f.kind == "file"}
    assert digests == {"b3:" + digest(data).hex()}


def test_dedup_across_versions(repo: mk.Repo, tmp_path: Path) -> None:
    base = _random(4 * MiB, 3)
    path = write(tmp_path / "m.bin", base)
    repo.add(path, "m")
    path.write_bytes(base + _random(100_000, 4))  # appended: only the tail is new
    v2 = repo.add(path, "m")
    assert v2.version.number == 2
    assert v2.new_bytes < 100_000 + 300 * 1024
    usage = repo.du()
    assert usage.unique_bytes < len(base) + 100_000 + 300 * 1024


def _tensors(rng: np.random.Generator, total: int) -> list[bytes]:
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(64 * 1024, 1024 * 1024)) // 4 * 4)
    sizes[-1] -= sum(sizes) - total
    return [rng.standard_normal(n // 4).astype(np.float32).tobytes() for n in sizes]


def _rerandomise(rng: np.random.Generator, tensors: list[bytes], fraction: float) -> list[bytes]:
    out = list(tensors)
    count = max(1, round(len(tensors) * fraction))
    for i in rng.choice(len(tensors), size=count, replace=False):
        out[int(i)] = rng.standard_normal(len(tensors[int(i)]) // 4).astype(np.float32).tobytes()
    return out


def _checkpoint_ratio(repo: mk.Repo, tmp_path: Path, insert: bool) -> float:
    rng = np.random.default_rng(1234)
    tensors = _tensors(rng, 16 * MiB)
    v1 = b"".join(tensors)
    path = write(tmp_path / "ckpt.bin", v1)
    repo.add(path, "ckpt")
    successor = _rerandomise(rng, tensors, 0.10)
    if insert:  # a small new tensor near the start shifts every later byte
        successor.insert(1, rng.standard_normal(1000).astype(np.float32).tobytes())
    v2 = b"".join(successor)
    path.write_bytes(v2)
    added = repo.add(path, "ckpt")
    assert added.version.number == 2
    assert repo.get("ckpt:v1", tmp_path / "v1.bin").read_bytes() == v1
    assert repo.get("ckpt:v2", tmp_path / "v2.bin").read_bytes() == v2
    return repo.du().unique_bytes / len(v1)


def test_checkpoint_successor_dedups(repo: mk.Repo, tmp_path: Path) -> None:
    ratio = _checkpoint_ratio(repo, tmp_path, insert=False)
    assert 1.05 < ratio < 1.25


def test_checkpoint_successor_with_shift_dedups(repo: mk.Repo, tmp_path: Path) -> None:
    ratio = _checkpoint_ratio(repo, tmp_path, insert=True)
    assert 1.05 < ratio < 1.3


# -- compression ----------------------------------------------------------------


def _codecs(repo: mk.Repo, version: mk.Version) -> set[int]:
    chunks = repo.store.manifest(_blob(version)).chunks
    codecs = set()
    for cid, _ in chunks:
        located = repo.store.index.locate(cid)
        assert located is not None
        codecs.add(located.entry.codec)
    return codecs


def test_compressible_file_is_stored_compressed(repo: mk.Repo, tmp_path: Path) -> None:
    rng = random.Random(5)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    text = " ".join(rng.choice(words) for _ in range(700_000)).encode()
    path = write(tmp_path / "log.txt", text)
    added = repo.add(path, "text")
    assert added.stored_bytes < len(text) * 0.4
    usage = repo.du()
    assert usage.unique_bytes >= len(text) * 0.9  # compression is not dedup
    assert usage.stored_bytes < len(text) * 0.4
    assert usage.compression_ratio > 2.5
    assert _codecs(repo, added.version) == {CODEC_ZSTD}
    assert repo.get("text", tmp_path / "out.txt").read_bytes() == text


def test_random_file_is_stored_raw(repo: mk.Repo, tmp_path: Path) -> None:
    data = _random(4 * MiB, 6)
    added = repo.add(write(tmp_path / "noise.bin", data), "noise")
    assert len(data) <= added.stored_bytes < len(data) * 1.01
    usage = repo.du()
    assert len(data) <= usage.stored_bytes < len(data) * 1.01
    assert _codecs(repo, added.version) == {CODEC_RAW}


# -- the stat cache -------------------------------------------------------------


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture
def block_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the bytes that adds read from files, through the chunker's block reader."""
    seen: list[int] = []
    real = chunking.iter_blocks

    def counting(stream: Any, size_hint: int | None = None) -> Iterator[Any]:
        for block, spans, whole in real(stream, size_hint):
            seen.append(len(block))
            yield block, spans, whole

    monkeypatch.setattr(store_add, "iter_blocks", counting)  # the name add.py calls
    return seen


def test_unchanged_file_is_not_reread(
    repo: mk.Repo, tmp_path: Path, block_reads: list[int]
) -> None:
    data = _random(64 * MiB, 7)
    path = write(tmp_path / "big.bin", data)
    _age(path)
    first = repo.add(path, "big")
    assert sum(block_reads) == len(data)
    block_reads.clear()
    before = _rchar()
    second = repo.add(path, "big")
    read = _rchar() - before
    assert block_reads == [], "the unchanged file went through the chunker again"
    assert read < 4 * MiB, f"re-adding an unchanged 64 MiB file read {read} bytes"
    assert second.created is False
    assert second.version == first.version
    # Also under another name: the stat cache is keyed by path, not by artifact.
    third = repo.add(path, "big-copy")
    assert block_reads == []
    assert third.version.digest == first.version.digest


def test_modified_file_same_size_is_reread(
    repo: mk.Repo, tmp_path: Path, block_reads: list[int]
) -> None:
    path = write(tmp_path / "m.bin", _random(2 * MiB, 8))
    _age(path)
    v1 = repo.add(path, "m").version
    new = _random(2 * MiB, 9)
    path.write_bytes(new)
    _age(path, HOUR_AGO + 60)  # same size, another mtime
    block_reads.clear()
    v2 = repo.add(path, "m").version
    assert sum(block_reads) == len(new)
    assert v2.number == 2
    assert v2.digest != v1.digest
    assert repo.get("m:v2", tmp_path / "out.bin").read_bytes() == new


def test_modified_file_with_restored_mtime_is_reread(
    repo: mk.Repo, tmp_path: Path, block_reads: list[int]
) -> None:
    """Same size and the old mtime put back (as `touch -r` or a copy tool would): ctime differs."""
    path = write(tmp_path / "m.bin", _random(MiB, 10))
    _age(path)
    v1 = repo.add(path, "m").version
    mtime_ns = path.stat().st_mtime_ns
    time.sleep(0.02)
    new = _random(MiB, 11)
    path.write_bytes(new)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    assert path.stat().st_mtime_ns == mtime_ns
    block_reads.clear()
    v2 = repo.add(path, "m").version
    assert sum(block_reads) == len(new)
    assert v2.digest != v1.digest
    assert repo.get("m:v2", tmp_path / "out.bin").read_bytes() == new


# -- open() ---------------------------------------------------------------------


def test_open_read_seek_tell(repo: mk.Repo, tmp_path: Path) -> None:
    data = _random(3 * MiB + 12345, 12)
    v = repo.add(write(tmp_path / "w.bin", data), "w").version
    chunks = repo.store.manifest(_blob(v)).chunks
    assert len(chunks) > 10
    boundaries: list[int] = []
    offset = 0
    for _cid, length in chunks:
        offset += length
        boundaries.append(offset)

    with repo.open("w") as f:
        assert f.read() == data
        assert f.tell() == len(data)
        assert f.read() == b""
        assert f.read(10) == b""

    with repo.open("w:v1") as f:
        assert f.seekable() and f.readable()
        for b in boundaries[:-1]:
            for start, n in ((b - 1, 2), (b - 100, 1000), (b, 1), (b - 1, 1)):
                assert f.seek(start) == start
                assert f.read(n) == data[start : start + n]
                assert f.tell() == start + n
        # A read spanning several chunks returns all the bytes asked for.
        start = boundaries[1] - 7
        n = boundaries[5] - start + 9
        f.seek(start)
        assert f.read(n) == data[start : start + n]
        # Relative and end-relative seeks.
        f.seek(-50, io.SEEK_END)
        assert f.tell() == len(data) - 50
        assert f.read() == data[-50:]
        f.seek(1000)
        f.seek(500, io.SEEK_CUR)
        assert f.read(100) == data[1500:1600]
        f.seek(len(data) + 10)
        assert f.read(5) == b""
        # Sequential small reads put together give the file.
        f.seek(0)
        pieces = []
        while piece := f.read(65_521):
            pieces.append(piece)
        assert b"".join(pieces) == data


def test_open_random_access_matches(repo: mk.Repo, tmp_path: Path) -> None:
    data = _random(2 * MiB, 13)
    repo.add(write(tmp_path / "w.bin", data), "w")
    rng = random.Random(14)
    with repo.open("w") as f:
        for _ in range(300):
            start = rng.randrange(len(data))
            n = rng.randrange(1, 300_000)
            f.seek(start)
            assert f.read(n) == data[start : start + n]


def test_open_file_inside_folder(repo: mk.Repo, tmp_path: Path) -> None:
    data = _random(MiB, 15)
    write(tmp_path / "d" / "a" / "w.bin", data)
    write(tmp_path / "d" / "notes.txt", b"hello\nworld\n")
    repo.add(tmp_path / "d", "d")
    with repo.open("d", "a/w.bin") as f:
        assert f.read() == data
    with repo.open("d", "notes.txt") as f:
        assert f.readline() == b"hello\n"
        assert f.read() == b"world\n"


# -- gc ---------------------------------------------------------------------------


def _snapshot(repo: mk.Repo) -> tuple[set[str], mk.Usage]:
    return _pack_files(repo), repo.du()


def test_gc_frees_unreferenced_and_keeps_referenced(repo: mk.Repo, tmp_path: Path) -> None:
    kept = _random(2 * MiB, 16)
    repo.add(write(tmp_path / "kept.bin", kept), "kept")
    orphan = _random(3 * MiB, 17)
    orphan_path = write(tmp_path / "orphan" / "o.bin", orphan)
    with repo.store.writing():
        result = put(repo.store, orphan_path)
    assert repo.store.has(result.root.id)

    before = _snapshot(repo)
    dry = repo.gc(dry_run=True)
    assert dry.dry_run is True
    assert dry.objects_removed > 0
    assert len(orphan) <= dry.bytes_freed < len(orphan) * 1.01
    assert _snapshot(repo) == before, "a dry run changed the store"
    assert repo.store.has(result.root.id)

    real = repo.gc()
    assert real.dry_run is False
    assert (real.objects_removed, real.bytes_freed) == (dry.objects_removed, dry.bytes_freed)
    assert real.packs_removed == 1
    assert not repo.store.has(result.root.id)
    after = repo.du()
    assert after.unique_bytes == len(kept)
    assert after.stored_bytes == before[1].stored_bytes - real.bytes_freed
    assert repo.get("kept", tmp_path / "out.bin").read_bytes() == kept
    assert repo.fsck().ok
    # Nothing left to collect.
    again = repo.gc()
    assert (again.objects_removed, again.bytes_freed) == (0, 0)


def test_gc_repacks_a_pack_holding_live_and_dead_objects(repo: mk.Repo, tmp_path: Path) -> None:
    live = _random(MiB, 18)
    dead = _random(2 * MiB, 19)
    folder = tmp_path / "mixed"
    write(folder / "live.bin", live)
    write(folder / "dead.bin", dead)
    for p in folder.iterdir():
        _age(p)
    with repo.store.writing():
        put(repo.store, folder)  # one pack: both files and the tree, no version yet
    packs_before = _pack_files(repo)
    added = repo.add(folder / "live.bin", "live")  # everything it needs is already stored
    assert added.new_bytes == 0
    assert _pack_files(repo) == packs_before

    dry = repo.gc(dry_run=True)
    assert _pack_files(repo) == packs_before
    real = repo.gc()
    assert (real.objects_removed, real.bytes_freed) == (dry.objects_removed, dry.bytes_freed)
    assert len(dead) <= real.bytes_freed < len(dead) * 1.01
    assert real.packs_rewritten == 1
    assert _pack_files(repo).isdisjoint(packs_before)
    assert repo.du().unique_bytes == len(live)
    assert repo.get("live", tmp_path / "out.bin").read_bytes() == live
    assert repo.fsck().ok
    # The stat cache must not claim the collected file is still stored.
    again = repo.add(folder / "dead.bin", "dead")
    assert again.new_bytes == len(dead)
    assert repo.get("dead", tmp_path / "dead-out.bin").read_bytes() == dead
    assert repo.fsck().ok


def test_gc_on_a_clean_repo_removes_nothing(repo: mk.Repo, tmp_path: Path) -> None:
    repo.add(write(tmp_path / "a.bin", _random(MiB, 20)), "a")
    repo.add(write(tmp_path / "d" / "b.bin", _random(MiB, 21)), "d")
    before = _snapshot(repo)
    report = repo.gc()
    assert (report.objects_removed, report.bytes_freed, report.packs_removed) == (0, 0, 0)
    assert report.packs_rewritten == 0
    assert _snapshot(repo) == before


# -- immutability -------------------------------------------------------------------


def test_versions_are_immutable(repo: mk.Repo, tmp_path: Path) -> None:
    path = write(tmp_path / "m.bin", _random(MiB, 22))
    v1 = repo.add(path, "m").version
    original = path.read_bytes()
    with pytest.raises(dataclasses.FrozenInstanceError):
        v1.size = 0  # type: ignore[misc]
    # No API rewrites a version; `delete` only leaves a tombstone (tested in test_registry).
    mutators = {"remove", "update", "modify", "edit", "rename", "set_metadata", "tag"}
    assert not mutators & {m for m in dir(repo) if not m.startswith("_")}

    path.write_bytes(_random(MiB, 23))
    v2 = repo.add(path, "m").version
    assert v2.number == 2
    assert repo.show("m:v1") == v1
    assert repo.get("m:v1", tmp_path / "v1.bin").read_bytes() == original
    assert repo.get("m:v2", tmp_path / "v2.bin").read_bytes() == path.read_bytes()
    with repo.open("m:v1") as f:
        assert f.read() == original


def test_chunk_kind_accounting(repo: mk.Repo, tmp_path: Path) -> None:
    """du() counts chunk bytes only: manifests and trees are not content."""
    data = _random(2 * MiB, 24)
    write(tmp_path / "d" / "x.bin", data)
    repo.add(tmp_path / "d", "d")
    chunk_bytes = sum(
        loc.entry.raw_length for loc in repo.store.index.entries() if loc.entry.kind == KIND_CHUNK
    )
    assert chunk_bytes == len(data) == repo.du().unique_bytes
