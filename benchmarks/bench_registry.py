#!/usr/bin/env python3
"""Model registry benchmark: modelkeep vs MLflow's Model Registry, side by side.

Both tools do the same registry work in the same run, each on its own SQLite file: register,
promote, alias and resolve versions of a model, list models of 1,000 and --versions versions.
modelkeep runs in-process through its Python API, and end to end through its CLI; MLflow
(mlflow-skinny, in its own venv) runs in a worker process that answers each step with its
timings. The tools take turns, block by block, so that both see the same machine.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import common
from common import BenchError, fmt_ms, log

import modelkeep as mk
from modelkeep.repo import Repo

Samples = dict[str, list[float]]
MLFLOW_REQUIREMENTS = ("mlflow-skinny==3.17.2", "sqlalchemy", "alembic")
LIST_VERSIONS = 1_000
OP_BLOCK, BUILD_BLOCK = 20, 250  # calls per turn: writes and resolves; registrations
MIN_SAMPLES, OP_BUDGET_S = 5, 30.0  # a listing stops after OP_BUDGET_S per tool, past MIN_SAMPLES
TARGET_RATIO, CLI_TARGET_S = 2.0, 0.3
STAGES = ("staging", "production")


Call = tuple[str, str, list[Any]]  # samples key ("": untimed), primitive, arguments
Calls = list[tuple[str, str, list[Any], Any]]  # ... and the answer to expect (None: unchecked)
Run = Callable[[list[Call]], tuple[list[Any], Samples]]  # calls -> answers, seconds per key


@dataclass(frozen=True)
class Plan:
    repeat: int  # timed calls per write operation and per resolve
    list_repeat: int  # timed calls per listing
    big: int  # versions of model big
    mlflow_big: int  # ... on MLflow's side

    def steps(self) -> list[tuple[str, int, int, bool]]:
        """(operation, calls per tool, calls per turn, is a read: one warm-up call first)."""
        r, lr, big = self.repeat, self.list_repeat, max(self.big, self.mlflow_big)
        return [
            *(("setup", 1, 1, False), ("register", r, OP_BLOCK, False)),
            *(("promote", r, OP_BLOCK, False), ("stage_transition", r, OP_BLOCK, False)),
            *(("set_alias", r, OP_BLOCK, False), ("resolve", r, OP_BLOCK, True)),
            *(("build_1k", LIST_VERSIONS, BUILD_BLOCK, False), ("list_1k", lr, 1, True)),
            *(("build_big", big, BUILD_BLOCK, False), ("big_ready", 1, 1, False)),
            *(("resolve_big", r, OP_BLOCK, True), ("list_big", lr, 1, True)),
            ("models", lr, 1, True),
        ]


def expect(got: object, want: object, what: str) -> None:
    if got != want:
        raise BenchError(f"{what}: expected {want!r}, got {got!r}")


def execute(api: object, calls: list[Call]) -> tuple[list[Any], Samples]:
    """Each call on api, timed: the answers, and the seconds per key. (Also in MLFLOW_PROGRAM.)"""
    answers: list[Any] = []
    s: Samples = {}
    for key, method, args in calls:
        t0 = time.perf_counter()
        answers.append(getattr(api, method)(*args))
        if key:
            s.setdefault(key, []).append(time.perf_counter() - t0)
    return answers, s


class MkApi:
    """The primitive calls on modelkeep's Python API. Every change writes its hash-chained
    audit event, as the product always does."""

    def __init__(self, repo: Repo, folder: Path) -> None:
        self.repo = repo
        folder.mkdir(parents=True, exist_ok=True)
        self.sources = []  # two small versions of "weights": registered in turn, so that each
        for i in range(2):  # registration of m makes a new version
            (folder / "model.bin").write_bytes(bytes([i]) * 4096)
            added = repo.add(folder / "model.bin", "weights", type="model", track=False)
            self.sources.append(added.version.ref)

    def create(self, model: str) -> None:
        pass  # the first register makes the model

    def register(self, model: str, n: int) -> int:
        return self.repo.register(self.sources[n % 2], model).number

    def promote(self, model: str, n: int, stage: str) -> int | None:
        displaced = self.repo.promote(f"{model}:v{n}", stage).displaced
        return displaced.number if displaced else None

    legacy = promote  # modelkeep has one way to promote

    def alias(self, model: str, alias: str, n: int) -> int:
        return self.repo.set_alias(f"{model}@{alias}", f"{model}:v{n}").number

    def resolve(self, model: str, alias: str) -> int:
        return self.repo.show(f"{model}@{alias}").number

    def versions(self, model: str) -> int:
        return len(self.repo.versions(model))

    def models(self) -> int:
        return len(self.repo.models())


def number(ref: str) -> int:
    return int(ref.rsplit(":v", 1)[1])


class CliApi:
    """The same primitive calls through modelkeep's CLI: one process each."""

    def __init__(self, api: MkApi, env: dict[str, str]) -> None:
        self.sources, self.cli = api.sources, common.cli(api.repo.root, env)

    def register(self, model: str, n: int) -> int:  # registered m:v7 (b3:…, stage none)
        return number(self.cli("register", self.sources[n % 2], "--as", model).split()[1])

    def promote(self, model: str, n: int, stage: str) -> int | None:  # … m:v6 moved from …
        out = self.cli("promote", f"{model}:v{n}", stage).splitlines()
        return next((number(line.split()[0]) for line in out if " moved from " in line), None)

    def alias(self, model: str, alias: str, n: int) -> int:  # m@champion -> m:v5
        return number(self.cli("alias", "set", f"{model}@{alias}", f"{model}:v{n}").split()[-1])

    def resolve(self, model: str, alias: str) -> int:  # m:v5  (model, file) …
        return number(self.cli("show", f"{model}@{alias}").split()[0])

    def versions(self, model: str) -> int:  # a header, then one line per version
        return len(self.cli("versions", model).splitlines()) - 1


