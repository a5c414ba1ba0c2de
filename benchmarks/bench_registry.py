#!/usr/bin/env python3
"""Model registry benchmark: modelkeep vs MLflow's Model Registry, side by side.

Both tools do the same registry work in the same run, on the same machine, each on its own
SQLite database file:

* per operation, on a fresh model ``m``: register a version, promote it to staging and then
  to production (the previous production version is archived), point a free alias at it,
  resolve ``m@production``; each ``--repeat`` times (default 200);
* listings: the versions of a model with 1,000 versions and of a model with ``--versions``
  versions (default 10,000), and the registered models;
* at scale: resolving ``big@production`` on the model with ``--versions`` versions; the
  registrations that grow it (one register call per version, each timed) are reported too.

modelkeep runs in-process through its Python API (``repo.register``, ``repo.promote``,
``repo.set_alias``, ``repo.show``, ``repo.versions``, ``repo.models``; every change appends its
hash-chained audit event, as the product always does), and end to end through its CLI (one
process per command, start-up included). MLflow (``mlflow-skinny``, installed by this script
into its own venv) is driven by a small worker program run with that venv's interpreter, on
``MlflowClient(tracking_uri="sqlite:///...", registry_uri="sqlite:///...")``; it answers each
step with its timings as JSON.

Timings on a shared VM drift by tens of percent within minutes (other work, fsync latency),
so the tools take turns: every operation runs in blocks (e.g. 20 calls of modelkeep, then 20
of MLflow, with the order swapped each block) and both see the same conditions.

The script prints two Markdown tables: API operations with the MLflow/modelkeep ratio and
the "2x faster" target, and CLI commands with the 0.3 s target.

Run ``python benchmarks/bench_registry.py --help`` for the options; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import functools
import importlib.metadata
import io
import json
import math
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

import modelkeep as mk
from modelkeep import config
from modelkeep.meta.models import Base
from modelkeep.repo import Repo

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_WORK = BENCH_DIR / ".work"
MLFLOW_VERSION = "3.17.2"
MLFLOW_REQUIREMENTS = (f"mlflow-skinny=={MLFLOW_VERSION}", "sqlalchemy", "alembic")
DEFAULT_VERSIONS = 10_000
DEFAULT_REPEAT = 200
DEFAULT_LIST_REPEAT = 20
DEFAULT_CLI_REPEAT = 20
LIST_VERSIONS = 1_000
OP_BLOCK = 20  # calls per turn for per-operation steps
BUILD_BLOCK = 250  # registrations per turn while growing the listing models
MIN_SAMPLES = 5
OP_BUDGET_S = 30.0  # per tool: a listing stops repeating after this long, once it has MIN_SAMPLES
CMD_TIMEOUT_S = 3600
TARGET_RATIO = 2.0
CLI_TARGET_S = 0.3
# MLflow figures quoted in the issue, measured on this machine earlier (SQLite store).
ISSUE_MLFLOW_MS = {"register": 4.7, "resolve": 2.0, "list_1k": 56.0}

T = TypeVar("T")
Samples = dict[str, list[float]]


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_avg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def p95_ms(samples: Sequence[float]) -> float:
    """Nearest rank: with fewer than 20 samples this is the slowest one."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] * 1000


