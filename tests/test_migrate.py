"""`modelkeep migrate`: every record moves between SQLite and a real PostgreSQL, the store
switches with it, and a refusal, a bad URL or a kill half-way leaves the source in use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

import modelkeep as mk
from modelkeep import meta
from modelkeep.meta import transfer
from modelkeep.store import identity
from tests.conftest import MODELKEEP, cli, jcli, ok, one_error_line, write

WEIGHTS = os.urandom(300_000) + b"weights" * 50_000
DATA = {"train.csv": b"a,b\n1,2\n" * 20_000, "sub/test.csv": b"a,b\n3,4\n" * 5_000}


def _project(tmp_path: Path) -> Path:
    """A SQLite store with every kind of record: a run with params, metrics, an input and
    an output, a folder version, registry stages, aliases, an archive, a push."""
    root = tmp_path / "proj"
    with mk.init(root) as repo:
        for rel, data in DATA.items():
            write(root / "data" / rel, data)
        data_v = repo.add(root / "data", "churn-data", type="dataset", track=False).version
        write(root / "w.bin", WEIGHTS)
        with mk.start_run(name="train", params={"lr": 0.01}, repo=repo) as run:
            repo.get(data_v, str(tmp_path / "in"), run_id=run.id)
            for step in range(5):
                run.log_metrics({"auc": 0.8 + step / 100, "loss": 1 / (step + 1)}, step=step)
            model_v = repo.add(root / "w.bin", "fraud", type="model", track=False).version
        write(root / "w.bin", WEIGHTS[::-1])
        repo.add(root / "w.bin", "fraud", type="model", message="second", track=False)
        repo.register(model_v, "fraud-model", reason="baseline")
        repo.promote("fraud-model:v1", "production", reason="offline eval ok")
        repo.set_alias("fraud-model@champion", "fraud-model:v1", reason="best")
        repo.register("fraud:v2", "fraud-model", reason="next")
        repo.archive("fraud-model:v2", reason="worse")
        repo.add_remote("nas", str(tmp_path / "nas"), default=True)
        repo.push(["fraud:v1", "churn-data:v1"])
    return root


def _records(root: Path) -> dict[str, Any]:
    """What the user sees of the records, through the real CLI."""
    runs = jcli("runs", cwd=root)
    return {
        "ls": jcli("ls", cwd=root),
        "versions": [jcli("versions", n, cwd=root) for n in ("fraud", "fraud-model", "churn-data")],
        "show": jcli("show", "fraud-model@champion", cwd=root),
        "runs": runs,
        "run": [jcli("runs", "show", r["id"], cwd=root) for r in runs["runs"]],
        "lineage": jcli("lineage", "fraud", cwd=root),
        "history": jcli("history", "fraud-model", cwd=root),
        "models": jcli("models", cwd=root),
        "audit": jcli("audit", "--verify", cwd=root),
    }


def _gets_exact(root: Path, out: Path) -> None:
    ok("get", "fraud-model@production", "-o", str(out / "w.bin"), "--force", cwd=root)
    assert (out / "w.bin").read_bytes() == WEIGHTS
    ok("get", "fraud:v2", "-o", str(out / "w2.bin"), "--force", cwd=root)
    assert (out / "w2.bin").read_bytes() == WEIGHTS[::-1]
    ok("get", "churn-data:v1", "-o", str(out / "data"), "--force", cwd=root)
    for rel, data in DATA.items():
        assert (out / "data" / rel).read_bytes() == data


def _config(root: Path) -> bytes:
    return (root / ".modelkeep" / "config.toml").read_bytes()


def _bound(root: Path) -> str:
    found = identity.read(root / ".modelkeep" / "store")
    assert found is not None
    return found.database_id


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _db_id(url: str) -> str:
    db = meta.Database(url)
    try:
        found = transfer.existing_id(db)
        assert found is not None
        return found
    finally:
        db.close()


def test_round_trip_sqlite_postgresql_sqlite(tmp_path: Path, fresh_postgres_url: str) -> None:
    root = _project(tmp_path)
    before = _records(root)
    assert before["audit"]["ok"] and before["audit"]["events"] >= 5
    sqlite_id = _bound(root)

    plain = fresh_postgres_url.replace("postgresql+psycopg://", "postgresql://")
    doc = jcli("migrate", "--to", plain, cwd=root)  # given the driver modelkeep uses
    assert doc["rows"]["events"] == before["audit"]["events"]
    assert doc["rows"]["metrics"] == 10 and doc["rows"]["pushes"] == 2
    assert doc["head"] == before["audit"]["head"] and not doc["finished"]
    control = root / ".modelkeep"
    assert not (control / "meta.sqlite").exists()
    assert doc["kept"] and Path(doc["kept"]).is_file()  # the old file, kept aside
    assert f'database_url = "{fresh_postgres_url}"' in _config(root).decode()
    assert _bound(root) == _db_id(fresh_postgres_url) == doc["database_id"] != sqlite_id
    assert _records(root) == before  # every record, every id, every time: the same
    _gets_exact(root, tmp_path / "on-pg")

    # New records get fresh ids (the sequences were moved past the copied ones).
    write(root / "w.bin", b"third" * 1000)
    assert jcli("add", "w.bin", "--name", "fraud", cwd=root)["version"]["ref"] == "fraud:v3"
    ok("promote", "fraud-model:v2", "staging", "--reason", "retry", cwd=root)
    with mk.open(root) as repo, mk.start_run(name="again", repo=repo) as run:
        run.log_metrics({"auc": 0.9}, step=0)
    on_pg = _records(root)
    assert on_pg["audit"]["ok"]

    back = jcli("migrate", "--to", "sqlite", cwd=root)
    assert back["head"] == on_pg["audit"]["head"] and back["kept"] is None
    assert "database_url =" not in _config(root).decode().replace("# database_url", "")
    assert (control / "meta.sqlite").is_file()
    assert _bound(root) == back["database_id"] == _db_id(f"sqlite:///{control / 'meta.sqlite'}")
    assert _records(root) == on_pg
    _gets_exact(root, tmp_path / "back")
    jcli("fsck", cwd=root)
    write(root / "w.bin", b"fourth" * 1000)
    assert jcli("add", "w.bin", "--name", "fraud", cwd=root)["version"]["ref"] == "fraud:v4"


def test_the_old_database_is_refused_with_this_store(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """After a migrate the kept SQLite file is not this store's database any more: gc and
    add against it are refused, and `migrate --to` the current database does nothing."""
    root = _project(tmp_path)
    kept = jcli("migrate", "--to", fresh_postgres_url, cwd=root)["kept"]
    old = {"MODELKEEP_DATABASE_URL": f"sqlite:///{kept}"}
    for args in (("gc",), ("add", "w.bin", "--name", "fraud")):
        assert "belongs to metadata database" in one_error_line(cli(*args, cwd=root, env=old))
    line = one_error_line(cli("migrate", "--to", fresh_postgres_url, cwd=root))
    assert "already uses" in line
    r = cli("migrate", "--to", "sqlite", cwd=root, env=old)
    assert "MODELKEEP_DATABASE_URL is set" in one_error_line(r)


def test_a_target_that_is_not_empty_is_refused_and_nothing_changes(
    tmp_path: Path, make_fresh_postgres_url: Callable[[], str]
) -> None:
    url = make_fresh_postgres_url()
    other = tmp_path / "other"
    other.mkdir()
    ok("init", cwd=other)
    write(other / "x.bin", b"other team's")
    ok("add", "x.bin", "--name", "x", cwd=other)
    ok("migrate", "--to", url, cwd=other)
    root = _project(tmp_path)
    config, bound = _config(root), _bound(root)
    line = one_error_line(cli("migrate", "--to", url, cwd=root))
    shown = f"postgresql+psycopg://***@127.0.0.1:{make_url(url).port}/{make_url(url).database}"
    assert f"target database {shown} is not empty (artifacts: 1, versions: 1)" in line
    assert _config(root) == config and _bound(root) == bound
    assert (root / ".modelkeep" / "meta.sqlite").is_file()
    assert jcli("audit", "--verify", cwd=root)["ok"]
    # a database holding tables of something else is not empty either
    foreign = make_fresh_postgres_url()
    with psycopg.connect(
        make_url(foreign).set(drivername="postgresql").render_as_string(False)
    ) as c:
        c.execute("CREATE TABLE invoices (id int)")
    line = one_error_line(cli("migrate", "--to", foreign, cwd=root))
    assert "tables modelkeep does not know: invoices" in line
    # and a SQLite file that already holds a store's records
    target = tmp_path / "full.sqlite"
    ok("migrate", "--to", f"sqlite:///{target}", cwd=other)
    assert "is not empty" in one_error_line(cli("migrate", "--to", f"sqlite:///{target}", cwd=root))
    assert _config(root) == config and _bound(root) == bound


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("nonsense", "not a database URL"),
        ("mysql://db.example.com/models", "'mysql' is not a database modelkeep keeps"),
        ("sqlite:////no/such/folder/meta.sqlite", "folder '/no/such/folder' does not exist"),
        ("sqlite://", None),  # the default file: the store already uses it
        ("postgresql://db.example.com", "name the database"),
        ("postgresql://alice:s3cret@127.0.0.1:1/models", "127.0.0.1"),  # nothing listens
    ],
)
def test_bad_urls_are_one_clear_line_and_change_nothing(
    tmp_path: Path, to: str, expected: str | None
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    ok("init", cwd=root)
    config = _config(root)
    line = one_error_line(cli("migrate", "--to", to, cwd=root))
    assert "s3cret" not in line
    assert (expected or "already uses") in line
    assert _config(root) == config and (root / ".modelkeep" / "meta.sqlite").is_file()
    r = cli("migrate", "--to", to, "--json", cwd=root)
    assert r.returncode == 1 and "s3cret" not in r.stderr
    assert json.loads(r.stderr)["error"] in ("BadMigrateTarget", "DatabaseError", "MigrateRefused")


def test_a_live_run_blocks_the_migrate(tmp_path: Path, fresh_postgres_url: str) -> None:
    root = tmp_path / "proj"
    with mk.init(root) as repo, mk.start_run(name="training", repo=repo):
        line = one_error_line(cli("migrate", "--to", fresh_postgres_url, cwd=root))
        assert "run 'training'" in line and "still running" in line
    assert "database_url =" not in _config(root).decode().replace("# database_url", "")


def test_an_interrupted_switch_is_finished_by_running_migrate_again(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """Killed after the store was bound to the target but before config.toml named it:
    the same command again finishes the switch and copies nothing."""
    root = _project(tmp_path)
    config = _config(root)
    kept = jcli("migrate", "--to", fresh_postgres_url, cwd=root)["kept"]
    (root / ".modelkeep" / "config.toml").write_bytes(config)  # as if killed before step 7
    Path(kept).rename(root / ".modelkeep" / "meta.sqlite")  # and before step 6
    doc = jcli("migrate", "--to", fresh_postgres_url, cwd=root)
    assert doc["finished"] and doc["kept"]
    assert fresh_postgres_url in _config(root).decode()
    assert jcli("audit", "--verify", cwd=root)["ok"]
    _gets_exact(root, tmp_path / "out")


# -- a migrate killed half-way -------------------------------------------------------------

METRIC_ROWS = 150_000


def _big_project(tmp_path: Path) -> Path:
    """A store whose copy takes a while: one run with many metric rows (a long training)."""
    root = _project(tmp_path)
    with mk.open(root) as repo, mk.start_run(name="long", repo=repo) as run:
        rows = [("loss", 1 / (i + 1), i) for i in range(METRIC_ROWS)]
        for start in range(0, METRIC_ROWS, 25_000):
            meta.log_metrics(repo.db, run.id, rows[start : start + 25_000])
    return root


def _inserted_bytes(url: str) -> int:
    """How much the target's metrics table holds on disk, uncommitted rows included: a
    copy under way shows there before it commits."""
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('metrics') IS NOT NULL").fetchone()
        if not found or not found[0]:
            return 0
        size = conn.execute("SELECT pg_relation_size('metrics')").fetchone()
        return int(size[0]) if size else 0


@pytest.mark.slow
def test_a_migrate_killed_half_way_leaves_the_source_in_use(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    root = _big_project(tmp_path)
    config, bound = _config(root), _bound(root)
    before = jcli("audit", "--verify", cwd=root)
    env = {**os.environ, "MODELKEEP_USER": "tester"}
    proc = subprocess.Popen(
        [MODELKEEP, "migrate", "--to", fresh_postgres_url, "--json"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while _inserted_bytes(fresh_postgres_url) < 64 * 1024:
            assert proc.poll() is None, "the copy ended before it could be killed"
            assert time.monotonic() < deadline, "the copy never started"
            time.sleep(0.05)
        assert proc.poll() is None, "the copy ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # The source is as it was, and in use: config, binding, records, bytes.
    assert _config(root) == config and _bound(root) == bound
    assert (root / ".modelkeep" / "meta.sqlite").is_file()
    assert jcli("audit", "--verify", cwd=root) == before
    _gets_exact(root, tmp_path / "out")
    write(root / "w.bin", b"after the kill" * 100)
    assert jcli("add", "w.bin", "--name", "fraud", cwd=root)["version"]["ref"] == "fraud:v3"
    # The target holds nothing (the transaction died with the process): try again.
    target = meta.Database(fresh_postgres_url)
    try:
        assert transfer.holdings(target).empty
    finally:
        target.close()
    doc = jcli("migrate", "--to", fresh_postgres_url, cwd=root)
    assert doc["rows"]["metrics"] == METRIC_ROWS + 10
    assert jcli("audit", "--verify", cwd=root)["ok"]


# -- database_url in config.toml -----------------------------------------------------------


def test_set_database_url_rewrites_one_line_and_keeps_the_rest(tmp_path: Path) -> None:
    from modelkeep import config
    from modelkeep.errors import BadConfigFile

    control = tmp_path / ".modelkeep"
    control.mkdir()
    path = control / "config.toml"
    text = (
        "# modelkeep repository settings\n"
        '# database_url = "postgresql+psycopg://user@host/db"  # default: meta.sqlite here\n'
        "trust_pickle = true  # mine\n"
        "\n"
        "[extra]\n"
        'database_url = "not the top-level one"\n'
    )
    path.write_text(text)
    url = 'postgresql+psycopg://db.example.com/models?application_name="mk"'
    config.set_database_url(tmp_path, url)
    assert config.load(tmp_path).database_url == url
    lines = path.read_text().splitlines()
    assert lines[3] == f"database_url = {json.dumps(url)}"  # after the settings at the top
    assert lines[:3] + lines[4:] == text.splitlines()  # every other line as it was
    config.set_database_url(tmp_path, "sqlite:////elsewhere/meta.sqlite")
    assert path.read_text().count("\ndatabase_url = ") == 2  # the new one and [extra]'s
    config.set_database_url(tmp_path, None)
    assert path.read_text() == text  # back to the file the user wrote
    path.write_text('database_url = """\npostgresql://a/b"""\n')
    with pytest.raises(BadConfigFile, match="write database_url on one line"):
        config.set_database_url(tmp_path, "sqlite:////x/meta.sqlite")
    assert path.read_text() == 'database_url = """\npostgresql://a/b"""\n'
    repo_root = tmp_path / "proj"  # and migrate refuses before it copies anything
    mk.init(repo_root).close()
    (repo_root / ".modelkeep" / "config.toml").write_text(
        'database_url = """\nsqlite:///%s"""\n' % (repo_root / ".modelkeep" / "meta.sqlite")
    )
    target = tmp_path / "new.sqlite"
    line = one_error_line(cli("migrate", "--to", f"sqlite:///{target}", cwd=repo_root))
    assert "write database_url on one line" in line and not target.exists()
    (control / "config.toml").unlink()
    config.set_database_url(tmp_path, "sqlite:////y/meta.sqlite")  # no file yet: made
    assert config.load(tmp_path).database_url == "sqlite:////y/meta.sqlite"