class Work:
    """The registry work as primitive calls, with the answers to expect. Both tools number
    versions alike (m:v1, m:v2, ...), so the calls are the same; one instance per tool."""

    def __init__(self, label: str, run: Run, big: int, unchecked: tuple[str, ...] = ()) -> None:
        self.label, self.run, self.big, self.unchecked = label, run, big, unchecked
        self.m = 1  # the newest version of m
        self.registered: list[int] = []  # the versions of m registered by timed calls
        self.pending: deque[int] = deque()  # ... and not promoted yet
        self.stage_i = self.alias_i = 0
        self.production = 1  # m@production
        self.counts = {"m1k": 0, "big": 0}

    def step(self, op: str, n: int, warmup: bool, run: Run | None = None) -> Samples:
        """n iterations of op (after an untimed one if warmup); the answers checked."""
        todo = [
            (k if i >= warmup else "", *c) for i in range(n + warmup) for k, *c in self.calls(op)
        ]
        answers, samples = (run or self.run)([(key, method, args) for key, method, args, _ in todo])
        for (_, method, args, want), got in zip(todo, answers, strict=True):
            if want is not None and method not in self.unchecked:
                expect(got, want, f"{self.label} {method}{tuple(args)}")
        return samples

    def calls(self, op: str) -> Calls:
        """One iteration of op: (samples key, primitive, arguments, the answer to expect)."""
        big = self.counts["big"]
        match op:
            case "setup":
                calls: Calls = [("", "create", [name], None) for name in ("m", "m1k", "big")]
                calls += [("", "register", ["m", 1], 1), ("", "alias", ["m", "champion", 1], 1)]
                calls += [
                    ("", how, ["m", 1, st], None) for how in ("promote", "legacy") for st in STAGES
                ]
                return [*calls, ("", "resolve", ["m", "production"], 1)]
            case "register":
                self.m += 1
                self.registered.append(self.m)
                self.pending.append(self.m)
                return [("register", "register", ["m", self.m], self.m)]
            case "promote":
                n, previous = self.pending.popleft(), self.production
                self.production = n
                calls = [("promote_staging", "promote", ["m", n, "staging"], None)]
                return [*calls, ("promote_production", "promote", ["m", n, "production"], previous)]
            case "stage_transition":  # MLflow's legacy stages; modelkeep promotes again
                n = self.production = self.registered[self.stage_i % len(self.registered)]
                self.stage_i += 1
                return [(f"legacy_{st}", "legacy", ["m", n, st], None) for st in STAGES]
            case "set_alias":
                self.alias_i += 1
                n = self.registered[(self.alias_i - 1) % len(self.registered)]
                return [("set_alias", "alias", ["m", "champion", n], n)]
            case "resolve":
                return [("resolve", "resolve", ["m", "production"], self.production)]
            case "build_1k" | "build_big":
                name, target = ("m1k", LIST_VERSIONS) if op == "build_1k" else ("big", self.big)
                if self.counts[name] >= target:
                    return []
                self.counts[name] += 1
                return [(op, "register", [name, self.counts[name]], self.counts[name])]
            case "big_ready":
                return [("", "promote", ["big", big, st], None) for st in STAGES]
            case "list_1k":
                return [("list_1k", "versions", ["m1k"], LIST_VERSIONS)]
            case "resolve_big":
                return [("resolve_big", "resolve", ["big", "production"], big)]
            case "list_big":
                return [("list_big", "versions", ["big"], big)]
        return [("models", "models", [], 3)]


