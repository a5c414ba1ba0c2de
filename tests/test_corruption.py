"""Damaged stores: wrong bytes are never returned, and errors name the versions affected."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import modelkeep as mk
from modelkeep.errors import CorruptObject, MissingObject
from modelkeep.store.index import Located
from tests.conftest import cli, write

MiB = 1024 * 1024


@dataclass
class Setup:
    repo: mk.Repo
    root: Path
    data: bytes
    blob: bytes  # the file's id
    chunk: bytes  # one chunk of it, in the middle
    located: Located
    tmp: Path

    @property
    def pack(self) -> Path:
        return self.root / ".modelkeep" / "store" / "packs" / f"{self.located.pack}.pack"

    def reopen(self) -> mk.Repo:
        """A fresh Repo, as a new process would open it (no cached pack descriptors)."""
        self.repo.close()
        self.repo = mk.open(self.root)
        return self.repo


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    root = tmp_path / "proj"
    repo = mk.init(root)
    data = random.Random(1).randbytes(2 * MiB)
    src = write(tmp_path / "model.bin", data)
    v = repo.add(src, "m").version
    repo.add(write(tmp_path / "elsewhere" / "copy.bin", data), "other")
    write(tmp_path / "unrelated.bin", random.Random(2).randbytes(MiB))
    repo.add(tmp_path / "unrelated.bin", "clean")
    blob = bytes.fromhex(v.digest.removeprefix("b3:"))
    chunks = repo.store.manifest(blob).chunks
    assert len(chunks) >= 5
    chunk = chunks[len(chunks) // 2][0]
    located = repo.store.index.locate(chunk)
    assert located is not None
    s = Setup(repo, root, data, blob, chunk, located, tmp_path)
    yield s
    s.repo.close()


def _flip(path: Path, offset: int) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _flip_chunk(s: Setup) -> None:
    entry = s.located.entry
    _flip(s.pack, entry.offset + entry.length // 2)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "modelkeep" in p.name)


def test_flipped_byte_get_raises_and_names_versions(setup: Setup) -> None:
    _flip_chunk(setup)
    repo = setup.reopen()
    out = setup.tmp / "restore"
    out.mkdir()
    dest = out / "model.bin"
    with pytest.raises(CorruptObject) as info:
        repo.get("m:v1", dest)
    exc = info.value
    assert exc.object_id == setup.chunk.hex()
    assert setup.chunk.hex() in str(exc)
    assert set(exc.versions) == {"m:v1", "other:v1"}
    assert "m:v1" in str(exc) and "other:v1" in str(exc)
    assert "clean:v1" not in str(exc)
    assert not dest.exists()
    assert _leftovers(out) == [], "a failed restore left temporary files behind"
    # The other artifact holding the same content fails the same way.
    with pytest.raises(CorruptObject):
        repo.get("other", out / "copy.bin")
    assert not (out / "copy.bin").exists()
    # Undamaged content still restores.
    assert (
        repo.get("clean", out / "clean.bin").read_bytes()
        == (setup.tmp / "unrelated.bin").read_bytes()
    )


def test_flipped_byte_get_with_existing_destination_and_force(setup: Setup) -> None:
    _flip_chunk(setup)
    repo = setup.reopen()
    dest = write(setup.tmp / "keep.bin", b"precious")
    with pytest.raises(CorruptObject):
        repo.get("m", dest, force=True)
    assert dest.read_bytes() == b"precious", "a failed forced restore clobbered the destination"


def test_flipped_byte_open_read_raises(setup: Setup) -> None:
    _flip_chunk(setup)
    repo = setup.reopen()
    with repo.open("m") as f, pytest.raises(CorruptObject) as info:
        f.read()
    assert info.value.object_id == setup.chunk.hex()
    assert set(info.value.versions) == {"m:v1", "other:v1"}
    assert "m:v1" in str(info.value) and "other:v1" in str(info.value)


def test_flipped_byte_open_reads_good_parts_but_never_bad_bytes(setup: Setup) -> None:
    _flip_chunk(setup)
    repo = setup.reopen()
    chunks = repo.store.manifest(setup.blob).chunks
    start = 0
    for cid, length in chunks:
        if cid == setup.chunk:
            break
        start += length
    with repo.open("m") as f:
        assert f.read(start) == setup.data[:start]  # chunks before the damage are fine
        with pytest.raises(CorruptObject):
            f.read(10)
        f.seek(start + 5)
        with pytest.raises(CorruptObject):
            f.read(1)


def test_fsck_reports_damaged_chunk_and_versions(setup: Setup) -> None:
    assert setup.repo.fsck().ok
    _flip_chunk(setup)
    repo = setup.reopen()
    report = repo.fsck()
    assert report.ok is False
    by_object = {p.object: p for p in report.problems}
    assert setup.chunk.hex() in by_object
    problem = by_object[setup.chunk.hex()]
    assert set(problem.roots) == {"m:v1", "other:v1"}
    assert all("clean:v1" not in p.roots for p in report.problems)
    assert report.objects > 0 and report.bytes > 0


def test_single_chunk_file_damaged(tmp_path: Path) -> None:
    with mk.init(tmp_path / "proj") as repo:
        data = random.Random(3).randbytes(5000)
        v = repo.add(write(tmp_path / "small.bin", data), "small").version
        oid = bytes.fromhex(v.digest.removeprefix("b3:"))
        located = repo.store.index.locate(oid)
        assert located is not None
        pack = tmp_path / "proj" / ".modelkeep" / "store" / "packs" / f"{located.pack}.pack"
        _flip(pack, located.entry.offset + 100)
    with mk.open(tmp_path / "proj") as repo:
        with pytest.raises(CorruptObject) as info:
            repo.get("small", tmp_path / "out.bin")
        assert info.value.object_id == oid.hex()
        assert "small:v1" in str(info.value)
        assert not (tmp_path / "out.bin").exists()
        report = repo.fsck()
        assert not report.ok
        assert [(p.object, p.roots) for p in report.problems] == [(oid.hex(), ("small:v1",))]


def test_fsck_reports_damaged_index_file(setup: Setup) -> None:
    idx = setup.pack.with_suffix(".idx")
    _flip(idx, idx.stat().st_size // 2)
    repo = setup.reopen()
    report = repo.fsck()
    assert not report.ok
    names = [p.object for p in report.problems]
    assert setup.located.pack in names
    problem = next(p for p in report.problems if p.object == setup.located.pack)
    assert "index" in problem.reason


def test_fsck_reports_truncated_pack(setup: Setup) -> None:
    size = setup.pack.stat().st_size
    os.chmod(setup.pack, 0o644)
    os.truncate(setup.pack, size // 2)
    repo = setup.reopen()
    report = repo.fsck()
    assert not report.ok
    names = {p.object for p in report.problems}
    assert setup.located.pack in names
    lost = [p for p in report.problems if not p.object.startswith("pack-")]
    assert lost, "objects past the end of the truncated pack are not reported"
    assert all(set(p.roots) <= {"m:v1", "other:v1"} for p in lost)
    assert any(set(p.roots) == {"m:v1", "other:v1"} for p in lost)
    with pytest.raises(CorruptObject) as info:
        repo.get("m", setup.tmp / "out.bin")
    assert "m:v1" in str(info.value)
    assert not (setup.tmp / "out.bin").exists()


def test_deleted_pack_raises_missing_object(setup: Setup) -> None:
    setup.pack.unlink()
    repo = setup.reopen()
    with pytest.raises(MissingObject) as info:
        repo.get("m", setup.tmp / "out.bin")
    assert set(info.value.versions) >= {"m:v1", "other:v1"}
    assert "clean:v1" not in info.value.versions
    assert "m:v1" in str(info.value) and "other:v1" in str(info.value)
    assert info.value.object_id in str(info.value)
    assert not (setup.tmp / "out.bin").exists()
    with pytest.raises(MissingObject):
        repo.open("m").read()
    report = repo.fsck()
    assert not report.ok
    damaged = [p for p in report.problems if not p.object.startswith("pack-")]
    assert damaged
    assert all("clean:v1" not in p.roots for p in report.problems)
    assert any(set(p.roots) == {"m:v1", "other:v1"} for p in damaged)


def test_deleted_pack_and_index_raises_missing_object(setup: Setup) -> None:
    setup.pack.unlink()
    setup.pack.with_suffix(".idx").unlink()
    repo = setup.reopen()
    with pytest.raises(MissingObject) as info:
        repo.get("m", setup.tmp / "out.bin")
    assert set(info.value.versions) >= {"m:v1", "other:v1"}
    report = repo.fsck()
    assert not report.ok
    assert any({"m:v1", "other:v1"} <= set(p.roots) for p in report.problems)


def test_cli_fsck_exit_codes(setup: Setup) -> None:
    setup.repo.close()
    clean = cli("fsck", cwd=setup.root)
    assert clean.returncode == 0, clean.stderr
    _flip_chunk(setup)
    damaged = cli("fsck", cwd=setup.root)
    assert damaged.returncode == 1
    assert setup.chunk.hex() in damaged.stdout + damaged.stderr
    as_json = cli("fsck", "--json", cwd=setup.root)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    problems = {p["object"]: p for p in report["problems"]}
    assert set(problems[setup.chunk.hex()]["versions"]) == {"m:v1", "other:v1"}
    get = cli("get", "m", "-o", str(setup.tmp / "cli-out.bin"), cwd=setup.root)
    assert get.returncode == 1
    assert get.stderr.startswith("modelkeep: error: ")
    assert "m:v1" in get.stderr
    assert not (setup.tmp / "cli-out.bin").exists()
    setup.repo = mk.open(setup.root)


@pytest.mark.parametrize("target", ["tree", "manifest"])
def test_damaged_tree_or_manifest(tmp_path: Path, target: str) -> None:
    root = tmp_path / "proj"
    with mk.init(root) as repo:
        big = random.Random(4).randbytes(MiB)
        write(tmp_path / "d" / "big.bin", big)
        write(tmp_path / "d" / "sub" / "a.txt", b"some text " * 100)
        v = repo.add(tmp_path / "d", "folder").version
        tree_id = bytes.fromhex(v.digest.removeprefix("b3:"))
        tree = repo.store.tree(tree_id)
        entry = tree.get(b"big.bin")
        assert entry is not None
        oid = tree_id if target == "tree" else entry.id
        located = repo.store.index.locate(oid)
        assert located is not None
        pack = root / ".modelkeep" / "store" / "packs" / f"{located.pack}.pack"
        _flip(pack, located.entry.offset + located.entry.length // 2)
    with mk.open(root) as repo:
        with pytest.raises(CorruptObject) as info:
            repo.get("folder", tmp_path / "out")
        assert info.value.object_id == oid.hex()
        assert "folder:v1" in str(info.value)
        assert not (tmp_path / "out").exists()
        report = repo.fsck()
        assert not report.ok
        problems = {p.object: p for p in report.problems}
        assert problems[oid.hex()].roots == ("folder:v1",)
