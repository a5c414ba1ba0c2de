"""Helpers shared by the benchmark scripts of this folder, which import it as `common`."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

import modelkeep as mk
from modelkeep import config
from modelkeep.meta.models import Base
from modelkeep.repo import Repo

T = TypeVar("T")
WORK = Path(__file__).resolve().parent / ".work"  # git-ignored
Arg = str | os.PathLike[str]


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def repeat(
    call: Callable[[], T], n: int, budget_s: float = math.inf, min_n: int = 1
) -> tuple[T, list[float]]:
    """n timed calls (fewer once budget_s has passed with min_n done): last result, seconds."""
    seconds: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        out = call()
        seconds.append(time.perf_counter() - t0)
        if len(seconds) >= n or (len(seconds) >= min_n and time.perf_counter() - start > budget_s):
            return out, seconds


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000


def p95_ms(seconds: Sequence[float]) -> float:
    """Nearest rank: with fewer than 20 samples this is the slowest one."""
    return sorted(seconds)[max(0, math.ceil(0.95 * len(seconds)) - 1)] * 1000


def fmt_ms(seconds: Sequence[float] | None) -> str:
    if not seconds:
        return "—"
    ms = median_ms(seconds)
    return f"{ms:,.2f}" if ms < 10 else f"{ms:,.1f}"


def md_table(head: Sequence[str], rows: Iterable[Sequence[str]], text_cols: int = 1) -> list[str]:
    """A Markdown table; the columns after the first text_cols are right-aligned."""
    align = ["---"] * text_cols + ["---:"] * (len(head) - text_cols)
    return [f"| {' | '.join(cells)} |" for cells in (head, align, *rows)]


def save(work: Path, name: str, lines: list[str], doc: dict[str, object]) -> None:
    """Print a report, and write it and doc to WORK/results/NAME-STAMP.{md,json}."""
    print("\n".join(lines))
    path = work / "results" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".md").write_text("\n".join(lines) + "\n", "utf-8")
    path.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=str), "utf-8")
    log(f"results written to {path}.{{md,json}}")


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def load_avg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(*packages: str) -> str:
    """CPUs, RAM, OS, software versions and load average (1, 5, 15 min), for a report."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    software = ", ".join(f"{p} {version(p)}" for p in ("modelkeep", "sqlalchemy", *packages))
    return (
        f"{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {ram:.1f} GiB RAM, "
        f"{platform.machine()} {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {software}; "
        f"load average {load_avg()}"
    )


def process_env() -> dict[str, str]:
    """The environment for the processes a benchmark starts (and for modelkeep in-process).

    MODELKEEP_* variables that point at another repository, run or database are dropped from
    os.environ, and Git looks for no repository above the work folder. Child processes get
    Python's bytecode cache, as an installed package has it (PYTHONDONTWRITEBYTECODE would
    make every CLI start recompile), under WORK/pycache.
    """
    for var in ("MODELKEEP_DATABASE_URL", config.RUN_ID_ENV, config.REPO_ENV):
        if os.environ.pop(var, None) is not None:
            log(f"ignoring {var} from the environment")
    # The work folder sits inside the project's Git work tree: without a ceiling, a
    # benchmark repository's `add` would track its workload in the project's modelkeep.lock.
    os.environ["GIT_CEILING_DIRECTORIES"] = str(WORK)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    return env


def run(argv: Sequence[Arg], env: dict[str, str], cwd: Path | None = None) -> str:
    """Run a command to completion: its stdout, or BenchError with the tail of its output."""
    args = [os.fspath(a) for a in argv]
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-800:]
        raise BenchError(f"`{' '.join(args)}` exited {proc.returncode}: {tail}")
    return proc.stdout


def cli_command() -> list[str]:
    """The `modelkeep` console script next to this interpreter, else `python -m modelkeep`."""
    script = Path(sys.executable).parent / "modelkeep"
    return [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-m", "modelkeep"]


def cli(root: Path, env: dict[str, str]) -> Callable[..., str]:
    """`modelkeep --repo ROOT ARGS...`, one process per call; returns its stdout."""
    return lambda *args: run([*cli_command(), "--repo", root, *args], env, cwd=root)


def peer_venv(venv: Path, requirements: Sequence[str], module: str, env: dict[str, str]) -> Path:
    """The Python of a venv holding requirements (the first pinned as name==version).

    Created on first use; reused while `module` imports and the pinned version is installed.
    """
    python = venv / "bin" / "python"
    name, pinned = requirements[0].split("==")
    probe = f"import {module}, importlib.metadata as m; print(m.version({name!r}))"

    def ready() -> bool:
        if not python.exists():
            return False
        proc = subprocess.run([python, "-c", probe], env=env, capture_output=True, text=True)
        return proc.stdout.strip() == pinned

    if not ready():
        log(f"installing {' '.join(requirements)} into {venv} (one-off) ...")
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", venv], env)
        pip: list[Arg] = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        run([*pip, "--upgrade", "pip"], env)
        run([*pip, *requirements], env)
        if not ready():
            raise BenchError(f"{module} does not import from {venv} after installing it")
    return python


def postgres_url(url: str) -> str:
    """modelkeep talks to PostgreSQL through psycopg 3: name that driver if none is given."""
    parsed = sa.engine.make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres_repo(root: Path, url: str, keep: bool = False) -> Iterator[Repo]:
    """A repository in root whose metadata lives in the PostgreSQL database at url.

    The database must not hold modelkeep's tables yet; they are dropped afterwards unless keep.
    """
    tables = {*Base.metadata.tables, "alembic_version"}
    engine = sa.create_engine(url)
    try:
        try:
            clash = tables & set(sa.inspect(engine).get_table_names())
        except sa.exc.SQLAlchemyError as exc:
            raise BenchError(f"cannot reach PostgreSQL: {str(exc).splitlines()[0]}") from exc
        if clash:
            raise BenchError(
                f"the PostgreSQL database already has modelkeep's tables {sorted(clash)}; give "
                "the URL of an empty database (its tables are dropped afterwards)"
            )
        try:
            mk.init(root).close()
            for stale in (root / config.REPO_DIR).glob("meta.sqlite*"):
                stale.unlink()
            with Repo(dataclasses.replace(config.load(root), database_url=url)) as repo:
                repo.db.migrate()
                yield repo
        finally:
            if not keep:
                Base.metadata.drop_all(engine)
                with engine.begin() as conn:
                    conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()
