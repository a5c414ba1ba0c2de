"""Large files through the store: add's pipelined stages, get's run reads, the stat check.

Files here span several of add's blocks (8 MiB) and several of get's runs (4 MiB), so the
threaded paths are the ones exercised: the order of chunks, a failure in a later stage, a
damaged or short pack in the middle of a run, and a re-add that must notice a change.
"""

from __future__ import annotations

import errno
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkeep as mk
import modelkeep.store.add as store_add
from modelkeep.errors import CorruptObject
from modelkeep.store import chunking
from modelkeep.store.chunking import BLOCK, chunk_bytes, digest
from modelkeep.store.objects import RUN_BYTES
from modelkeep.store.packs import PackWriter
from tests.conftest import write

MiB = 1 << 20
HOUR_AGO = time.time() - 3600


def _data(n: int, seed: int) -> bytes:
    """Random stretches between compressible ones: runs of raw and of zstd chunks."""
    rng = random.Random(seed)
    parts, total = [], 0
    while total < n:
        size = rng.randrange(64 * 1024, 3 * MiB)
        parts.append(
            rng.randbytes(size) if rng.random() < 0.6 else bytes([rng.randrange(4)]) * size
        )
        total += size
    return b"".join(parts)[:n]


def _age(path: Path, when: float = HOUR_AGO) -> None:
    os.utime(path, (when, when))


def _blob(version: mk.Version) -> bytes:
    return bytes.fromhex(version.digest.removeprefix("b3:"))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "modelkeep" in p.name)


def _pack(repo: mk.Repo, name: str) -> Path:
    return repo.root / ".modelkeep" / "store" / "packs" / f"{name}.pack"


@pytest.fixture
def block_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = chunking.iter_blocks

    def counting(stream: Any, size_hint: int | None = None) -> Iterator[Any]:
        for block, spans, whole in real(stream, size_hint):
            seen.append(len(block))
            yield block, spans, whole

    monkeypatch.setattr(store_add, "iter_blocks", counting)
    return seen


def test_a_file_of_many_blocks_keeps_its_chunks_in_order(repo: mk.Repo, tmp_path: Path) -> None:
    data = _data(3 * BLOCK + 12345, 1)
    v = repo.add(write(tmp_path / "big.bin", data), "big").version
    assert _blob(v) == digest(data)
    chunks = repo.store.manifest(_blob(v), len(data)).chunks
    assert [cid for cid, _ in chunks] == [digest(c) for c in chunk_bytes(data)]
    out = repo.get("big", tmp_path / "out.bin")
    assert out.read_bytes() == data
    assert len(data) > 4 * RUN_BYTES


def test_a_failing_write_stage_leaves_no_pack_and_no_version(
    repo: mk.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = PackWriter.append
    calls = 0

    def full_disk(self: PackWriter, items: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, items)

    monkeypatch.setattr(PackWriter, "append", full_disk)
    path = write(tmp_path / "big.bin", _data(3 * BLOCK, 2))
    with pytest.raises(OSError) as info:
        repo.add(path, "big")
    assert info.value.errno == errno.ENOSPC
    store = repo.root / ".modelkeep" / "store"
    assert list((store / "tmp").iterdir()) == []
    assert list((store / "packs").iterdir()) == []
    assert repo.artifacts() == []
    monkeypatch.setattr(PackWriter, "append", real)
    assert repo.get(repo.add(path, "big").version.ref, tmp_path / "o").read_bytes() == (
        path.read_bytes()
    )


def _middle_chunk(repo: mk.Repo, v: mk.Version) -> tuple[bytes, Any]:
    chunks = repo.store.manifest(_blob(v)).chunks
    cid = chunks[len(chunks) * 2 // 3][0]
    located = repo.store.index.locate(cid)
    assert located is not None
    return cid, located


def test_a_damaged_chunk_inside_a_run_is_named_and_nothing_is_left(
    tmp_path: Path,
) -> None:
    root = tmp_path / "proj"
    data = random.Random(3).randbytes(3 * RUN_BYTES + 777)
    with mk.init(root) as repo:
        v = repo.add(write(tmp_path / "m.bin", data), "m").version
        cid, located = _middle_chunk(repo, v)
        pack = _pack(repo, located.pack)
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(located.entry.offset + located.entry.length // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    out = tmp_path / "out"
    out.mkdir()
    with mk.open(root) as repo:
        with pytest.raises(CorruptObject) as info:
            repo.get("m", out / "m.bin")
        assert info.value.object_id == cid.hex()
        assert "m:v1" in str(info.value)
    assert not (out / "m.bin").exists()
    assert _leftovers(out) == []


def test_a_pack_cut_short_inside_a_run_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    data = random.Random(4).randbytes(3 * RUN_BYTES)
    with mk.init(root) as repo:
        v = repo.add(write(tmp_path / "m.bin", data), "m").version
        _cid, located = _middle_chunk(repo, v)
        pack = _pack(repo, located.pack)
    os.chmod(pack, 0o644)
    os.truncate(pack, located.entry.offset + 10)
    out = tmp_path / "out"
    out.mkdir()
    with mk.open(root) as repo:
        with pytest.raises(CorruptObject) as info:
            repo.get("m", out / "m.bin")
        assert "truncated" in str(info.value)
        assert "m:v1" in str(info.value)
    assert not (out / "m.bin").exists()
    assert _leftovers(out) == []


def test_a_file_replaced_with_same_size_and_mtime_is_reread(
    repo: mk.Repo, tmp_path: Path, block_reads: list[int]
) -> None:
    """Another file renamed over the path (a new inode), its size and mtime made equal."""
    path = write(tmp_path / "m.bin", _data(2 * BLOCK, 5))
    _age(path)
    v1 = repo.add(path, "m").version
    mtime_ns = path.stat().st_mtime_ns
    new = bytearray(path.read_bytes())
    new[len(new) // 2] ^= 0xFF
    other = write(tmp_path / "other.bin", bytes(new))
    os.utime(other, ns=(mtime_ns, mtime_ns))
    os.rename(other, path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (len(new), mtime_ns)
    block_reads.clear()
    v2 = repo.add(path, "m").version
    assert sum(block_reads) == len(new)
    assert v2.digest != v1.digest
    assert repo.get("m:v2", tmp_path / "out.bin").read_bytes() == bytes(new)


def test_a_truncated_file_is_reread(repo: mk.Repo, tmp_path: Path, block_reads: list[int]) -> None:
    data = _data(2 * BLOCK, 6)
    path = write(tmp_path / "m.bin", data)
    _age(path)
    v1 = repo.add(path, "m").version
    mtime_ns = path.stat().st_mtime_ns
    os.truncate(path, len(data) - 4096)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    block_reads.clear()
    v2 = repo.add(path, "m").version
    assert sum(block_reads) == len(data) - 4096
    assert v2.digest != v1.digest
    assert v2.size == len(data) - 4096
    block_reads.clear()
    again = repo.add(path, "m")  # unchanged since: the stat check alone
    assert block_reads == []
    assert again.created is False and again.version.number == 2
