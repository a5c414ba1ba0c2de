"""A store knows its database, and remotes are robust: each attack crafted by hand.

Every test drives the real CLI and checks the safe outcome: a one-line error and exit 1
where the command must refuse, a one-line warning where it goes on without the bad part,
and the original bytes still coming back with `get`.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import modelkeep as mk
from modelkeep.remotes import Remote
from modelkeep.store.packs import KIND_CHUNK, decode_index
from tests.conftest import cli, downgrade, ok, write
from tests.s3 import S3Server

KiB = 1 << 10


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def fails(r: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 1 with exactly one line on stderr, holding every one of words."""
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    return r.stderr


def packs_digest(root: Path) -> str:
    """Every pack file of a store, name and bytes: to show that nothing was touched."""
    h = hashlib.sha256()
    for p in sorted((root / ".modelkeep" / "store" / "packs").iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def env_db(url: str) -> dict[str, str]:
    return {"MODELKEEP_DATABASE_URL": url}


def init_with(tmp_path: Path, name: str = "proj") -> Path:
    root = tmp_path / name
    root.mkdir()
    ok("init", cwd=root)
    return root


# -- a store knows its database ------------------------------------------------------------


def test_gc_fsck_prune_add_refuse_a_forgotten_database_url(tmp_path: Path) -> None:
    """Finding 5: add with MODELKEEP_DATABASE_URL, then gc without it wiped the store."""
    root = init_with(tmp_path)
    ok("remote", "add", "origin", str(tmp_path / "remote"), cwd=root)
    data = rand(300 * KiB, 1)
    write(root / "f.bin", data)
    team = env_db(f"sqlite:///{tmp_path}/team.sqlite")
    assert cli("add", "f.bin", "-n", "data", cwd=root, env=team).returncode == 0
    before = packs_digest(root)
    for command in (["gc"], ["fsck"], ["cache", "prune", "--max-size", "0"]):
        fails(cli(*command, cwd=root), "team.sqlite", "meta.sqlite", "MODELKEEP_DATABASE_URL")
    fails(cli("add", "f.bin", "-n", "other", cwd=root), "team.sqlite", "refusing")
    assert packs_digest(root) == before
    r = cli("gc", cwd=root, env=team)
    assert r.returncode == 0 and "0 unreferenced objects" in r.stdout, r.stderr
    assert cli("get", "data:v1", "-o", "back.bin", cwd=root, env=team).returncode == 0
    assert (root / "back.bin").read_bytes() == data


def test_an_empty_meta_sqlite_is_refused(tmp_path: Path) -> None:
    """Finding 5: a 0-byte meta.sqlite made gc free everything."""
    root = init_with(tmp_path)
    write(root / "f.bin", rand(300 * KiB, 2))
    ok("add", "f.bin", "-n", "data", cwd=root)
    before = packs_digest(root)
    meta = root / ".modelkeep" / "meta.sqlite"
    saved = tmp_path / "meta.saved"
    with sqlite3.connect(meta) as src, sqlite3.connect(saved) as dst:
        src.backup(dst)
    for extra in root.glob(".modelkeep/meta.sqlite-*"):
        extra.unlink()
    meta.write_bytes(b"")
    fails(cli("gc", cwd=root), "belongs to metadata database", "no versions")
    fails(cli("fsck", cwd=root), "no versions")
    assert packs_digest(root) == before
    meta.write_bytes(saved.read_bytes())  # the real one is back: everything is there
    ok("get", "data:v1", "-o", "back.bin", cwd=root)
    assert (root / "back.bin").read_bytes() == rand(300 * KiB, 2)
    assert "0 unreferenced objects" in ok("gc", cwd=root).stdout


def test_the_database_of_another_store_is_refused(tmp_path: Path) -> None:
    a, b = init_with(tmp_path, "a"), init_with(tmp_path, "b")
    write(a / "f.bin", rand(200 * KiB, 3))
    write(b / "g.bin", rand(200 * KiB, 4))
    ok("add", "f.bin", "-n", "data", cwd=a)
    ok("add", "g.bin", "-n", "data", cwd=b)  # the same name: the other database has versions
    before = packs_digest(a)
    foreign = env_db(f"sqlite:///{b}/.modelkeep/meta.sqlite")
    for command in (["gc"], ["fsck"], ["add", "f.bin", "-n", "x"]):
        fails(cli(*command, cwd=a, env=foreign), "belongs to metadata database", "1 version")
    assert packs_digest(a) == before
    ok("get", "data:v1", "-o", "back.bin", cwd=a)
    assert (a / "back.bin").read_bytes() == rand(200 * KiB, 3)


def test_an_empty_store_follows_the_database_it_is_given(tmp_path: Path) -> None:
    """Nothing to lose: init then MODELKEEP_DATABASE_URL is the usual way into a team."""
    root = init_with(tmp_path)
    write(root / "f.bin", rand(100 * KiB, 5))
    team = env_db(f"sqlite:///{tmp_path}/team.sqlite")
    assert cli("add", "f.bin", "-n", "data", cwd=root, env=team).returncode == 0
    r = cli("gc", cwd=root, env=team)
    assert r.returncode == 0 and "0 unreferenced objects" in r.stdout, r.stderr


def binding(root: Path) -> Path:
    return root / ".modelkeep" / "store" / "database.json"


def test_a_store_made_before_store_ids_adopts_its_database(tmp_path: Path) -> None:
    root = init_with(tmp_path)
    write(root / "f.bin", rand(300 * KiB, 6))
    ok("add", "f.bin", "-n", "data", cwd=root)
    binding(root).unlink()  # as an older release left it
    assert "0 unreferenced objects" in ok("gc", cwd=root).stdout
    assert binding(root).exists()
    ok("get", "data:v1", "-o", "back.bin", cwd=root)
    assert (root / "back.bin").read_bytes() == rand(300 * KiB, 6)


def test_an_older_store_with_packs_never_adopts_an_empty_or_foreign_database(
    tmp_path: Path,
) -> None:
    root, other = init_with(tmp_path, "a"), init_with(tmp_path, "b")
    write(root / "f.bin", rand(300 * KiB, 7))
    write(other / "g.bin", rand(100 * KiB, 8))
    ok("add", "f.bin", "-n", "data", cwd=root)
    ok("add", "g.bin", "-n", "data", cwd=other)
    binding(root).unlink()
    before = packs_digest(root)
    empty = env_db(f"sqlite:///{tmp_path}/empty.sqlite")
    foreign = env_db(f"sqlite:///{other}/.modelkeep/meta.sqlite")
    fails(cli("gc", cwd=root, env=empty), "records no database yet", "no versions")
    fails(cli("gc", cwd=root, env=foreign), "records no database yet", "1 version")
    assert not binding(root).exists() and packs_digest(root) == before
    ok("get", "data:v1", "-o", "back.bin", cwd=root)  # its own database: adopted
    assert binding(root).exists()
    assert (root / "back.bin").read_bytes() == rand(300 * KiB, 7)


def test_a_garbage_store_binding_is_one_line(tmp_path: Path) -> None:
    root = init_with(tmp_path)
    write(root / "f.bin", rand(100 * KiB, 9))
    ok("add", "f.bin", "-n", "data", cwd=root)
    binding(root).write_bytes(b"\xff\xfe not json")
    fails(cli("gc", cwd=root), "database.json", "delete it")
    ok("get", "data:v1", "-o", "back.bin", cwd=root)


def test_a_0004_database_and_its_store_upgrade_cleanly(
    backend_repo: mk.Repo, tmp_path: Path
) -> None:
    """On SQLite and PostgreSQL: the id is made by the upgrade, the store adopts it."""
    from sqlalchemy import create_engine, text

    from modelkeep.meta.db import HEAD
    from modelkeep.meta.identity import database_id

    data = rand(200 * KiB, 10)
    backend_repo.add(write(tmp_path / "a.bin", data), "m", track=False)
    url = backend_repo.settings.database_url
    backend_repo.close()
    downgrade(url, "0004")
    engine = create_engine(url)
    with engine.begin() as conn:  # as 0.2 left it: no identity at all
        conn.execute(text("DROP TABLE database_identity"))
    engine.dispose()
    binding(backend_repo.root).unlink()
    with mk.open(backend_repo.root) as upgraded:
        assert upgraded.db.current_revision() == HEAD == "0012"
        assert binding(upgraded.root).read_text().count(database_id(upgraded.db)) == 1
        assert upgraded.gc().objects_removed == 0
        assert upgraded.fsck().ok
        assert upgraded.open("m:v1").read() == data


# -- team mode ---------------------------------------------------------------------------


def team(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Two machines (a, b): one SQLite database, one folder remote, their own stores."""
    shared = f"sqlite:///{tmp_path}/team.sqlite"
    envs = {
        "a": {"MODELKEEP_DATABASE_URL": shared, "MODELKEEP_HOST": "host-a"},
        "b": {"MODELKEEP_DATABASE_URL": shared, "MODELKEEP_HOST": "host-b"},
    }

    def run(who: str, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, cwd=tmp_path / who, env=envs[who])

    for who in envs:
        (tmp_path / who).mkdir()
        assert run(who, "init").returncode == 0
        assert run(who, "remote", "add", "origin", str(tmp_path / "remote"), "-d").returncode == 0
    return run


def test_gc_and_fsck_on_a_machine_that_never_pulled(tmp_path: Path) -> None:
    """Finding 5: gc exited 1 every time, fsck called pushed data missing."""
    run = team(tmp_path)
    write(tmp_path / "a" / "w" / "weights.bin", rand(300 * KiB, 11))
    write(tmp_path / "a" / "w" / "config.json", b"{}")
    assert run("a", "add", "w", "-n", "w").returncode == 0  # a folder: a tree to walk
    assert run("a", "push").returncode == 0
    write(tmp_path / "b" / "mine.bin", rand(100 * KiB, 12))
    assert run("b", "add", "mine.bin", "-n", "mine").returncode == 0
    r = run("b", "gc")
    assert r.returncode == 0 and "0 unreferenced objects" in r.stdout, r.stderr
    r = run("b", "fsck")
    assert r.returncode == 0 and r.stdout.startswith("ok"), (r.stdout, r.stderr)
    r = run("a", "gc")  # b's version is b's business, not a's
    assert r.returncode == 0, r.stderr
    assert run("b", "get", "w:v1", "-o", "got").returncode == 0
    assert (tmp_path / "b" / "got" / "weights.bin").read_bytes() == rand(300 * KiB, 11)
    r = run("b", "gc")  # what b pulled stays
    assert r.returncode == 0 and "0 unreferenced objects" in r.stdout, r.stderr
    assert run("b", "fsck").returncode == 0


def test_fsck_still_reports_what_no_remote_holds(tmp_path: Path) -> None:
    run = team(tmp_path)
    write(tmp_path / "a" / "w.bin", rand(100 * KiB, 13))
    assert run("a", "add", "w.bin", "-n", "w").returncode == 0  # never pushed
    r = run("b", "fsck")
    assert r.returncode == 1 and "is missing" in r.stderr and "w:v1" in r.stderr, r.stderr


# -- robust remotes ----------------------------------------------------------------------


Put = Callable[[str, bytes], None]  # (file name under packs/, bytes): write it on the remote


def plant_junk(remote_url: str, put: Put) -> list[str]:
    """A junk index, a truncated copy of a real one, and an index with no pack."""
    remote = Remote(remote_url, {})
    real = next(iter(remote.list_packs()))
    index = remote.read_index(real)
    put("pack-zzz.idx", b"junk")
    put("pack-zzz.pack", b"junk")
    put("pack-truncated.idx", index[: len(index) // 2])
    put("pack-truncated.pack", b"x" * 10)
    put("pack-nopack.idx", index)
    return ["pack-zzz", "pack-truncated"]


def folder_put(url: str) -> Put:
    def put(name: str, data: bytes) -> None:
        write(Path(url) / "packs" / name, data)

    return put


def s3_put(s3_server: S3Server, bucket: str, prefix: str) -> Put:
    def put(name: str, data: bytes) -> None:
        s3_server.client().put_object(Bucket=bucket, Key=f"{prefix}/packs/{name}", Body=data)

    return put


@pytest.fixture(params=["folder", "s3"])
def junk_remote(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Put]:
    if request.param == "folder":
        url = str(tmp_path / "remote")
        return url, folder_put(url)
    s3_server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/team", s3_put(s3_server, bucket, "team")


def test_junk_indexes_on_a_remote_are_skipped_with_a_warning(
    tmp_path: Path, junk_remote: tuple[str, Put]
) -> None:
    """Finding 8: one junk pack-zzz.idx made every push and pull fail for everyone."""
    url, put = junk_remote
    a = init_with(tmp_path, "a")
    ok("remote", "add", "origin", url, "-d", cwd=a)
    write(a / "one.bin", rand(200 * KiB, 14))
    ok("add", "one.bin", "-n", "one", cwd=a)
    ok("push", cwd=a)
    skipped = plant_junk(url, put)
    write(a / "two.bin", rand(200 * KiB, 15))
    ok("add", "two.bin", "-n", "two", cwd=a)
    r = ok("push", cwd=a)
    assert "pushed 1 version(s)" in r.stdout
    for name in skipped:
        assert "modelkeep: warning: skipped: remote " in r.stderr
        assert f"{name}.idx" in r.stderr, r.stderr
    assert "pack-nopack.idx has no pack" in r.stderr
    assert "Traceback" not in r.stderr
    # A fresh store on the same database gets both versions, byte for byte.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shared = env_db(f"sqlite:///{a}/.modelkeep/meta.sqlite")
    assert cli("init", cwd=fresh, env=shared).returncode == 0
    assert cli("remote", "add", "origin", url, "-d", cwd=fresh, env=shared).returncode == 0
    for name, seed in (("one", 14), ("two", 15)):
        r = cli("get", f"{name}:v1", "-o", f"{name}.bin", cwd=fresh, env=shared)
        assert r.returncode == 0, r.stderr
        assert (fresh / f"{name}.bin").read_bytes() == rand(200 * KiB, seed)
    r = cli("pull", "one:v1", cwd=fresh, env=shared)
    assert r.returncode == 0, r.stderr


def test_cache_prune_keeps_a_pack_whose_remote_copy_rotted(tmp_path: Path) -> None:
    """Finding 9: prune dropped the local pack after the remote one rotted."""
    root = init_with(tmp_path)
    remote = tmp_path / "remote"
    ok("remote", "add", "origin", str(remote), "-d", cwd=root)
    data = rand(600 * KiB, 16)
    write(root / "w.bin", data)
    ok("add", "w.bin", "-n", "w", cwd=root)
    ok("push", cwd=root)
    (pack_idx,) = (remote / "packs").glob("pack-*.idx")
    entry = max(
        (e for e in decode_index(pack_idx.read_bytes()) if e.kind == KIND_CHUNK),
        key=lambda e: e.length,
    )
    rotted = pack_idx.with_suffix(".pack")
    raw = bytearray(rotted.read_bytes())
    raw[entry.offset + entry.length // 2] ^= 0xFF
    rotted.chmod(0o644)
    rotted.write_bytes(bytes(raw))
    (local,) = (root / ".modelkeep" / "store" / "packs").glob("pack-*.idx")
    before = packs_digest(root)
    r = ok("cache", "prune", "--max-size", "0", cwd=root)
    assert "modelkeep: warning: kept local pack " + local.stem in r.stderr, r.stderr
    assert rotted.name in r.stderr and r.stderr.count("\n") == 1
    assert packs_digest(root) == before
    ok("remote", "remove", "origin", cwd=root)  # the local copy alone is enough
    ok("get", "w:v1", "-o", "back.bin", cwd=root)
    assert (root / "back.bin").read_bytes() == data


def test_cache_prune_still_drops_what_the_remote_verifiably_holds(tmp_path: Path) -> None:
    root = init_with(tmp_path)
    ok("remote", "add", "origin", str(tmp_path / "remote"), "-d", cwd=root)
    data = rand(600 * KiB, 17)
    write(root / "w.bin", data)
    ok("add", "w.bin", "-n", "w", cwd=root)
    ok("push", cwd=root)
    r = ok("cache", "prune", "--max-size", "0", "--json", cwd=root)
    assert '"packs_dropped": 1' in r.stdout and r.stderr == ""
    ok("get", "w:v1", "-o", "back.bin", cwd=root)
    assert (root / "back.bin").read_bytes() == data


# -- a damaged local index ---------------------------------------------------------------


def test_a_garbage_index_sqlite_is_rebuilt_from_the_packs(tmp_path: Path) -> None:
    """Finding 12: a garbage index.sqlite gave a traceback."""
    root = init_with(tmp_path)
    ok("remote", "add", "origin", str(tmp_path / "remote"), "-d", cwd=root)
    data = rand(300 * KiB, 18)
    write(root / "f.bin", data)
    ok("add", "f.bin", "-n", "data", cwd=root)
    ok("push", cwd=root)
    store = root / ".modelkeep" / "store"
    garbage = [store / "index.sqlite", *(root / ".modelkeep" / "remotes").glob("*.sqlite")]
    assert len(garbage) == 2
    for path in garbage:
        for extra in path.parent.glob(path.name + "-*"):
            extra.unlink()
        path.write_bytes(rand(8 * KiB, 19))
    r = ok("get", "data:v1", "-o", "back.bin", cwd=root)
    assert r.stderr.startswith("modelkeep: warning: ") and "index.sqlite" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert (root / "back.bin").read_bytes() == data
    assert "nothing to push" in ok("push", cwd=root).stdout  # the remote's cache, rebuilt
    assert ok("fsck", cwd=root).stdout.startswith("ok")
    assert "0 unreferenced objects" in ok("gc", cwd=root).stdout
