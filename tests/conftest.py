"""Shared fixtures: real repositories on disk, both metadata backends, the real CLI."""

from __future__ import annotations

import compileall
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkeep as mk

pytest_plugins = ["tests.azure", "tests.gcs", "tests.pg", "tests.s3"]

MODELKEEP = str(Path(sys.executable).with_name("modelkeep"))


def pytest_configure(config: pytest.Config) -> None:
    """Compile modelkeep to bytecode once, before the tests start their CLI processes.

    Most tests run the real CLI in a new process. Where PYTHONDONTWRITEBYTECODE is set (as
    on this project's CI machines) no process caches what it compiles, so each one compiled
    the whole package again: about 0.15 s of CPU per command, over a thousand commands. The
    controller compiles before pytest-xdist starts its workers; stale files are recompiled.
    """
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(Path(mk.__file__).parent, quiet=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long tests (marked slow) first: under -n they overlap the short ones, instead of one
    worker finishing a minute-long test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELKEEP_DATABASE_URL", raising=False)
    monkeypatch.setenv("MODELKEEP_USER", "tester")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[mk.Repo]:
    """A fresh repository on the embedded default (SQLite + local store)."""
    with mk.init(tmp_path / "proj") as r:
        yield r


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_repo(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[mk.Repo]:
    """The same tests on both metadata databases; PostgreSQL is a real server."""
    if request.param == "postgresql":
        url = request.getfixturevalue("fresh_postgres_url")
        monkeypatch.setenv("MODELKEEP_DATABASE_URL", url)
    with mk.init(tmp_path / "proj") as r:
        yield r


def cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the installed `modelkeep` console script, as a user would.

    prefix goes before the command (for example, to drop root's file capabilities).
    """
    full_env = {**os.environ, "MODELKEEP_USER": "tester", **(env or {})}
    return subprocess.run(
        [*prefix, MODELKEEP, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ok(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command that must succeed."""
    r = cli(*args, cwd=cwd)
    assert r.returncode == 0, f"modelkeep {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def jcli(*args: str, cwd: Path) -> Any:
    """Run a command with --json: exit 0, nothing on stderr, one JSON document on stdout."""
    r = ok(*args, "--json", cwd=cwd)
    assert r.stderr == "", r.stderr
    return json.loads(r.stdout)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def isolate_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Git without the machine's user or system config, blind to repositories above
    tmp_path (this project's own checkout among them), with a fixed author."""
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Tester")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "tester@example.com")


@pytest.fixture
def outside_this_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in tmp_path, an empty folder, never this project's Git tree (runs capture the
    code of the working directory; a command a crafted file ran would write there)."""
    isolate_git(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def run_env(outside_this_checkout: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No run inherited from the environment, and none left active for the next test."""
    monkeypatch.delenv("MODELKEEP_RUN_ID", raising=False)
    monkeypatch.delenv("MODELKEEP_REPO", raising=False)
    yield
    while (left := mk.current_run()) is not None:
        left.end()


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any]:
    """scikit-learn's bundled breast-cancer data as (DataFrame, Series): real features."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return x, y


def git(cwd: Path, *args: str) -> str:
    """Run git; its stderr in the failure message when it fails."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    """The one `modelkeep: error:` line of a command that failed with exit 1."""
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("modelkeep: error: ")
    return lines[0]


def git_work_tree(top: Path) -> Path:
    """A new Git work tree at top with one commit of code (train.py)."""
    top.mkdir()
    git(top, "init", "-q", "-b", "main")
    git(top, "config", "user.name", "Tester")
    git(top, "config", "user.email", "tester@example.com")
    write(top / "train.py", b"print('train')\n")
    git(top, "add", "train.py")
    git(top, "commit", "-q", "-m", "code")
    return top


def downgrade(url: str, revision: str) -> None:
    """Take a metadata database back to an older schema revision, as an old release left it."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from modelkeep.meta.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
            conn.commit()
    finally:
        engine.dispose()