def timed(samples: Samples, key: str, call: Callable[[], T]) -> T:
    t0 = time.perf_counter()
    out = call()
    samples.setdefault(key, []).append(time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------------------
# The work, and the schedule both tools follow
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    repeat: int  # timed calls per write operation and per resolve
    list_repeat: int  # timed calls per listing (fewer once OP_BUDGET_S is spent)
    list_versions: int  # versions of model m1k
    big_versions: int  # versions of model big (modelkeep)
    mlflow_big_versions: int  # versions of model big (MLflow)


@dataclass(frozen=True)
class Step:
    op: str
    total: int  # calls per tool
    block: int  # calls per turn
    read: bool = False  # one untimed warm-up call before the first block
    budget: bool = False  # may stop early (listings), past OP_BUDGET_S per tool


def schedule(plan: Plan) -> list[Step]:
    big = max(plan.big_versions, plan.mlflow_big_versions)
    return [
        Step("setup", 1, 1),
        Step("register", plan.repeat, OP_BLOCK),
        Step("promote", plan.repeat, OP_BLOCK),
        Step("stage_transition", plan.repeat, OP_BLOCK),
        Step("set_alias", plan.repeat, OP_BLOCK),
        Step("resolve", plan.repeat, OP_BLOCK, read=True),
        Step("build_1k", plan.list_versions, BUILD_BLOCK),
        Step("list_1k", plan.list_repeat, 1, read=True, budget=True),
        Step("build_big", big, 2 * BUILD_BLOCK),
        Step("big_ready", 1, 1),
        Step("resolve_big", plan.repeat, OP_BLOCK, read=True),
        Step("list_big", plan.list_repeat, 1, read=True, budget=True),
        Step("models", plan.list_repeat, 1, read=True, budget=True),
    ]


class Participant(Protocol):
    label: str

    def step(self, op: str, n: int, warmup: bool) -> Samples: ...


class MkWork:
    """The schedule's steps, done by modelkeep in-process through its Python API."""

    def __init__(self, label: str, repo: Repo, sources: tuple[str, str], plan: Plan) -> None:
        self.label = label
        self.repo = repo
        self.sources = sources  # two versions of different content, registered alternately
        self.plan = plan
        self.next_source = 0
        self.m_latest = 0  # newest version number of m
        self.registered: list[str] = []  # the versions of m registered by timed calls
        self.pending: deque[str] = deque()  # ... and not promoted yet
        self.alias_i = 0
        self.production = ""  # m@production
        self.counts = {"m1k": 0, "big": 0}

    def step(self, op: str, n: int, warmup: bool) -> Samples:
        s: Samples = {}
        getattr(self, f"_{op}")(s, n, warmup)
        return s

    def source_for_m(self) -> str:
        """The source whose content differs from m's newest version (so a new version)."""
        src = self.sources[self.next_source]
        self.next_source ^= 1
        return src

    def _read(
        self,
        s: Samples,
        key: str,
        call: Callable[[], T],
        n: int,
        warmup: bool,
        check: Callable[[T], None],
    ) -> None:
        if warmup:
            check(call())
        for _ in range(n):
            check(timed(s, key, call))

    def _setup(self, s: Samples, n: int, warmup: bool) -> None:
        repo = self.repo
        first = repo.register(self.source_for_m(), "m")
        self.m_latest = first.number
        repo.promote(first.ref, "staging")
        repo.promote(first.ref, "production")
        repo.set_alias("m@champion", first.ref)
        repo.show("m@production")
        self.production = first.ref

    def _register(self, s: Samples, n: int, warmup: bool) -> None:
        for _ in range(n):
            src = self.source_for_m()
            v = timed(s, "register", functools.partial(self.repo.register, src, "m"))
            self.m_latest += 1
            expect(v.number, self.m_latest, f"register {src} as m")
            self.registered.append(v.ref)
            self.pending.append(v.ref)

    def _promote(self, s: Samples, n: int, warmup: bool) -> None:
        for _ in range(n):
            ref = self.pending.popleft()
            timed(s, "promote_staging", functools.partial(self.repo.promote, ref, "staging"))
            p = timed(
                s, "promote_production", functools.partial(self.repo.promote, ref, "production")
            )
            expect(p.displaced.ref if p.displaced else None, self.production, f"{ref} displaced")
            self.production = ref

    def _stage_transition(self, s: Samples, n: int, warmup: bool) -> None:
        """MLflow's legacy stages; modelkeep's promotions above are compared with them."""

    def _set_alias(self, s: Samples, n: int, warmup: bool) -> None:
        for _ in range(n):
            ref = self.registered[self.alias_i % len(self.registered)]
            self.alias_i += 1
            v = timed(s, "set_alias", functools.partial(self.repo.set_alias, "m@champion", ref))
            expect(v.ref, ref, "m@champion")

    def _resolve(self, s: Samples, n: int, warmup: bool) -> None:
        def check(v: mk.Version) -> None:
            expect(v.ref, self.production, "m@production")

        self._read(
            s, "resolve", functools.partial(self.repo.show, "m@production"), n, warmup, check
        )

    def _build(self, s: Samples, name: str, n: int, target: int) -> None:
        for _ in range(min(n, target - self.counts[name])):
            i = self.counts[name]
            v = timed(
                s,
                f"build_{'1k' if name == 'm1k' else name}",
                functools.partial(self.repo.register, self.sources[i % 2], name),
            )
            self.counts[name] += 1
            expect(v.number, i + 1, f"register {self.sources[i % 2]} as {name}")

    def _build_1k(self, s: Samples, n: int, warmup: bool) -> None:
        self._build(s, "m1k", n, self.plan.list_versions)

    def _build_big(self, s: Samples, n: int, warmup: bool) -> None:
        self._build(s, "big", n, self.plan.big_versions)

    def _big_ready(self, s: Samples, n: int, warmup: bool) -> None:
        top = f"big:v{self.counts['big']}"
        self.repo.promote(top, "staging")
        self.repo.promote(top, "production")

    def _list_1k(self, s: Samples, n: int, warmup: bool) -> None:
        check = expect_len(self.plan.list_versions, "versions of m1k")
        self._read(s, "list_1k", functools.partial(self.repo.versions, "m1k"), n, warmup, check)

    def _resolve_big(self, s: Samples, n: int, warmup: bool) -> None:
        top = f"big:v{self.counts['big']}"

        def check(v: mk.Version) -> None:
            expect(v.ref, top, "big@production")

        call = functools.partial(self.repo.show, "big@production")
        self._read(s, "resolve_big", call, n, warmup, check)

    def _list_big(self, s: Samples, n: int, warmup: bool) -> None:
        check = expect_len(self.counts["big"], "versions of big")
        self._read(s, "list_big", functools.partial(self.repo.versions, "big"), n, warmup, check)

    def _models(self, s: Samples, n: int, warmup: bool) -> None:
        self._read(s, "models", self.repo.models, n, warmup, expect_len(3, "registered models"))


def expect(got: object, want: object, what: str) -> None:
    if got != want:
        raise BenchError(f"{what}: expected {want!r}, got {got!r}")


def expect_len(n: int, what: str) -> Callable[[Sequence[Any]], None]:
    def check(found: Sequence[Any]) -> None:
        expect(len(found), n, what)

    return check


def make_sources(repo: Repo, folder: Path) -> tuple[str, str]:
    """Two small files of different content, added as versions of ``weights``."""
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for i in range(2):
        path = folder / "model.bin"
        path.write_bytes(bytes([i]) * 4096)
        refs.append(repo.add(path, "weights", type="model", track=False).version.ref)
    return refs[0], refs[1]


def run_schedule(
    parts: list[Participant], plan: Plan, results: dict[str, Samples], problems: list[str]
) -> None:
    """Every step, the participants taking turns block by block (order swapped each block).

    modelkeep failing stops the run; MLflow failing drops it, with the failure listed under
    Problems, and the run goes on without it.
    """
    for step in schedule(plan):
        log(f"{step.op} ({step.total:,} per tool; load {load_avg()})")
        done = 0
        turn = 0
        start = time.perf_counter()
        while done < step.total and parts:
            n = min(step.block, step.total - done)
            order = parts[turn % len(parts) :] + parts[: turn % len(parts)]
            for p in order:
                try:
                    got = p.step(step.op, n, step.read and turn == 0)
                except BenchError as exc:
                    if isinstance(p, MkWork):
                        raise
                    problems.append(f"{p.label} failed at {step.op}, dropped: {exc}")
                    log(problems[-1])
                    parts.remove(p)
                    continue
                for key, values in got.items():
                    results[p.label].setdefault(key, []).extend(values)
            done += n
            turn += 1
            if step.op.startswith("build") and done % 2000 < step.block and done >= 2000:
                log(f"{step.op}: {done:,} versions")
            elapsed = time.perf_counter() - start
            if step.budget and done >= MIN_SAMPLES and elapsed > OP_BUDGET_S * len(parts):
                break


# --------------------------------------------------------------------------------------
# MLflow, in its own venv
# --------------------------------------------------------------------------------------

# Run with the MLflow venv's interpreter. `PROGRAM worker CONFIG.json` reads one JSON step per
# line on stdin ({"op": ..., "n": ..., "warmup": ...}) and answers one JSON line of timings
# (seconds) per step, the same steps as MkWork; `PROGRAM oneshot DB OP SOURCE` does one call,
# for timing a whole process from outside. Progress and MLflow's own messages go to stderr.
MLFLOW_PROGRAM = r'''
import collections
import json
import logging
import sys
import time
import warnings

warnings.simplefilter("ignore")
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402


def client_for(db):
    uri = "sqlite:///" + db
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def search_all(client, name):
    """Every version of a model, page by page (a page holds at most max_results)."""
    found, token = [], None
    while True:
        page = client.search_model_versions(
            filter_string=f"name='{name}'", max_results=10000, page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            return found


class Failed(Exception):
    pass


def expect(got, want, what):
    if got != want:
        raise Failed(f"{what}: expected {want!r}, got {got!r}")


class Work:
    def __init__(self, cfg):
        self.client = client_for(cfg["db"])
        self.client.search_registered_models()  # creates the schema, outside every step
        self.source = cfg["source"]
        self.list_versions = cfg["list_versions"]
        self.big = cfg["big_versions"]
        self.numbers = []
        self.pending = collections.deque()
        self.stage_i = 0
        self.alias_i = 0
        self.production = None
        self.counts = {"m1k": 0, "big": 0}
        self.legacy = True
        self.notes = []

    def timed(self, s, key, fn, *args, **kw):
        t = time.perf_counter()
        out = fn(*args, **kw)
        s.setdefault(key, []).append(time.perf_counter() - t)
        return out

    def read(self, s, key, fn, n, warmup, check):
        if warmup:
            check(fn())
        for _ in range(n):
            check(self.timed(s, key, fn))

    def setup(self, s, n, warmup):
        c = self.client
        for name in ("m", "m1k", "big"):
            c.create_registered_model(name)
        first = int(c.create_model_version("m", self.source, run_id=None).version)
        for alias in ("staging", "production", "champion"):
            c.set_registered_model_alias("m", alias, first)
        c.get_model_version_by_alias("m", "production")
        self.production = first
        try:
            c.transition_model_version_stage("m", str(first), "Staging")
            c.transition_model_version_stage(
                "m", str(first), "Production", archive_existing_versions=True
            )
        except Exception as exc:  # removed or refused in this MLflow version
            self.legacy = False
            self.notes.append(f"transition_model_version_stage unavailable: {exc}")

    def register(self, s, n, warmup):
        for _ in range(n):
            mv = self.timed(s, "register", self.client.create_model_version, "m", self.source,
                            run_id=None)
            self.numbers.append(int(mv.version))
            self.pending.append(int(mv.version))
        expect(self.numbers[-1], len(self.numbers) + 1, "newest version of m")

    def promote(self, s, n, warmup):
        c = self.client
        for _ in range(n):
            v = self.pending.popleft()
            self.timed(s, "promote_staging", c.set_registered_model_alias, "m", "staging", v)
            self.timed(s, "promote_production", c.set_registered_model_alias, "m", "production", v)
            self.production = v

    def stage_transition(self, s, n, warmup):
        if not self.legacy:
            return
        c = self.client
        for _ in range(n):
            v = str(self.numbers[self.stage_i % len(self.numbers)])
            self.stage_i += 1
            self.timed(s, "stage_staging", c.transition_model_version_stage, "m", v, "Staging")
            self.timed(s, "stage_production", c.transition_model_version_stage, "m", v,
                       "Production", archive_existing_versions=True)

    def set_alias(self, s, n, warmup):
        for _ in range(n):
            v = self.numbers[self.alias_i % len(self.numbers)]
            self.alias_i += 1
            self.timed(s, "set_alias", self.client.set_registered_model_alias, "m", "champion", v)

    def resolve(self, s, n, warmup):
        def check(mv):
            expect(int(mv.version), self.production, "m@production")

        fn = lambda: self.client.get_model_version_by_alias("m", "production")  # noqa: E731
        self.read(s, "resolve", fn, n, warmup, check)

    def build(self, s, name, key, n, target):
        for _ in range(min(n, target - self.counts[name])):
            mv = self.timed(s, key, self.client.create_model_version, name, self.source,
                            run_id=None)
            self.counts[name] += 1
            expect(int(mv.version), self.counts[name], f"create_model_version({name})")

    def build_1k(self, s, n, warmup):
        self.build(s, "m1k", "build_1k", n, self.list_versions)

    def build_big(self, s, n, warmup):
        self.build(s, "big", "build_big", n, self.big)

    def big_ready(self, s, n, warmup):
        self.client.set_registered_model_alias("big", "production", self.counts["big"])

    def list_1k(self, s, n, warmup):
        def check(found):
            expect(len(found), self.list_versions, "versions of m1k")

        self.read(s, "list_1k", lambda: search_all(self.client, "m1k"), n, warmup, check)

    def resolve_big(self, s, n, warmup):
        def check(mv):
            expect(int(mv.version), self.counts["big"], "big@production")

        fn = lambda: self.client.get_model_version_by_alias("big", "production")  # noqa: E731
        self.read(s, "resolve_big", fn, n, warmup, check)

    def list_big(self, s, n, warmup):
        def check(found):
            expect(len(found), self.counts["big"], "versions of big")

        self.read(s, "list_big", lambda: search_all(self.client, "big"), n, warmup, check)

    def models(self, s, n, warmup):
        def check(found):
            expect(len(found), 3, "registered models")

        self.read(s, "models", self.client.search_registered_models, n, warmup, check)

    def finish(self, s, n, warmup):
        return {"mlflow": mlflow.__version__, "notes": self.notes}


def worker(cfg_path):
    with open(cfg_path) as f:
        work = Work(json.load(f))
    print(json.dumps({"ready": mlflow.__version__}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        s = {}
        try:
            extra = getattr(work, cmd["op"])(s, cmd["n"], cmd["warmup"])
            reply = {"samples": s, **(extra or {})}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


def oneshot(db, op, source):
    client = client_for(db)
    if op == "register":
        client.create_model_version("m", source, run_id=None)
    elif op == "promote":
        client.set_registered_model_alias("m", "production", 2)
    elif op == "resolve":
        client.get_model_version_by_alias("m", "production")
    elif op == "list_1k":
        print(len(search_all(client, "m1k")))
    else:
        raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    if sys.argv[1] == "oneshot":
        oneshot(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        worker(sys.argv[2])
'''


def run_cmd(argv: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-800:]
        raise BenchError(f"`{' '.join(argv)}` exited {proc.returncode}: {tail}")
    return proc.stdout


class Mlflow:
    """MLflow in its own venv (created once, reused while it holds the pinned version)."""

    def __init__(self, venv: Path, run_dir: Path) -> None:
        self.venv = venv
        self.python = venv / "bin" / "python"
        self.program = run_dir / "mlflow_registry_bench.py"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MODELKEEP_"))
        }
        self.env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")

    def installed_version(self) -> str | None:
        if not self.python.exists():
            return None
        check = (
            "import mlflow, mlflow.store.model_registry.sqlalchemy_store; print(mlflow.__version__)"
        )
        proc = subprocess.run(
            [str(self.python), "-c", check],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.strip() if proc.returncode == 0 else None

    def ensure_installed(self) -> None:
        if self.installed_version() == MLFLOW_VERSION:
            return
        log(f"installing {' '.join(MLFLOW_REQUIREMENTS)} into {self.venv} (one-off) ...")
        shutil.rmtree(self.venv, ignore_errors=True)
        run_cmd([sys.executable, "-m", "venv", str(self.venv)], self.env)
        pip = [str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        run_cmd([*pip, "--upgrade", "pip"], self.env)
        run_cmd([*pip, *MLFLOW_REQUIREMENTS], self.env)
        if self.installed_version() is None:
            raise BenchError(f"MLflow does not import from {self.venv} after installing it")

    def packages(self) -> str:
        out = run_cmd([str(self.python), "-m", "pip", "list", "--format=json"], self.env)
        wanted = {"mlflow-skinny", "sqlalchemy", "alembic"}
        found = [
            f"{p['name']} {p['version']}" for p in json.loads(out) if p["name"].lower() in wanted
        ]
        return ", ".join(sorted(found))

    def worker(self, plan: Plan, db: Path, source: Path) -> MlflowWorker:
        self.program.write_text(MLFLOW_PROGRAM, "utf-8")
        cfg_path = self.program.with_name("mlflow_config.json")
        cfg = {
            "db": str(db),
            "source": str(source),
            "list_versions": plan.list_versions,
            "big_versions": plan.mlflow_big_versions,
        }
        cfg_path.write_text(json.dumps(cfg), "utf-8")
        argv = [str(self.python), str(self.program), "worker", str(cfg_path)]
        return MlflowWorker(argv, self.env)

    def oneshot(self, db: Path, source: Path, repeat: int) -> Samples:
        """A whole process per call (start-up, import, client), as a script or CI step pays."""
        s: Samples = {}
        for op in ("register", "promote", "resolve", "list_1k"):
            argv = [str(self.python), str(self.program), "oneshot", str(db), op, str(source)]
            run_cmd(argv, self.env)  # warm-up
            for _ in range(repeat):
                t0 = time.perf_counter()
                run_cmd(argv, self.env)
                s.setdefault(op, []).append(time.perf_counter() - t0)
        return s


class MlflowWorker:
    """The MLflow program as a participant: one JSON line per step, each way."""

    label = "mlflow"

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.version = str(self._reply()["ready"])
        self.notes: list[str] = []

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(
                f"the MLflow worker exited ({self.proc.wait()}); its messages are above"
            )
        doc: dict[str, Any] = json.loads(line)
        if doc.get("error"):
            raise BenchError(f"MLflow: {doc['error']}")
        return doc

    def send(self, op: str, n: int, warmup: bool) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "n": n, "warmup": warmup}) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def step(self, op: str, n: int, warmup: bool) -> Samples:
        got = self.send(op, n, warmup)["samples"]
        return {str(k): [float(x) for x in v] for k, v in got.items()}

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BenchError):
                self.notes = [str(n) for n in self.send("finish", 0, False).get("notes", [])]
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