@pytest.mark.slow
def test_a_migrate_back_to_sqlite_killed_half_way_leaves_postgresql_in_use(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    root = _big_project(tmp_path)
    jcli("migrate", "--to", fresh_postgres_url, cwd=root)
    config, bound = _config(root), _bound(root)
    before = jcli("audit", "--verify", cwd=root)
    target = tmp_path / "back.sqlite"
    wal = Path(f"{target}-wal")
    proc = subprocess.Popen(
        [MODELKEEP, "migrate", "--to", f"sqlite:///{target}", "--json"],
        cwd=root,
        env={**os.environ, "MODELKEEP_USER": "tester"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        # uncommitted pages spill into the WAL once they outgrow SQLite's page cache
        while not wal.exists() or wal.stat().st_size < 3 << 20:
            assert proc.poll() is None, "the copy ended before it could be killed"
            assert time.monotonic() < deadline, "the copy never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _config(root) == config and _bound(root) == bound
    assert jcli("audit", "--verify", cwd=root) == before
    _gets_exact(root, tmp_path / "out")
    half = meta.Database(f"sqlite:///{target}")
    try:
        assert transfer.holdings(half).empty  # the half-written transaction is gone
    finally:
        half.close()
    doc = jcli("migrate", "--to", f"sqlite:///{target}", cwd=root)
    assert doc["rows"]["metrics"] == METRIC_ROWS + 10
    assert f'database_url = "sqlite:///{target}"' in _config(root).decode()
    assert jcli("audit", "--verify", cwd=root) == before
