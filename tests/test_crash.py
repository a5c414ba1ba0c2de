"""Crash safety: SIGKILL `modelkeep add` and `modelkeep gc` at seeded random moments.

Whatever the moment of the kill, the store must pass fsck, every listed version must
restore byte-exact (no version points at missing data), version numbers stay 1..N, and
the next add of the same content succeeds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

import modelkeep as mk
from tests.conftest import MODELKEEP, cli

SEED = 0x5EED_C0DE
BIG = 64 << 20  # the large single file
KILLS_FILE = 7
KILLS_DIR = 4
KILLS_GC = 3


def _bytes(seed: str, size: int) -> bytes:
    """Deterministic incompressible bytes (BLAKE3 in XOF mode is fast)."""
    return blake3.blake3(seed.encode()).digest(length=size)


def _b3(data: bytes) -> str:
    return "b3:" + blake3.blake3(data).hexdigest()


def _env() -> dict[str, str]:
    env = {**os.environ, "MODELKEEP_USER": "tester"}
    env.pop("MODELKEEP_DATABASE_URL", None)
    return env


def _json(*args: str, cwd: Path) -> Any:
    res = cli(*args, "--json", cwd=cwd)
    assert res.returncode == 0, f"modelkeep {' '.join(args)} failed: {res.stderr}"
    return json.loads(res.stdout)


def _timed(*args: str, cwd: Path) -> float:
    start = time.monotonic()
    res = cli(*args, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return time.monotonic() - start


def _kill_after(args: list[str], cwd: Path, delay: float) -> int | None:
    """Run `modelkeep *args`, SIGKILL it after delay seconds; its exit code if it ended first."""
    proc = subprocess.Popen(
        [MODELKEEP, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def _kill_when(args: list[str], cwd: Path, ready: Callable[[], bool], limit: float) -> int | None:
    """Run `modelkeep *args` and SIGKILL it as soon as ready() holds (or after limit s)."""
    proc = subprocess.Popen(
        [MODELKEEP, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            break
        time.sleep(0.002)
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None


def _appears(folder: Path, pattern: str) -> Callable[[], bool]:
    """True once a file matching pattern that is not there now appears in folder."""
    known = set(folder.glob(pattern))
    return lambda: bool(set(folder.glob(pattern)) - known)


def _delays(rng: random.Random, n: int, longest: float) -> list[float]:
    return sorted(round(rng.uniform(0.0, longest), 3) for _ in range(n))


def _assert_fsck_ok(root: Path) -> None:
    res = cli("fsck", "--json", cwd=root)
    report = json.loads(res.stdout) if res.stdout else {}
    assert res.returncode == 0 and report.get("ok") is True, (
        f"fsck failed (exit {res.returncode}): {res.stdout} {res.stderr}"
    )


def _versions(root: Path, name: str) -> list[mk.Version]:
    with mk.open(root) as repo:
        rows = repo.versions(name)
    numbers = [v.number for v in rows]
    assert numbers == list(range(1, len(rows) + 1)), f"version numbers not contiguous: {numbers}"
    return rows


def _restore(root: Path, ref: str, dest: Path) -> None:
    with mk.open(root) as repo:
        repo.get(ref, dest)


def _restore_file(root: Path, ref: str, expected: bytes, scratch: Path) -> None:
    out = scratch / "restored.bin"
    _restore(root, ref, out)
    try:
        assert out.stat().st_size == len(expected), ref
        assert out.read_bytes() == expected, f"{ref} did not restore byte-exact"
    finally:
        out.unlink(missing_ok=True)


def _store(root: Path) -> Path:
    return root / ".modelkeep" / "store"


# -- a large single file ------------------------------------------------------


@pytest.mark.slow
def test_sigkill_add_of_large_file_at_random_points(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert cli("init", str(root), cwd=tmp_path).returncode == 0
    big = root / "big.bin"
    contents: dict[str, bytes] = {}  # digest -> content, everything ever offered to add

    def offer(seed: str) -> bytes:
        data = _bytes(seed, BIG)
        big.write_bytes(data)
        contents[_b3(data)] = data
        return data

    first = offer("file-0")
    duration = _timed("add", "big.bin", "--name", "m", cwd=root)
    _restore_file(root, "m:v1", first, scratch)
    verified = {1}

    rng = random.Random(SEED)
    tmp_dir, packs_dir = _store(root) / "tmp", _store(root) / "packs"
    # Seeded random moments over a whole add, plus two moments picked by what is on disk:
    # while a pack is being written to tmp/, and just after a pack was sealed.
    plans: list[float | str] = [*_delays(rng, KILLS_FILE, duration), "writing", "sealed"]
    for i, plan in enumerate(plans, start=1):
        before = len(_versions(root, "m"))
        data = offer(f"file-{i}")
        args = ["add", "big.bin", "--name", "m"]
        if isinstance(plan, float):
            code = _kill_after(args, root, plan)
        elif plan == "writing":
            code = _kill_when(args, root, _appears(tmp_dir, "pack-*"), limit=60)
            assert code is None, "the add ended before anything was written"
        else:
            code = _kill_when(args, root, _appears(packs_dir, "*.idx"), limit=60)
        assert code in (None, 0), f"add exited {code} before the kill ({plan})"

        _assert_fsck_ok(root)
        rows = _versions(root, "m")
        assert len(rows) in (before, before + 1), (plan, len(rows), before)
        if code == 0:
            assert len(rows) == before + 1
        for row in rows:
            assert row.digest in contents, f"{row.ref} has content nobody added"
        if len(rows) == before + 1:  # committed just before the kill: it is this content
            assert rows[-1].digest == _b3(data)

        # Every version is complete; the new ones are restored right away.
        for row in rows:
            if row.number not in verified:
                _restore_file(root, row.ref, contents[row.digest], scratch)
                verified.add(row.number)

        # Adding the same content again succeeds and restores exactly.
        again = _json("add", "big.bin", "--name", "m", cwd=root)
        assert again["version"]["digest"] == _b3(data)
        assert again["created"] is (len(rows) == before)
        assert again["version"]["number"] == before + 1
        if again["created"]:
            _restore_file(root, again["version"]["ref"], data, scratch)
            verified.add(before + 1)

    rows = _versions(root, "m")
    assert len(rows) == len(plans) + 1
    assert verified == {row.number for row in rows}
    _assert_fsck_ok(root)


# -- a folder of many small files --------------------------------------------


def _write_tree(folder: Path, seed: str) -> dict[str, bytes]:
    if folder.exists():
        shutil.rmtree(folder)
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for i in range(40):
        rel = f"sub{i % 5}/f{i:03d}.bin"
        files[rel] = _bytes(f"{seed}/{i}", rng.randint(1, 48 << 10))
    files["weights/large.bin"] = _bytes(f"{seed}/large", 12 << 20)
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _read_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _restore_dir(root: Path, ref: str, expected: dict[str, bytes], scratch: Path) -> None:
    out = scratch / "restored"
    _restore(root, ref, out)
    try:
        assert _read_tree(out) == expected, f"{ref} did not restore byte-exact"
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.slow
def test_sigkill_add_of_folder_at_random_points(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert cli("init", str(root), cwd=tmp_path).returncode == 0
    folder = root / "data"
    offered: list[dict[str, bytes]] = [_write_tree(folder, "dir-0")]
    duration = _timed("add", "data", "--name", "d", cwd=root)
    _restore_dir(root, "d:v1", offered[0], scratch)
    by_digest: dict[str, dict[str, bytes]] = {_versions(root, "d")[0].digest: offered[0]}

    rng = random.Random(SEED + 1)
    for i, delay in enumerate(_delays(rng, KILLS_DIR, duration), start=1):
        before = len(_versions(root, "d"))
        files = _write_tree(folder, f"dir-{i}")
        code = _kill_after(["add", "data", "--name", "d"], root, delay)
        assert code in (None, 0), f"add exited {code} before the kill (delay {delay})"

        _assert_fsck_ok(root)
        rows = _versions(root, "d")
        assert len(rows) in (before, before + 1), (delay, len(rows), before)
        for row in rows[:before]:
            assert row.digest in by_digest
        if len(rows) == before + 1:  # it committed before dying: it must be complete
            _restore_dir(root, rows[-1].ref, files, scratch)
            by_digest[rows[-1].digest] = files

        again = _json("add", "data", "--name", "d", cwd=root)
        assert again["version"]["number"] == before + 1
        assert again["created"] is (len(rows) == before)
        by_digest[again["version"]["digest"]] = files
        _restore_dir(root, again["version"]["ref"], files, scratch)

    rows = _versions(root, "d")
    assert len(rows) == KILLS_DIR + 1
    _assert_fsck_ok(root)
    for row in rows:
        _restore_dir(root, row.ref, by_digest[row.digest], scratch)


# -- gc killed while it removes and repacks ---------------------------------


def _make_garbage(root: Path, tag: str) -> bytes:
    """Leave a sealed pack mixing live and dead chunks, plus abandoned tmp files.

    An add of X+Y is killed once its first pack (64 MiB, all of X and part of Y) is
    sealed; X is then added on its own, reusing those chunks, so gc must repack.
    Returns X.
    """
    packs = _store(root) / "packs"
    x = _bytes(f"{tag}/x", 40 << 20)
    y = _bytes(f"{tag}/y", 30 << 20)
    (root / "xy.bin").write_bytes(x + y)
    sealed = _appears(packs, "*.idx")
    code = _kill_when(["add", "xy.bin", "--name", f"xy-{tag}"], root, sealed, limit=30)
    assert code is None, "the add finished before it could be killed"
    (root / "x.bin").write_bytes(x)
    added = _json("add", "x.bin", "--name", "x", cwd=root)
    assert added["created"] is True
    return x


def _store_files(root: Path) -> dict[str, int]:
    store = _store(root)
    return {
        p.relative_to(store).as_posix(): p.stat().st_size
        for folder in (store / "packs", store / "tmp")
        for p in folder.iterdir()
    }


def _check_all_x(root: Path, xs: dict[str, bytes], scratch: Path) -> None:
    rows = _versions(root, "x")
    assert len(rows) == len(xs)
    for row in rows:
        assert row.digest in xs
        _restore_file(root, row.ref, xs[row.digest], scratch)


@pytest.mark.slow
def test_sigkill_gc_at_random_points(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert cli("init", str(root), cwd=tmp_path).returncode == 0
    xs: dict[str, bytes] = {}

    # A first, uninterrupted gc measures how long removing such garbage takes.
    x = _make_garbage(root, "g0")
    xs[_b3(x)] = x
    start = time.monotonic()
    first = _json("gc", cwd=root)
    duration = time.monotonic() - start
    assert first["bytes_freed"] > 0 and first["packs_rewritten"] >= 1, first
    _assert_fsck_ok(root)
    _check_all_x(root, xs, scratch)

    rng = random.Random(SEED + 2)
    for i, delay in enumerate(_delays(rng, KILLS_GC, duration), start=1):
        x = _make_garbage(root, f"g{i}")
        xs[_b3(x)] = x
        code = _kill_after(["gc"], root, delay)
        assert code in (None, 0), f"gc exited {code} before the kill (delay {delay})"
        _assert_fsck_ok(root)
        _check_all_x(root, xs, scratch)

    # A complete gc afterwards cleans up whatever the killed ones left, and breaks nothing.
    _json("gc", cwd=root)
    assert not any((_store(root) / "tmp").iterdir())
    assert _json("gc", "--dry-run", cwd=root)["bytes_freed"] == 0
    _assert_fsck_ok(root)
    _check_all_x(root, xs, scratch)
    usage = _json("du", cwd=root)
    assert usage["unique_bytes"] == usage["logical_bytes"] == sum(len(v) for v in xs.values())
    assert sum(_store_files(root).values()) < usage["unique_bytes"] + (1 << 20)