# --------------------------------------------------------------------------------------
# modelkeep's CLI, end to end
# --------------------------------------------------------------------------------------


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "modelkeep"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "modelkeep"]


CLI_ROWS = (
    ("register", "`modelkeep register weights:vN --as m`", "register"),
    ("promote_staging", "`modelkeep promote m:vN staging`", None),
    ("promote_production", "`modelkeep promote m:vN production`", "promote"),
    ("set_alias", "`modelkeep alias set m@champion m:vN`", None),
    ("show", "`modelkeep show m@production`", "resolve"),
    ("versions_1k", "`modelkeep versions m1k` (1,000 versions)", "list_1k"),
    ("versions_big", "`modelkeep versions big` (BIG versions)", None),
)


def bench_cli(work: MkWork, env: dict[str, str], repeat: int) -> Samples:
    """One process per command, timed from spawn to exit; one untimed warm-up each."""
    log(f"{work.label}: CLI, {repeat} calls per command (load {load_avg()})")
    root = work.repo.root
    base = [*cli_command(), "--repo", str(root)]
    s: Samples = {}

    def call(key: str | None, *args: str) -> str:
        t0 = time.perf_counter()
        out = run_cmd([*base, *args], env, cwd=root)
        if key is not None:
            s.setdefault(key, []).append(time.perf_counter() - t0)
        return out

    refs = []
    for i in range(repeat + 1):  # the first call of each command is the warm-up
        work.m_latest += 1
        ref = f"m:v{work.m_latest}"
        out = call("register" if i else None, "register", work.source_for_m(), "--as", "m")
        if not out.startswith(f"registered {ref} "):
            raise BenchError(f"`modelkeep register` printed {out.strip()!r}, expected {ref}")
        refs.append(ref)
    for i, ref in enumerate(refs):
        call("promote_staging" if i else None, "promote", ref, "staging")
        call("promote_production" if i else None, "promote", ref, "production")
    for i, ref in enumerate(refs):
        call("set_alias" if i else None, "alias", "set", "m@champion", ref)
    for i in range(repeat + 1):
        out = call("show" if i else None, "show", "m@production")
        if not out.startswith(f"{refs[-1]} "):
            raise BenchError(f"`modelkeep show m@production` does not name {refs[-1]}: {out!r}")
    for key, name, count in (
        ("versions_1k", "m1k", repeat),
        ("versions_big", "big", min(repeat, work.plan.list_repeat)),
    ):
        start = time.perf_counter()
        for i in range(count + 1):
            out = call(key if i else None, "versions", name)
            if i == 0 and f"v{work.counts[name]} " not in out:
                raise BenchError(f"`modelkeep versions {name}` does not list v{work.counts[name]}")
            if i >= MIN_SAMPLES and time.perf_counter() - start > OP_BUDGET_S:
                break
    return s