# Run with the MLflow venv's interpreter: `PROGRAM DB SOURCE` reads a JSON list of calls per line
# on stdin and answers a JSON line of answers and timings; `PROGRAM DB SOURCE METHOD ARGS` does
# one call, to time a whole process from outside.
MLFLOW_PROGRAM = r"""
import json, logging, sys, time, warnings

warnings.simplefilter("ignore")
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
import mlflow
from mlflow import MlflowClient


class Api:
    def __init__(self, db, source):
        self.c = MlflowClient(tracking_uri="sqlite:///" + db, registry_uri="sqlite:///" + db)
        self.source = source

    def create(self, model):
        self.c.create_registered_model(model)

    def register(self, model, n):
        return int(self.c.create_model_version(model, self.source, run_id=None).version)

    def promote(self, model, n, stage):
        self.c.set_registered_model_alias(model, stage, n)

    def legacy(self, model, n, stage):
        archive = stage == "production"
        self.c.transition_model_version_stage(model, str(n), stage.title(), archive)

    def alias(self, model, alias, n):
        self.c.set_registered_model_alias(model, alias, n)

    def resolve(self, model, alias):
        return int(self.c.get_model_version_by_alias(model, alias).version)

    def versions(self, model):
        found, token = [], None
        while True:  # page by page
            page = self.c.search_model_versions(f"name='{model}'", 10000, page_token=token)
            found += page
            token = page.token
            if not token:
                return len(found)

    def models(self):
        return len(self.c.search_registered_models())


api = Api(sys.argv[1], sys.argv[2])
if len(sys.argv) > 3:  # one call
    getattr(api, sys.argv[3])(*json.loads(sys.argv[4]))
    sys.exit()
api.c.search_registered_models()  # creates the schema, outside every timed call
print(json.dumps({"ready": mlflow.__version__}), flush=True)
for line in sys.stdin:
    answers, s = [], {}
    try:
        for key, method, args in json.loads(line):
            t0 = time.perf_counter()
            answers.append(getattr(api, method)(*args))
            if key:
                s.setdefault(key, []).append(time.perf_counter() - t0)
        print(json.dumps({"answers": answers, "samples": s}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


class MlflowWorker:
    """The MLflow program, run in its venv (made on first use): a JSON line of calls in, one of
    answers out. argv, with METHOD ARGS added, does one call in a process of its own."""

    def __init__(self, work: Path, run_dir: Path, env: dict[str, str]) -> None:
        module = "mlflow.store.model_registry.sqlalchemy_store"
        python = common.peer_venv(work / "mlflow-venv", MLFLOW_REQUIREMENTS, module, env)
        program = run_dir / "mlflow_registry_bench.py"
        program.write_text(MLFLOW_PROGRAM, "utf-8")
        self.argv = [str(python), str(program), str(run_dir / "mlflow.db"), str(run_dir / "source")]
        pipe = subprocess.PIPE
        self.proc = subprocess.Popen(self.argv, env=env, stdin=pipe, stdout=pipe, text=True)
        self.version = str(self._reply()["ready"])

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the MLflow worker exited ({self.proc.wait()}); see its messages")
        doc: dict[str, Any] = json.loads(line)
        if "error" in doc:
            raise BenchError(f"MLflow: {doc['error']}")
        return doc

    def __call__(self, calls: list[Call]) -> tuple[list[Any], Samples]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(calls) + "\n")
        self.proc.stdin.flush()
        reply = self._reply()
        return reply["answers"], {k: [float(x) for x in v] for k, v in reply["samples"].items()}


def run_schedule(works: list[Work], plan: Plan, problems: list[str]) -> dict[str, Samples]:
    """Every step, the tools taking turns block by block, the order rotating every block.

    modelkeep failing stops the run; MLflow failing drops it (listed under Problems)."""
    results: dict[str, Samples] = {w.label: {} for w in works}
    for op, total, block, read in plan.steps():
        log(f"{op} ({total:,} per tool; load {common.load_avg()})")
        done = turn = 0
        start = time.perf_counter()
        while done < total and works:
            n = min(block, total - done)
            for w in works[turn % len(works) :] + works[: turn % len(works)]:
                try:
                    got = w.step(op, n, read and turn == 0)
                except BenchError as exc:
                    if w.label != "mlflow":
                        raise
                    problems.append(f"MLflow failed at {op}, dropped: {exc}")
                    log(problems[-1])
                    works.remove(w)
                    continue
                for key, values in got.items():
                    results[w.label].setdefault(key, []).extend(values)
            done, turn, elapsed = done + n, turn + 1, time.perf_counter() - start
            if block == 1 and done >= MIN_SAMPLES and elapsed > OP_BUDGET_S * len(works):
                break  # a listing past its time budget
    return results


def bench_cli(work: Work, api: CliApi, repeat: int, list_repeat: int) -> Samples:
    """The same calls through the CLI, each after an untimed warm-up call (listings: fewer
    once OP_BUDGET_S has passed), continuing the work done through the API."""
    log(f"{work.label}: CLI, {repeat} calls per command (load {common.load_avg()})")
    s: Samples = {}
    for op in ("register", "promote", "set_alias", "resolve", "list_1k", "list_big"):
        start = time.perf_counter()
        for i in range(min(repeat, list_repeat) if op == "list_big" else repeat):
            for key, values in work.step(op, 1, i == 0, partial(execute, api)).items():
                s.setdefault(key, []).extend(values)
            elapsed = time.perf_counter() - start
            if op.startswith("list") and i >= MIN_SAMPLES and elapsed > OP_BUDGET_S:
                break
    return s


def profile(work: Work, api: MkApi, repeat: int, out_dir: Path) -> None:
    """cProfile of each in-process operation, on the same repository, into text files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    profiles: dict[str, cProfile.Profile] = {}
    ops = ["register", "promote", "set_alias", "resolve"] * max(10, min(repeat, 50))
    for op in ops + ["list_1k", "list_big", "models"] * 3:
        for key, method, args, _ in work.calls(op):
            profiles.setdefault(key, cProfile.Profile()).runcall(getattr(api, method), *args)
    for key, prof in profiles.items():
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
        path = out_dir / f"registry-{time.strftime('%Y%m%d-%H%M%S')}-profile-{key}.txt"
        path.write_text(buf.getvalue(), "utf-8")
        log(f"profile written to {path}")


