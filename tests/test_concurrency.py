"""Several processes writing one store at once, and gc running beside them.

Workers are real processes started together (they wait for a "go" file); nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

import modelkeep as mk
from modelkeep.store.chunking import chunk_bytes, digest
from modelkeep.store.packs import CODEC_RAW, KIND_CHUNK, PackWriter
from tests.conftest import MODELKEEP, cli

MiB = 1 << 20

# Adds `count` versions through the Python API, opening the repository for each one as a
# separate command would. Content = shared part (same for every worker at step i) +
# a part unique to (worker, i). Prints one JSON line per add.
API_WORKER = r"""
import json, os, sys, time
from pathlib import Path
import blake3
import modelkeep as mk

root, name, worker, count, shared, unique, go = sys.argv[1:8]
worker, count, shared, unique = int(worker), int(count), int(shared), int(unique)
src = Path(root) / f"src-{name}-{worker}.bin"
while not os.path.exists(go):
    time.sleep(0.002)
for i in range(count):
    data = (blake3.blake3(f"shared/{i}".encode()).digest(length=shared)
            + blake3.blake3(f"{name}/{worker}/{i}".encode()).digest(length=unique))
    src.write_bytes(data)
    with mk.open(root) as repo:
        r = repo.add(src, name)
    print(json.dumps({"worker": worker, "i": i, "number": r.version.number,
                      "digest": r.version.digest, "created": r.created}), flush=True)
"""

# The same, but each add is a separate `modelkeep add` command.
CLI_WORKER = r"""
import json, os, subprocess, sys, time
from pathlib import Path
import blake3

exe, root, name, worker, count, shared, unique, go = sys.argv[1:9]
worker, count, shared, unique = int(worker), int(count), int(shared), int(unique)
src = Path(root) / f"src-{name}-{worker}.bin"
while not os.path.exists(go):
    time.sleep(0.002)
for i in range(count):
    data = (blake3.blake3(f"shared/{i}".encode()).digest(length=shared)
            + blake3.blake3(f"{name}/{worker}/{i}".encode()).digest(length=unique))
    src.write_bytes(data)
    res = subprocess.run([exe, "add", str(src), "--name", name, "--json"], cwd=root,
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"add failed: {res.stderr}")
    v = json.loads(res.stdout)["version"]
    print(json.dumps({"worker": worker, "i": i, "number": v["number"], "digest": v["digest"],
                      "created": json.loads(res.stdout)["created"]}), flush=True)
"""

# Runs `modelkeep gc` over and over until the stop file appears.
GC_LOOP = r"""
import json, os, subprocess, sys
exe, root, stop = sys.argv[1:4]
runs = freed = 0
while not os.path.exists(stop):
    res = subprocess.run([exe, "gc", "--json"], cwd=root, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"gc failed: {res.stderr}")
    runs += 1
    freed += json.loads(res.stdout)["bytes_freed"]
print(json.dumps({"runs": runs, "freed": freed}), flush=True)
"""


def _content(name: str, worker: int, i: int, shared: int, unique: int) -> bytes:
    return blake3.blake3(f"shared/{i}".encode()).digest(length=shared) + blake3.blake3(
        f"{name}/{worker}/{i}".encode()
    ).digest(length=unique)


def _b3(data: bytes) -> str:
    return "b3:" + blake3.blake3(data).hexdigest()


def _env(url: str | None) -> dict[str, str]:
    env = {**os.environ, "MODELKEEP_USER": "tester"}
    env.pop("MODELKEEP_DATABASE_URL", None)
    if url:
        env["MODELKEEP_DATABASE_URL"] = url
    return env


def _spawn(script: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 240) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"worker failed (exit {proc.returncode}): {err}"
        lines += [json.loads(line) for line in out.splitlines() if line.strip()]
    return lines


def _json(*args: str, cwd: Path, url: str | None = None) -> Any:
    res = cli(*args, "--json", cwd=cwd, env=_env(url))
    assert res.returncode == 0, f"modelkeep {' '.join(args)} failed: {res.stderr}"
    return json.loads(res.stdout)


def _assert_fsck_ok(root: Path, url: str | None = None) -> None:
    res = cli("fsck", "--json", cwd=root, env=_env(url))
    report = json.loads(res.stdout) if res.stdout else {}
    assert res.returncode == 0 and report.get("ok") is True, (
        f"fsck failed (exit {res.returncode}): {res.stdout} {res.stderr}"
    )


def _init(root: Path, url: str | None = None) -> None:
    res = cli("init", str(root), cwd=root.parent, env=_env(url))
    assert res.returncode == 0, res.stderr


def _store(root: Path) -> Path:
    return root / ".modelkeep" / "store"


def _restored(repo: mk.Repo, ref: str) -> bytes:
    with repo.open(ref) as f:
        return f.read()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the default SQLite file, or a fresh PostgreSQL database's URL."""
    if request.param == "postgresql":
        yield str(request.getfixturevalue("fresh_postgres_url"))
    else:
        yield None