# --------------------------------------------------------------------------------------
# PostgreSQL (optional, modelkeep only)
# --------------------------------------------------------------------------------------


def postgres_url(url: str) -> str:
    """modelkeep talks to PostgreSQL through psycopg 3: name that driver if none is given."""
    parsed = sa.engine.make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def check_empty_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names())
    except sa.exc.SQLAlchemyError as exc:
        raise BenchError(f"cannot reach PostgreSQL: {str(exc).splitlines()[0]}") from exc
    finally:
        engine.dispose()
    clash = names & {*Base.metadata.tables, "alembic_version"}
    if clash:
        raise BenchError(
            f"the PostgreSQL database already has modelkeep's tables ({', '.join(sorted(clash))});"
            " give the URL of an empty database: this benchmark fills it and drops those tables"
            " afterwards"
        )


def drop_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def open_postgres_repo(root: Path, url: str) -> Repo:
    """A repository folder whose metadata lives in PostgreSQL (as `database_url` would)."""
    mk.init(root).close()
    for stale in (root / config.REPO_DIR).glob("meta.sqlite*"):
        stale.unlink()
    repo = Repo(dataclasses.replace(config.load(root), database_url=url))
    repo.db.migrate()
    return repo


# --------------------------------------------------------------------------------------
# Profiling (--profile)
# --------------------------------------------------------------------------------------