def mlflow_processes(argv: list[str], env: dict[str, str], n: int) -> Samples:
    """A whole MLflow process per call (start-up, import, client), after a warm-up call."""
    s: Samples = {}
    calls = {"register": ["m", 0], "promote": ["m", 2, "production"]}
    for method, args in (calls | {"resolve": ["m", "production"], "versions": ["m1k"]}).items():
        log(f"MLflow, one process per call: {method}")
        call = partial(common.run, [*argv, method, json.dumps(args)], env)
        call()
        s[method] = common.repeat(call, n)[1]
    return s


API_ROWS = (  # the samples' key, the operation
    ("register", "register a version"),
    ("promote_staging", "promote to staging"),
    ("promote_production", "promote to production (previous one archived)"),
    ("legacy_staging", "promote to staging, vs legacy stage transition"),
    ("legacy_production", "promote to production, vs legacy stage transition"),
    ("set_alias", "set a free alias"),
    ("resolve", "resolve m@production"),
    ("list_1k", f"list {LIST_VERSIONS:,} versions"),
    ("build_big", "register, growing a model to BIG versions"),
    ("resolve_big", "resolve big@production, BIG versions"),
    ("list_big", "list BIG versions"),
    ("models", "list the 3 registered models (information only)"),
)
CLI_ROWS = (  # the samples' key, the command, MLflow's one-process call
    ("register", "`modelkeep register weights:vN --as m`", "register"),
    ("promote_staging", "`modelkeep promote m:vN staging`", None),
    ("promote_production", "`modelkeep promote m:vN production`", "promote"),
    ("set_alias", "`modelkeep alias set m@champion m:vN`", None),
    ("resolve", "`modelkeep show m@production`", "resolve"),
    ("list_1k", f"`modelkeep versions m1k` ({LIST_VERSIONS:,} versions)", "versions"),
    ("list_big", "`modelkeep versions big` (BIG versions)", None),
)