# -- (a) many writers, one artifact name -------------------------------------


@pytest.mark.slow
def test_concurrent_adds_to_one_name_number_versions_without_gaps(
    tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers, count, shared, unique = 5, 6, 512 << 10, 1 * MiB
    root = tmp_path / "proj"
    root.mkdir()
    _init(root, database_url)
    go = tmp_path / "go"
    env = _env(database_url)
    procs = [
        _spawn(API_WORKER, str(root), "model", str(w), str(count), str(shared), str(unique),
               str(go), env=env)
        for w in range(workers)
    ]  # fmt: skip
    time.sleep(0.3)
    go.touch()
    results = _finish(procs)

    total = workers * count
    assert len(results) == total
    assert all(r["created"] for r in results)
    numbers = sorted(r["number"] for r in results)
    assert numbers == list(range(1, total + 1)), f"duplicate or missing numbers: {numbers}"
    # Each worker saw its own versions numbered in increasing order.
    for w in range(workers):
        mine = [r["number"] for r in sorted(results, key=lambda r: r["i"]) if r["worker"] == w]
        assert mine == sorted(mine)

    expected = {
        r["number"]: _content("model", r["worker"], r["i"], shared, unique) for r in results
    }
    if database_url:
        monkeypatch.setenv("MODELKEEP_DATABASE_URL", database_url)
    with mk.open(root) as repo:
        rows = repo.versions("model")
        assert [v.number for v in rows] == list(range(1, total + 1))
        for v in rows:
            data = expected[v.number]
            assert v.digest == _b3(data), f"{v.ref} is not what its adder stored"
            assert _restored(repo, v.ref) == data
        latest = repo.artifacts()[0].latest
        assert latest is not None and latest.number == total
    _assert_fsck_ok(root, database_url)


# -- (b) identical content at once -------------------------------------------


@pytest.mark.slow
def test_concurrent_adds_of_identical_content_store_one_copy(tmp_path: Path) -> None:
    workers, size = 4, 24 * MiB
    root = tmp_path / "proj"
    root.mkdir()
    _init(root)
    go = tmp_path / "go"
    # shared=size, unique=0: every worker adds exactly the same bytes (from its own file).
    procs = [
        _spawn(API_WORKER, str(root), "same", str(w), "1", str(size), "0", str(go), env=_env(None))
        for w in range(workers)
    ]
    time.sleep(0.3)
    go.touch()
    results = _finish(procs)
    data = _content("same", 0, 0, size, 0)

    assert {r["digest"] for r in results} == {_b3(data)}
    assert {r["number"] for r in results} == {1}
    assert sum(r["created"] for r in results) == 1  # the others found it is already v1

    usage = _json("du", cwd=root)
    assert usage["versions"] == 1
    assert size <= usage["unique_bytes"] <= size + 64 * 1024, usage
    _assert_fsck_ok(root)

    # Copies written in parallel before anyone indexed theirs are garbage, and only that.
    freed = _json("gc", cwd=root)["bytes_freed"]
    after = _json("du", cwd=root)
    assert after["unique_bytes"] == usage["unique_bytes"]
    assert after["stored_bytes"] <= size + 64 * 1024, after
    assert usage["stored_bytes"] - after["stored_bytes"] <= freed
    _assert_fsck_ok(root)
    with mk.open(root) as repo:
        assert _restored(repo, "same:v1") == data


# -- (c) gc looping while others add -----------------------------------------


@pytest.mark.slow
def test_gc_running_beside_adds_never_removes_their_data(tmp_path: Path) -> None:
    workers, count, shared, unique = 4, 4, 2 * MiB, 2 * MiB
    root = tmp_path / "proj"
    root.mkdir()
    _init(root)
    go, stop = tmp_path / "go", tmp_path / "stop"
    env = _env(None)
    gc_loop = _spawn(GC_LOOP, MODELKEEP, str(root), str(stop), env=env)
    procs = [
        _spawn(CLI_WORKER, MODELKEEP, str(root), "c", str(w), str(count), str(shared),
               str(unique), str(go), env=env)
        for w in range(workers)
    ]  # fmt: skip
    go.touch()
    try:
        results = _finish(procs)
    finally:
        stop.touch()
    loops = _finish([gc_loop])[0]
    assert loops["runs"] >= 2, "gc did not run while the adds were running"

    total = workers * count
    assert sorted(r["number"] for r in results) == list(range(1, total + 1))
    _assert_fsck_ok(root)
    _json("gc", cwd=root)  # once more, with nobody writing
    _assert_fsck_ok(root)
    with mk.open(root) as repo:
        rows = repo.versions("c")
        assert [v.number for v in rows] == list(range(1, total + 1))
        by_number = {r["number"]: r for r in results}
        for v in rows:
            r = by_number[v.number]
            data = _content("c", r["worker"], r["i"], shared, unique)
            assert v.digest == _b3(data)
            assert _restored(repo, v.ref) == data, f"{v.ref} no longer restores"


# -- (d) gc frees exactly the unreferenced data ------------------------------


def _store_files(root: Path) -> dict[str, int]:
    store = _store(root)
    return {
        p.relative_to(store).as_posix(): p.stat().st_size
        for folder in (store / "packs", store / "tmp")
        for p in sorted(folder.iterdir())
    }


def _kill_add_after_seal(root: Path, src: Path, name: str) -> bool:
    """Start `modelkeep add`; SIGKILL it once a new pack is sealed. False if it finished."""
    packs = _store(root) / "packs"
    known = {p.name for p in packs.glob("*.idx")}
    proc = subprocess.Popen(
        [MODELKEEP, "add", str(src), "--name", name],
        cwd=root,
        env=_env(None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.name not in known for p in packs.glob("*.idx")):
            break
        time.sleep(0.002)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _snapshot(root: Path) -> tuple[dict[str, int], Any, Any]:
    return _store_files(root), _json("du", cwd=root), _json("versions", "keep", cwd=root)


def _gc_dry_run_then_real(root: Path) -> int:
    """gc --dry-run changes nothing and predicts exactly what the real gc then frees."""
    before = _snapshot(root)
    dry = _json("gc", "--dry-run", cwd=root)
    assert dry["dry_run"] is True
    assert _snapshot(root) == before, "gc --dry-run changed the store"
    real = _json("gc", cwd=root)
    assert real["dry_run"] is False
    assert real["bytes_freed"] == dry["bytes_freed"], (dry, real)
    assert real["objects_removed"] == dry["objects_removed"], (dry, real)
    on_disk = sum(before[0].values()) - sum(_store_files(root).values())
    # Pack data freed, give or take the (small) pack index files.
    assert real["bytes_freed"] <= on_disk <= real["bytes_freed"] + MiB, (real, on_disk)
    assert _json("gc", "--dry-run", cwd=root)["bytes_freed"] == 0
    return int(real["bytes_freed"])


def _check_keep(root: Path, kept: dict[str, bytes]) -> None:
    _assert_fsck_ok(root)
    with mk.open(root) as repo:
        rows = repo.versions("keep")
        assert len(rows) == len(kept)
        for v in rows:
            assert _restored(repo, v.ref) == kept[v.digest]
        usage = repo.du()
        assert usage.unique_bytes == usage.logical_bytes == sum(len(d) for d in kept.values())


@pytest.mark.slow
def test_gc_frees_only_what_killed_adds_left(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _init(root)
    kept: dict[str, bytes] = {}
    for i in range(2):
        data = blake3.blake3(f"keep/{i}".encode()).digest(length=6 * MiB)
        src = root / f"keep-{i}.bin"
        src.write_bytes(data)
        assert _json("add", str(src), "--name", "keep", cwd=root)["created"]
        kept[_b3(data)] = data

    # Kill adds after their first pack is sealed, until there is something to collect.
    big = root / "lost.bin"
    for attempt in range(4):
        big.write_bytes(blake3.blake3(f"lost/{attempt}".encode()).digest(length=70 * MiB))
        _kill_add_after_seal(root, big, "lost")
        usage = _json("du", cwd=root)
        if usage["unique_bytes"] > usage["logical_bytes"] and any((_store(root) / "tmp").iterdir()):
            break
    assert usage["unique_bytes"] > usage["logical_bytes"], "no kill left unreferenced data"
    assert usage["versions"] == 2
    _assert_fsck_ok(root)  # leftovers are not damage

    freed = _gc_dry_run_then_real(root)
    assert freed >= 64 * MiB
    assert not any((_store(root) / "tmp").iterdir())
    _check_keep(root, kept)


@pytest.mark.slow
def test_gc_repacks_a_partly_referenced_pack_keeping_live_objects(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _init(root)
    x = blake3.blake3(b"x").digest(length=40 * MiB)
    y = blake3.blake3(b"y").digest(length=30 * MiB)
    (root / "xy.bin").write_bytes(x + y)
    # Its first sealed pack holds all of x and part of y; then x alone is added, reusing
    # those chunks: that pack is now partly live, partly garbage.
    assert _kill_add_after_seal(root, root / "xy.bin", "lost")
    (root / "x.bin").write_bytes(x)
    added = _json("add", "x.bin", "--name", "keep", cwd=root)
    assert added["created"] and added["reused_bytes"] > 30 * MiB, added
    _assert_fsck_ok(root)

    freed = _gc_dry_run_then_real(root)
    assert freed > 20 * MiB
    _check_keep(root, {_b3(x): x})


# -- (e) gc while other commands open the repository -------------------------

# Opens the store over and over, as every modelkeep command does on start (it indexes any
# sealed pack it finds unindexed), until the stop file appears.
OPENER = r"""
import os, sys
from pathlib import Path
from modelkeep.store import ObjectStore

store, stop = Path(sys.argv[1]), sys.argv[2]
while not os.path.exists(stop):
    ObjectStore(store).close()
"""


@pytest.mark.slow
def test_gc_beside_commands_opening_the_repo_leaves_no_dangling_index_entries(
    tmp_path: Path,
) -> None:
    """A killed add left F's chunks in sealed packs; gc removes them while other modelkeep
    processes open the repository; adding F again must then store it completely."""
    root = tmp_path / "proj"
    root.mkdir()
    _init(root)
    content = blake3.blake3(b"f").digest(length=48 * MiB)
    with mk.open(root) as repo:
        store = repo.store
        for piece in chunk_bytes(content):  # one small sealed, unreferenced pack per chunk
            writer = PackWriter(store.packs_dir, store.tmp_dir)
            writer.append([(digest(piece), KIND_CHUNK, CODEC_RAW, piece, len(piece))])
            writer.seal()
            store.index.add_pack(writer.name, writer.size, writer.entries)
        packs = len(store.index.pack_names())
    assert packs > 500

    stop = tmp_path / "stop"
    openers = [_spawn(OPENER, str(_store(root)), str(stop), env=_env(None)) for _ in range(2)]
    try:
        time.sleep(0.3)
        report = _json("gc", cwd=root)
    finally:
        stop.touch()
        _finish(openers)
    assert report["packs_removed"] == packs

    _assert_fsck_ok(root)  # no index entry may point into a pack gc deleted
    _json("gc", cwd=root)
    (root / "f.bin").write_bytes(content)
    added = _json("add", "f.bin", "--name", "f", cwd=root)
    assert added["version"]["digest"] == _b3(content)
    _assert_fsck_ok(root)
    with mk.open(root) as repo:
        assert _restored(repo, "f:v1") == content