def profile_ops(work: MkWork, out_dir: Path, stamp: str) -> list[Path]:
    """cProfile of each in-process operation: fresh calls on the same repository."""
    repo = work.repo
    n = max(10, min(work.plan.repeat, 50))
    profiles: dict[str, tuple[cProfile.Profile, int]] = {}

    def run(name: str, call: Callable[[], T]) -> T:
        prof, count = profiles.get(name) or (cProfile.Profile(), 0)
        profiles[name] = (prof, count + 1)
        return prof.runcall(call)

    champion = [f"m:v{work.m_latest}", f"m:v{work.m_latest - 1}"]  # m@champion is the first
    for _ in range(n):
        v = run("register", functools.partial(repo.register, work.source_for_m(), "m"))
        work.m_latest = v.number
        run("promote_staging", functools.partial(repo.promote, v.ref, "staging"))
        run("promote_production", functools.partial(repo.promote, v.ref, "production"))
        champion.reverse()  # alternate between two versions, so that every call moves it
        run("set_alias", functools.partial(repo.set_alias, "m@champion", champion[0]))
        run("resolve", functools.partial(repo.show, "m@production"))
    for _ in range(3):
        run("list_1k", functools.partial(repo.versions, "m1k"))
        run("list_big", functools.partial(repo.versions, "big"))
        run("models", repo.models)
    written = []
    for name, (prof, count) in profiles.items():
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        buf.write(f"# {name}: {count} calls ({work.label})\n\n## by cumulative time\n")
        stats.sort_stats("cumulative").print_stats(45)
        buf.write("\n## by own time\n")
        stats.sort_stats("tottime").print_stats(25)
        path = out_dir / f"registry-{stamp}-profile-{work.label}-{name}.txt"
        path.write_text(buf.getvalue(), "utf-8")
        written.append(path)
    return written


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowSpec:
    label: str
    mk_key: str
    ml_key: str
    mk_call: str
    ml_call: str
    target: bool = True


