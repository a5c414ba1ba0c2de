"""Resident memory stays bounded whatever the file size: adding and restoring stream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import blake3
import pytest

from modelkeep.store import objects
from modelkeep.store.objects import ObjectStore
from modelkeep.store.packs import CODEC_RAW, KIND_BLOB, KIND_CHUNK, PackEntry
from modelkeep.store.trees import Manifest
from tests.conftest import MODELKEEP

MiB = 1 << 20
GiB = 1 << 30
RSS_LIMIT = 200 * 1000 * 1000  # bytes
SPARSE = 4 * GiB
RANDOM = 512 * MiB


# Runs the modelkeep command line in this (fresh) process and, at exit, records the peak
# resident set of this process's own address space (VmHWM). ru_maxrss would not do: Linux
# folds the parent's peak into it at exec, so the test process's own size would leak in.
MEASURED = r"""
import atexit, sys

def _record_peak(path=sys.argv[1]):
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(str(kib * 1024))

atexit.register(_record_peak)
from modelkeep.cli.main import main
sys.argv = ["modelkeep", *sys.argv[2:]]
main()
"""


def _run_measured(*args: str, cwd: Path) -> tuple[dict[str, Any], int]:
    """Run `modelkeep *args --json` in a subprocess; return its JSON output and peak RSS."""
    env = {**os.environ, "MODELKEEP_USER": "tester"}
    env.pop("MODELKEEP_DATABASE_URL", None)
    peak = cwd.parent / "peak-rss"
    res = subprocess.run(
        [sys.executable, "-c", MEASURED, str(peak), *args, "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, f"modelkeep {' '.join(args)}: {res.stderr}"
    rss = int(peak.read_text())
    peak.unlink()
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc, rss


@pytest.fixture
def roomy_tmp(tmp_path: Path) -> Path:
    free = shutil.disk_usage(tmp_path).free
    if free < 10 * GiB:
        pytest.skip(f"needs 10 GiB free to restore 4 GiB of zeros; {free / GiB:.1f} GiB free")
    return tmp_path


@pytest.mark.slow
def test_add_and_get_of_huge_files_keep_memory_bounded(roomy_tmp: Path) -> None:
    root = roomy_tmp / "proj"
    root.mkdir()
    env = {**os.environ, "MODELKEEP_USER": "tester"}
    env.pop("MODELKEEP_DATABASE_URL", None)
    subprocess.run([MODELKEEP, "init", str(root)], env=env, check=True, capture_output=True)

    sparse = root / "sparse.bin"
    with sparse.open("wb") as f:
        f.truncate(SPARSE)  # a 4 GiB hole: nearly free on disk, reads as zeros
    added, rss = _run_measured("add", "sparse.bin", "--name", "zeros", cwd=root)
    assert added["version"]["size"] == SPARSE
    assert rss < RSS_LIMIT, f"adding a 4 GiB file peaked at {rss / MiB:.0f} MiB resident"
    zeros_digest = added["version"]["digest"]
    sparse.unlink()

    rand = root / "random.bin"
    hasher = blake3.blake3()
    with rand.open("wb") as f:
        for i in range(RANDOM // (64 * MiB)):
            block = blake3.blake3(f"random/{i}".encode()).digest(length=64 * MiB)
            hasher.update(block)
            f.write(block)
    added, rss = _run_measured("add", "random.bin", "--name", "random", cwd=root)
    assert added["version"]["digest"] == "b3:" + hasher.hexdigest()
    assert added["new_bytes"] == RANDOM
    assert rss < RSS_LIMIT, f"adding 512 MiB of random data peaked at {rss / MiB:.0f} MiB"
    rand.unlink()

    out = roomy_tmp / "restored.bin"
    try:
        got, rss = _run_measured("get", "zeros", "-o", str(out), cwd=root)
        assert Path(got["path"]).absolute() == out
        assert rss < RSS_LIMIT, f"restoring a 4 GiB file peaked at {rss / MiB:.0f} MiB resident"
        assert out.stat().st_size == SPARSE
        check = blake3.blake3()
        zero = bytes(16 * MiB)
        with out.open("rb") as f:
            while block := f.read(len(zero)):
                assert block == zero[: len(block)], "restored file is not all zeros"
                check.update(block)
        assert "b3:" + check.hexdigest() == zeros_digest
    finally:
        out.unlink(missing_ok=True)


# -- reading a file whole: memory that does not grow with its chunk count ----------------------


def _file_of_tiny_chunks(store: ObjectStore, n: int) -> bytes:
    """A stored file of n distinct 64-byte chunks (a manifest may list chunks that small),
    so that a file of tens of thousands of chunks takes a few MB and a second to read."""
    whole = blake3.blake3()
    items, pairs = [], []
    for i in range(n):
        chunk = blake3.blake3(b"%d/%d" % (n, i)).digest(length=64)
        cid = blake3.blake3(chunk).digest()
        whole.update(chunk)
        items.append((PackEntry(cid, KIND_CHUNK, CODEC_RAW, 0, 64, 64), chunk))
        pairs.append((cid, 64))
    manifest = Manifest(64 * n, tuple(pairs)).encode()
    blob = PackEntry(whole.digest(), KIND_BLOB, CODEC_RAW, 0, len(manifest), len(manifest))
    store.add_stored([*items, (blob, manifest)])
    return blob.key


def _peak_of_reading(store: ObjectStore, file_id: bytes, n: int) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        size = sum(len(piece) for piece in store.iter_blob(file_id))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == 64 * n
    return peak


def test_reading_a_file_whole_holds_no_python_objects_per_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 20 GiB file has ~330,000 chunks: a tuple, a dict entry or a place per chunk would
    cost hundreds of bytes each, tens of MB per file. iter_blob keeps its chunk list as the
    manifest's 36-byte records and looks chunks up a window at a time, so reading four times
    the chunks costs about their records (x2 at most) more, not hundreds of bytes each."""
    monkeypatch.setattr(objects, "RUN_BYTES", 64 * 1024)  # small run buffers: little noise
    store = ObjectStore(tmp_path / "store")
    try:
        small, large = 10_000, 40_000
        peaks = {
            n: _peak_of_reading(store, _file_of_tiny_chunks(store, n), n) for n in (small, large)
        }
    finally:
        store.close()
    per_chunk = (peaks[large] - peaks[small]) / (large - small)
    assert per_chunk < 100, f"{per_chunk:.0f} bytes per chunk held while reading ({peaks})"
