"""Start-up cost, guarded without timing: what a command imports, and how init builds a schema.

A read command (`ls`, `status`, ...) must not import what only writing, syncing, packaging
or migrating needs; each is run for real in a fresh interpreter, which then lists
`sys.modules`. `init` builds a new database at HEAD without Alembic, and that schema must
be the one the migration chain builds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

import modelkeep as mk
from modelkeep.errors import ModelkeepError
from modelkeep.meta.db import HEAD, Database
from tests.conftest import ok

# Runs the real command line in this interpreter, then reports what it imported.
_WRAPPER = """
import json, sys
from modelkeep.cli.main import main
sys.argv = ["modelkeep", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""

# Needed by no read command: migrating, remotes, moving packs, model formats, adding bytes;
# and on the default SQLite file, SQLAlchemy (reads go through the standard library's sqlite3).
NEVER_ON_READ = (
    "alembic",
    "sqlalchemy",
    "fsspec",
    "numpy",
    "torch",
    "sklearn",
    "onnx",
    "safetensors",
    "modelkeep.card",
    "modelkeep.model",
    "modelkeep.sync",
    "modelkeep.remotes",
    "modelkeep.registry",
    "modelkeep.policy",
    "modelkeep.store.export",
)
# Listing rows needs neither the work tree nor the content layer above the store (`show`
# lists a version's files, so it reads content), nor the object store: chunking, compression.
NOT_FOR_LISTING = (
    "modelkeep.content",
    "modelkeep.worktree",
    "modelkeep.checkouts",
    "modelkeep.store.objects",
    "zstandard",
    "pyfastcdc",
)


def imported_by(*args: str, cwd: Path) -> set[str]:
    r = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *args],
        cwd=cwd,
        env={**os.environ, "MODELKEEP_USER": "tester"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report: dict[str, Any] = json.loads(r.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, f"modelkeep {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return set(report["modules"])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A Git work tree with one tracked version, as a user's project looks."""
    proj = tmp_path / "proj"
    proj.mkdir()
    subprocess.run(["git", "init", "-q", str(proj)], check=True)
    ok("init", cwd=proj)
    (proj / "w.bin").write_bytes(os.urandom(4096))
    ok("add", "w.bin", "--name", "m", "--type", "model", cwd=proj)
    return proj


@pytest.mark.parametrize(
    "args",
    [("ls",), ("versions", "m"), ("runs",), ("models",), ("lineage", "m")],
)
def test_listing_commands_import_only_the_metadata_and_the_store_reader(
    project: Path, args: tuple[str, ...]
) -> None:
    modules = imported_by(*args, cwd=project)
    assert "modelkeep.meta" in modules  # the command did run
    assert sorted(modules & {*NEVER_ON_READ, *NOT_FOR_LISTING}) == []


@pytest.mark.parametrize(
    ("args", "needed"),
    [
        (("show", "m"), "modelkeep.content"),  # lists the version's files
        (("status",), "modelkeep.worktree"),
    ],
)
def test_show_and_status_import_no_sync_formats_or_migrations(
    project: Path, args: tuple[str, ...], needed: str
) -> None:
    modules = imported_by(*args, cwd=project)
    assert needed in modules
    assert sorted(modules & (set(NEVER_ON_READ) - {needed})) == []


def test_init_builds_the_schema_without_alembic_or_sqlalchemy(tmp_path: Path) -> None:
    modules = imported_by("init", str(tmp_path / "new"), cwd=tmp_path)
    assert sorted(modules & {"alembic", "sqlalchemy"}) == []
    with mk.open(tmp_path / "new") as repo:
        assert repo.db.current_revision() == HEAD


def test_an_unchanged_re_add_is_a_stat_check_and_a_read(project: Path) -> None:
    """Adding the same bytes again answers "unchanged" from a read: no write transaction,
    so no SQLAlchemy; a version added with a run still links the run (a write)."""
    modules = imported_by("add", "w.bin", "--name", "m", "--type", "model", cwd=project)
    assert "sqlalchemy" not in modules
    assert "modelkeep.store.objects" in modules  # the stat check did run
    with mk.open(project) as repo:
        assert [v.number for v in repo.versions("m")] == [1]
        with mk.start_run(name="again", repo=repo, capture_code=False) as run:
            again = repo.add(project / "w.bin", "m", run_id=run.id)
        assert [v.number for v in repo.versions("m")] == [1]
        assert again.same_as is None and not again.created
        assert repo.run(run.id).outputs == ("m:v1",)


def test_the_sqlite_schema_script_is_the_one_the_models_give() -> None:
    """`init` on SQLite runs schema.sql (no SQLAlchemy); it must be what `create_all`
    would run today. Regenerate it with `python -m modelkeep.meta.schema`."""
    from modelkeep.meta.db import SQLITE_SCHEMA
    from modelkeep.meta.schema import sqlite_script

    assert SQLITE_SCHEMA.read_text() == sqlite_script()


def test_a_sqlite_database_made_without_sqlalchemy_reads_back_through_it(tmp_path: Path) -> None:
    """The identity row `init` writes with sqlite3 is the one the ORM reads: an aware UTC
    time (SQLAlchemy's text form) and a 32-digit hex id."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from modelkeep.meta.models import DatabaseIdentityRow

    db = Database(f"sqlite:///{tmp_path / 'meta.sqlite'}")
    try:
        db.create()
        with db.read() as s:
            (row,) = s.scalars(select(DatabaseIdentityRow)).all()
            assert len(row.id) == 32 and int(row.id, 16) >= 0
            assert abs(row.created_at - datetime.now(UTC)) < timedelta(minutes=5)
            assert row.created_at.tzinfo is not None
    finally:
        db.close()


def test_creating_a_database_in_a_file_that_is_not_one_fails_in_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "meta.sqlite"
    bogus.write_bytes(b"not a database at all, " * 100)
    db = Database(f"sqlite:///{bogus}")
    with pytest.raises(ModelkeepError) as caught:
        db.create()
    assert "\n" not in str(caught.value)
    assert bogus.read_bytes() == b"not a database at all, " * 100  # left as it was


def _schema(url: str) -> dict[str, Any]:
    """Every table's columns (with server defaults), keys, foreign keys and indexes."""
    engine = create_engine(url)
    try:
        found = inspect(engine)
        return {
            table: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in found.get_columns(table)
                ],
                "primary": found.get_pk_constraint(table)["constrained_columns"],
                "foreign": sorted(
                    (str(f["name"]), tuple(f["constrained_columns"]), f["referred_table"])
                    for f in found.get_foreign_keys(table)
                ),
                "indexes": sorted(
                    (
                        str(i["name"]),
                        tuple(str(c) for c in i["column_names"]),
                        bool(i["unique"]),
                        sorted(str(w) for w in i.get("dialect_options", {}).values()),
                    )
                    for i in found.get_indexes(table)
                ),
                "unique": sorted(
                    (str(u["name"]), tuple(u["column_names"]))
                    for u in found.get_unique_constraints(table)
                ),
            }
            for table in sorted(found.get_table_names())
        }
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Makes the URL of a new, empty database on either backend."""
    if request.param == "postgresql":
        made: Callable[[], str] = request.getfixturevalue("make_fresh_postgres_url")
        return made
    count = iter(range(1_000))
    return lambda: f"sqlite:///{tmp_path / f'db{next(count)}.sqlite'}"


def test_a_created_database_is_the_one_the_migrations_build(
    new_database: Callable[[], str],
) -> None:
    chained, created = Database(new_database()), Database(new_database())
    try:
        chained.migrate()  # the whole chain, from 0001
        created.create()
        assert created.current_revision() == chained.current_revision() == HEAD
        assert _schema(created.url) == _schema(chained.url)
    finally:
        chained.close()
        created.close()


def test_creating_a_database_that_has_tables_migrates_it_instead(
    new_database: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Init against a team's shared database that another machine made keeps its rows."""
    url = new_database()
    first = Database(url)
    first.migrate()
    (tmp_path / "a.bin").write_bytes(b"kept")
    monkeypatch.setenv("MODELKEEP_DATABASE_URL", url)
    try:
        with mk.init(tmp_path / "one") as one:
            one.add(tmp_path / "a.bin", "m", track=False)
        with mk.init(tmp_path / "two") as two:
            assert [v.number for v in two.versions("m")] == [1]
            assert two.db.current_revision() == HEAD
    finally:
        first.close()