def row_specs(plan: Plan) -> list[RowSpec]:
    big = f"{plan.big_versions:,}"
    if plan.mlflow_big_versions != plan.big_versions:
        big += f" (MLflow {plan.mlflow_big_versions:,})"
    return [
        RowSpec(
            "register a version",
            "register",
            "register",
            '`repo.register("weights:vN", "m")`',
            '`create_model_version("m", LOCAL_PATH, run_id=None)`',
        ),
        RowSpec(
            "promote to staging",
            "promote_staging",
            "promote_staging",
            '`repo.promote("m:vN", "staging")`',
            '`set_registered_model_alias("m", "staging", N)`',
        ),
        RowSpec(
            "promote to production (previous one archived)",
            "promote_production",
            "promote_production",
            '`repo.promote("m:vN", "production")`',
            '`set_registered_model_alias("m", "production", N)`',
        ),
        RowSpec(
            "promote to staging, vs legacy stage transition",
            "promote_staging",
            "stage_staging",
            "the same samples as above",
            '`transition_model_version_stage("m", N, "Staging")`',
        ),
        RowSpec(
            "promote to production, vs legacy stage transition",
            "promote_production",
            "stage_production",
            "the same samples as above",
            '`transition_model_version_stage("m", N, "Production", '
            "archive_existing_versions=True)`",
        ),
        RowSpec(
            "set a free alias",
            "set_alias",
            "set_alias",
            '`repo.set_alias("m@champion", "m:vN")`',
            '`set_registered_model_alias("m", "champion", N)`',
        ),
        RowSpec(
            "resolve m@production",
            "resolve",
            "resolve",
            '`repo.show("m@production")`',
            '`get_model_version_by_alias("m", "production")`',
        ),
        RowSpec(
            f"list {plan.list_versions:,} versions",
            "list_1k",
            "list_1k",
            '`repo.versions("m1k")`',
            "`search_model_versions(filter_string=\"name='m1k'\")`",
        ),
        RowSpec(
            f"register, growing a model to {big} versions",
            "build_big",
            "build_big",
            "`repo.register` in a loop, the two sources alternating",
            "`create_model_version` in a loop",
        ),
        RowSpec(
            f"resolve big@production, {big} versions",
            "resolve_big",
            "resolve_big",
            '`repo.show("big@production")`',
            '`get_model_version_by_alias("big", "production")`',
        ),
        RowSpec(
            f"list {big} versions",
            "list_big",
            "list_big",
            '`repo.versions("big")`',
            "`search_model_versions(filter_string=\"name='big'\")`, every page",
        ),
        RowSpec(
            "list the 3 registered models",
            "models",
            "models",
            "`repo.models()`",
            "`search_registered_models()`",
            target=False,
        ),
    ]


def fmt_ms(samples: Sequence[float] | None) -> str:
    if not samples:
        return "—"
    ms = median_ms(samples)
    return f"{ms:,.2f}" if ms < 10 else f"{ms:,.1f}"


def api_table(
    plan: Plan, results: dict[str, Samples], mk_labels: list[str], ml_status: str
) -> list[str]:
    primary, extra = mk_labels[0], mk_labels[1:]
    ml = results.get("mlflow")
    head = ["operation", "n", "modelkeep ms"]
    head += [f"{label} ms" for label in extra]
    head += ["MLflow ms", "MLflow / modelkeep", f"≥ {TARGET_RATIO:g}× faster?"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * 2 + " ---: |" * (len(head) - 2)]
    for spec in row_specs(plan):
        mk_s = results[primary].get(spec.mk_key)
        ml_s = ml.get(spec.ml_key) if ml is not None else None
        n = f"{len(mk_s) if mk_s else 0}/{len(ml_s) if ml_s else 0}"
        cells = [spec.label, n, fmt_ms(mk_s)]
        cells += [fmt_ms(results[label].get(spec.mk_key)) for label in extra]
        if ml is None:
            cells += [ml_status, "—", "—"]
        elif not mk_s or not ml_s:
            cells += [fmt_ms(ml_s), "—", "—"]
        else:
            ratio = statistics.median(ml_s) / statistics.median(mk_s)
            met = ("yes" if ratio >= TARGET_RATIO else "**NO**") if spec.target else "(info)"
            cells += [fmt_ms(ml_s), f"{ratio:.2f}", met]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cli_table(plan: Plan, cli: dict[str, Samples], oneshot: Samples | None) -> list[str]:
    head = ["command", "db", "n", "median ms", "p95 ms", f"< {CLI_TARGET_S * 1000:.0f} ms?"]
    if oneshot:
        head.append("MLflow, one process per call, median ms")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * 2 + " ---: |" * (len(head) - 2)]
    for label, samples in cli.items():
        db = label.removeprefix("modelkeep").strip(" ()") or "sqlite"
        for key, text, ml_key in CLI_ROWS:
            s = samples.get(key)
            if not s:
                continue
            text = text.replace("BIG", f"{plan.big_versions:,}")
            met = "yes" if statistics.median(s) < CLI_TARGET_S else "**NO**"
            cells = [text, db, str(len(s)), fmt_ms(s), f"{p95_ms(s):,.1f}", met]
            if oneshot:
                cells.append(fmt_ms(oneshot.get(ml_key)) if ml_key else "—")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def versions_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@dataclass