@dataclass
class Outcome:
    plan: Plan
    results: dict[str, Samples] = field(default_factory=dict)  # per tool
    cli: dict[str, Samples] = field(default_factory=dict)  # per modelkeep database
    oneshot: Samples = field(default_factory=dict)  # MLflow, one process per call
    mlflow: str = "not run (--skip-mlflow, or see Problems)"
    loads: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def report(o: Outcome, total_s: float) -> list[str]:
    big = f"{o.plan.big:,}"
    big += f" (MLflow {o.plan.mlflow_big:,})" if o.plan.mlflow_big != o.plan.big else ""
    mk_labels = [label for label in o.results if label != "mlflow"]
    ml = o.results.get("mlflow", {})
    api_rows = []
    for key, label in API_ROWS:
        mk_s, ml_s = o.results[mk_labels[0]].get(key), ml.get(key)
        row = [label.replace("BIG", big), f"{len(mk_s or [])}/{len(ml_s or [])}"]
        row += [fmt_ms(o.results[label].get(key)) for label in mk_labels] + [fmt_ms(ml_s)]
        ratio = common.median_ms(ml_s) / common.median_ms(mk_s) if mk_s and ml_s else 0
        met = "(info)" if key == "models" else "yes" if ratio >= TARGET_RATIO else "**NO**"
        api_rows.append(row + ([f"{ratio:.2f}", met] if ratio else ["—", "—"]))
    head = ["operation", "n", *(f"{label} ms" for label in mk_labels), "MLflow ms"]
    head += ["MLflow / modelkeep", f"≥ {TARGET_RATIO:g}× faster?"]
    builds = [
        (label, s[key]) for label, s in o.results.items() for key in ("build_1k", "build_big")
    ]
    lines = [
        "## modelkeep registry benchmark: modelkeep vs MLflow Model Registry",
        "",
        f"* machine: {common.machine()}",
        f"* MLflow: {o.mlflow}",
        f"* load average (1, 5, 15 min): {'; '.join(o.loads)}",
        "",
        "### API, per operation (median of n calls; n = modelkeep/MLflow)",
        "",
        *common.md_table(head, api_rows, 2),
        "",
        "Growing the listing models, one register call per version: "
        + "; ".join(f"{label} {sum(x):.1f} s for {len(x):,}" for label, x in builds if x),
    ]
    cli_rows = []
    for i, (db, samples) in enumerate(o.cli.items()):
        for key, text, ml_key in CLI_ROWS:
            if sx := samples.get(key):
                met = "yes" if common.median_ms(sx) < CLI_TARGET_S * 1000 else "**NO**"
                cells = [text.replace("BIG", f"{o.plan.big:,}"), db, str(len(sx)), fmt_ms(sx)]
                cells += [f"{common.p95_ms(sx):,.1f}", met]
                if o.oneshot:  # MLflow's own (SQLite) figures, on the SQLite rows
                    cells.append(fmt_ms(o.oneshot.get(ml_key or "")) if i == 0 else "—")
                cli_rows.append(cells)
    head = ["command", "db", "n", "median ms", "p95 ms", f"< {CLI_TARGET_S * 1000:.0f} ms?"]
    head += ["MLflow, one process per call, ms"] * bool(o.oneshot)
    if cli_rows:
        user = "set" if "MODELKEEP_USER" in os.environ else "not set: writes ask git who acts"
        lines += [
            "",
            "### CLI, end to end (one process per command, from spawn to exit)",
            "",
            *common.md_table(head, cli_rows, 2),
            "",
            f"After one untimed warm-up call per command; MODELKEEP_USER {user}. MLflow has no "
            "registry CLI: its column times a Python process doing the same one call.",
        ]
    lines += ["", "Problems:", "", *(f"* {p}" for p in o.problems)] if o.problems else []
    return [*lines, "", f"Total benchmark wall time: {total_s:.0f} s."]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time modelkeep's model registry against MLflow's.")
    add = p.add_argument
    add("--versions", type=int, default=10_000, help="versions of the model at scale (10,000)")
    add("--mlflow-versions", type=int, help="fewer versions for MLflow's model at scale")
    add("--repeat", type=int, default=200, help="timed calls per write and resolve (200)")
    add("--list-repeat", type=int, default=20, help="timed calls per listing (20)")
    add("--cli-repeat", type=int, default=20, help="timed processes per CLI command (20)")
    add("--work", type=Path, default=common.WORK, help="MLflow venv, repositories, results")
    add("--keep", action="store_true", help="keep this run's repositories")
    add("--skip-mlflow", action="store_true", help="do not install or run MLflow")
    add("--skip-cli", action="store_true", help="do not time the CLI")
    add("--postgres", metavar="URL", help="also run modelkeep on this empty PostgreSQL database")
    add("--profile", action="store_true", help="cProfile each API operation into WORK/results")
    args = p.parse_args(argv)
    args.mlflow_versions = args.mlflow_versions or args.versions
    if min(args.versions, args.mlflow_versions, args.repeat, args.list_repeat, args.cli_repeat) < 1:
        p.error("--versions and the repeat counts must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    env = common.process_env()
    ml_env = {k: v for k, v in env.items() if not k.startswith(("MLFLOW_", "MODELKEEP_"))}
    ml_env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    work: Path = args.work.absolute()
    run_dir = work / "registry-runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    source = run_dir / "source"
    plan = Plan(args.repeat, args.list_repeat, args.versions, args.mlflow_versions)
    o = Outcome(plan, loads=[f"start {common.load_avg()}"])
    if plan.mlflow_big != plan.big:
        o.problems.append("--mlflow-versions: the rows at scale do not compare like with like")
    with contextlib.ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
        try:
            dbs = {"sqlite": (stack.enter_context(mk.init(run_dir / "mk-sqlite")), env)}
            if args.postgres:
                url = common.postgres_url(args.postgres)
                pg = stack.enter_context(common.postgres_repo(run_dir / "mk-postgres", url))
                dbs["postgres"] = (pg, {**env, "MODELKEEP_DATABASE_URL": url})
            apis = {db: MkApi(repo, source) for db, (repo, _) in dbs.items()}
            label = {"sqlite": "modelkeep", "postgres": "modelkeep (postgres)"}
            works = {
                db: Work(label[db], partial(execute, api), plan.big) for db, api in apis.items()
            }
            parts = list(works.values())
            worker = None
            try:
                worker = None if args.skip_mlflow else MlflowWorker(work, run_dir, ml_env)
            except BenchError as exc:
                o.problems.append(f"MLflow could not be started: {exc}")
            if worker:
                stack.callback(worker.proc.kill)
                # MLflow's alias writes answer nothing: its resolves are checked instead.
                parts.append(Work("mlflow", worker, plan.mlflow_big, ("promote", "alias")))
                o.mlflow = f"{worker.version} ({', '.join(MLFLOW_REQUIREMENTS)}): `MlflowClient` "
                o.mlflow += "on a sqlite:/// tracking and registry store, own venv, telemetry off"
            o.results = run_schedule(parts, plan, o.problems)
            o.loads.append(f"CLI {common.load_avg()}")
            for db, w in works.items() if not args.skip_cli else ():
                cli = CliApi(apis[db], dbs[db][1])
                o.cli[db] = bench_cli(w, cli, args.cli_repeat, args.list_repeat)
            if worker and not args.skip_cli and "mlflow" in [p.label for p in parts]:
                o.oneshot = mlflow_processes(worker.argv, ml_env, min(args.cli_repeat, 10))
            if args.profile:
                profile(works["sqlite"], apis["sqlite"], args.repeat, work / "results")
            o.loads.append(f"end {common.load_avg()}")
        except BenchError as exc:
            log(f"failed: {exc}")
            o.problems.append(str(exc))
            if not o.results:
                return 1
        if args.keep:
            log(f"repositories kept in {run_dir}")
    common.save(work, "registry", report(o, time.perf_counter() - t_start), dataclasses.asdict(o))
    return 1 if o.problems else 0


if __name__ == "__main__":
    sys.exit(main())