class Outcome:
    plan: Plan
    mk_labels: list[str]
    results: dict[str, Samples] = field(default_factory=dict)
    cli: dict[str, Samples] = field(default_factory=dict)
    oneshot: Samples = field(default_factory=dict)
    mlflow: str = ""  # "MLflow 3.x (packages)" when it ran
    ml_status: str = "not run"
    ml_notes: list[str] = field(default_factory=list)
    loads: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    m_versions: int = 0


def report(o: Outcome, total_s: float) -> str:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    plan = o.plan
    ml = o.results.get("mlflow")
    lines = [
        "## modelkeep registry benchmark: modelkeep vs MLflow Model Registry",
        "",
        f"* machine: {os.cpu_count()} CPUs (usable: {affinity or '?'}), {platform.machine()}, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"* modelkeep {versions_of('modelkeep')} (SQLAlchemy {versions_of('sqlalchemy')}, "
        f"SQLite {sqlite3.sqlite_version}), in-process API and `{Path(cli_command()[0]).name}` "
        "CLI; every change writes its hash-chained audit event",
        f"* MLflow: {o.mlflow or o.ml_status}",
        "* one SQLite file per tool, each as shipped: modelkeep WAL + synchronous=FULL, MLflow "
        "SQLite's defaults (rollback journal, synchronous=FULL): both fsync every commit",
        "* the tools take turns: each operation runs in blocks (20 calls per write or resolve "
        f"block, {BUILD_BLOCK}-{2 * BUILD_BLOCK} registrations per build block, one call per "
        "listing block), the order swapped every block, so both see the same machine",
        "* load average (1, 5, 15 min) at each phase: "
        + "; ".join(f"{phase} {avg}" for phase, avg in o.loads),
        "",
        "### API, per operation (median of n calls; n = modelkeep/MLflow)",
        "",
        *api_table(plan, o.results, o.mk_labels, o.ml_status),
        "",
        "Calls (modelkeep | MLflow):",
        "",
    ]
    lines += [f"* {spec.label}: {spec.mk_call} | {spec.ml_call}" for spec in row_specs(plan)]
    lines += [
        "",
        "Writes: every version of m is registered, then promoted to staging and at once to "
        "production, then the alias moved to it, one call each. Reads: one untimed warm-up "
        f"call, then n calls (listings stop after {OP_BUDGET_S:.0f} s per tool once "
        f"{MIN_SAMPLES} calls are in). Ratio = MLflow median / modelkeep median: above 1 "
        "modelkeep is faster.",
    ]
    if ml is not None:
        ref = ", ".join(
            f"{k} {v:g} ms (this run {fmt_ms(ml.get(k))} ms)" for k, v in ISSUE_MLFLOW_MS.items()
        )
        lines.append(f"MLflow figures quoted in the issue, from an earlier run here: {ref}.")
    builds = [
        f"{label} {sum(s[key]):.1f} s for {len(s[key]):,}"
        for label, s in o.results.items()
        for key in ("build_1k", "build_big")
        if s.get(key)
    ]
    if builds:
        lines.append(
            "Growing the listing models (m1k, big), one register call per version: "
            + "; ".join(builds)
            + "."
        )
    lines += [f"MLflow note: {n}" for n in o.ml_notes]
    if o.cli:
        user = (
            "set"
            if os.environ.get("MODELKEEP_USER")
            else "not set, so write commands ask git config for the actor"
        )
        lines += [
            "",
            "### CLI, end to end (one process per command, start-up included)",
            "",
            *cli_table(plan, o.cli, o.oneshot),
            "",
            f"`{' '.join(Path(c).name for c in cli_command())} --repo REPO ...`, wall time from "
            f"spawn to exit, after one untimed warm-up call; MODELKEEP_USER {user}. Model m has "
            f"{o.m_versions:,} versions by then.",
        ]
        if o.oneshot:
            lines.append(
                "MLflow has no registry CLI: its column times a Python process that imports "
                "mlflow, makes the client and does the same call (create_model_version, "
                "set_registered_model_alias, get_model_version_by_alias, search_model_versions); "
                f"n = {len(next(iter(o.oneshot.values())))}."
            )
    if o.problems:
        lines += ["", "Problems:", "", *[f"* {p}" for p in o.problems]]
    lines += ["", f"Total benchmark wall time: {total_s:.0f} s."]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time modelkeep's model registry against MLflow's on the same work.",
    )
    p.add_argument(
        "--versions",
        type=int,
        default=DEFAULT_VERSIONS,
        help=f"versions of the model 'at scale' (default {DEFAULT_VERSIONS:,})",
    )
    p.add_argument(
        "--mlflow-versions",
        type=int,
        default=None,
        help="versions of MLflow's model at scale, if creating --versions of them is too slow "
        "(default: the same as --versions)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        help=f"timed calls per write operation and per resolve (default {DEFAULT_REPEAT})",
    )
    p.add_argument(
        "--list-repeat",
        type=int,
        default=DEFAULT_LIST_REPEAT,
        help=f"timed calls per listing (default {DEFAULT_LIST_REPEAT}; fewer, but at least "
        f"{MIN_SAMPLES}, once a listing has taken {OP_BUDGET_S:.0f} s per tool)",
    )
    p.add_argument(
        "--cli-repeat",
        type=int,
        default=DEFAULT_CLI_REPEAT,
        help=f"timed processes per CLI command (default {DEFAULT_CLI_REPEAT})",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help=f"folder for the MLflow venv, this run's repositories and the results "
        f"(default {DEFAULT_WORK}; the repositories are deleted unless --keep)",
    )
    p.add_argument("--keep", action="store_true", help="keep this run's repositories")
    p.add_argument("--skip-mlflow", action="store_true", help="do not install or run MLflow")
    p.add_argument("--skip-cli", action="store_true", help="do not time the CLI")
    p.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="also run modelkeep against this empty PostgreSQL database "
        "(e.g. postgresql+psycopg://user@host/db); its tables are dropped afterwards",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, cProfile each modelkeep API operation (SQLite) into WORK/results/",
    )
    args = p.parse_args(argv)
    if min(args.versions, args.repeat, args.list_repeat, args.cli_repeat) < 1:
        p.error("--versions and the repeat counts must be at least 1")
    if args.mlflow_versions is not None and args.mlflow_versions < 1:
        p.error("--mlflow-versions must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for var in ("MODELKEEP_DATABASE_URL", config.RUN_ID_ENV, config.REPO_ENV):
        if os.environ.pop(var, None) is not None:
            log(f"ignoring {var} from the environment")
    t_start = time.perf_counter()
    work: Path = args.work.absolute()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = work / "registry-runs" / stamp
    results_dir = work / "results"
    run_dir.mkdir(parents=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        args.repeat,
        args.list_repeat,
        LIST_VERSIONS,
        args.versions,
        args.mlflow_versions or args.versions,
    )
    env = dict(os.environ)
    pg_url = postgres_url(args.postgres) if args.postgres else None
    labels = ["modelkeep"] + (["modelkeep (PostgreSQL)"] if pg_url else [])
    o = Outcome(plan, labels, loads=[("start", load_avg())])
    mlflow = Mlflow(work / "mlflow-venv", run_dir)
    if args.skip_mlflow:
        o.ml_status = "skipped (--skip-mlflow)"
    else:
        try:
            mlflow.ensure_installed()
        except BenchError as exc:
            o.problems.append(f"MLflow could not be installed: {exc}")
            o.ml_status = "error (not installed)"
    if plan.mlflow_big_versions != plan.big_versions:
        o.problems.append(
            f"MLflow's model at scale has {plan.mlflow_big_versions:,} versions, modelkeep's "
            f"{plan.big_versions:,} (--mlflow-versions): those rows do not compare like with like"
        )
    works: list[MkWork] = []
    ml_worker: MlflowWorker | None = None
    pg_created = False
    source = run_dir / "source"
    try:
        repo = mk.init(run_dir / "mk-sqlite")
        works.append(MkWork(labels[0], repo, make_sources(repo, source), plan))
        if pg_url is not None:
            check_empty_postgres(pg_url)
            pg_created = True
            pg_repo = open_postgres_repo(run_dir / "mk-postgres", pg_url)
            works.append(MkWork(labels[1], pg_repo, make_sources(pg_repo, source), plan))
        parts: list[Participant] = list(works)
        if o.ml_status == "not run":  # neither skipped nor failed to install
            ml_worker = mlflow.worker(plan, run_dir / "mlflow.db", source)
            parts.append(ml_worker)
            o.ml_status = "ran"
            o.mlflow = (
                f"{ml_worker.version} ({mlflow.packages()}), `MlflowClient` on a sqlite:/// "
                "tracking and registry store, own venv, telemetry off"
            )
        o.results = {p.label: {} for p in parts}
        o.loads.append(("API", load_avg()))
        run_schedule(parts, plan, o.results, o.problems)
        if ml_worker is not None:
            ml_worker.close()
            o.ml_notes = ml_worker.notes
            if ml_worker not in parts:
                o.ml_status = "error"
        if not args.skip_cli:
            o.loads.append(("modelkeep CLI", load_avg()))
            envs = [env] + ([{**env, "MODELKEEP_DATABASE_URL": pg_url}] if pg_url else [])
            for w, e in zip(works, envs, strict=True):
                o.cli[w.label] = bench_cli(w, e, args.cli_repeat)
            if ml_worker is not None and ml_worker in parts:
                o.loads.append(("MLflow processes", load_avg()))
                log(f"MLflow: one process per call (load {load_avg()})")
                o.oneshot = mlflow.oneshot(run_dir / "mlflow.db", source, min(args.cli_repeat, 10))
        o.m_versions = works[0].m_latest
        if args.profile:
            for path in profile_ops(works[0], results_dir, stamp):
                log(f"profile written to {path}")
        o.loads.append(("end", load_avg()))
    except BenchError as exc:
        log(f"failed: {exc}")
        o.problems.append(str(exc))
        if not o.results:
            return 1
    finally:
        if ml_worker is not None and ml_worker.proc.poll() is None:
            ml_worker.proc.kill()
            ml_worker.proc.wait()
        for w in works:
            w.repo.close()
        if pg_url is not None and pg_created:
            drop_postgres(pg_url)
        if args.keep:
            log(f"repositories kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

    text = report(o, time.perf_counter() - t_start)
    print(text)
    (results_dir / f"registry-{stamp}.md").write_text(text + "\n", "utf-8")
    doc = dataclasses.asdict(o)
    (results_dir / f"registry-{stamp}.json").write_text(json.dumps(doc), "utf-8")
    log(f"results written to {results_dir}/registry-{stamp}.{{md,json}}")
    return 1 if o.problems else 0


if __name__ == "__main__":
    sys.exit(main())
