#!/usr/bin/env python3
"""The registry at scale: 1,000 models, 100,000 versions, 100,000 runs, on SQLite and PostgreSQL.

A seeded generator writes the store through modelkeep's own tables (bulk INSERTs in the meta
layer's transactions, not 100,000 CLI calls); the SQLite repository is cached under
WORK/registry-scale/ and reused while its spec matches. PostgreSQL runs on a throwaway server
started as the test suite starts it (tests/pg.py), or on --postgres URL. Then the read calls
behind `models`, `versions NAME`, `show NAME@alias`, `runs --where "metrics.auc > 0.9"
--limit 50` and `lineage` are timed as Python API calls (Repo methods): p50 and p95 against the
target of 100 ms at p95. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import common
import sqlalchemy as sa
from common import BenchError, log

import modelkeep as mk
from modelkeep.meta.models import Base
from modelkeep.repo import Repo

TABLES = Base.metadata.tables
ORDER = ("runs", "artifacts", "versions", "aliases", "run_inputs", "params", "metrics")
SEED = 20_261_206
TARGET_P95_MS = 100.0
DATASET = "data/train"
DATASET_VERSIONS = 100
SPEC_VERSION = 2  # bump when the generator changes, so a cached store is rebuilt
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Spec:
    models: int
    versions_per_model: int
    generator: int = SPEC_VERSION
    seed: int = SEED

    @property
    def runs(self) -> int:
        return self.models * self.versions_per_model  # one training run per version


def model_name(i: int) -> str:
    return f"team{i % 10}/model-{i:04d}"


def run_id(i: int) -> str:
    return f"{i:032x}"


def rows(spec: Spec) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The tables' rows, in an order the foreign keys accept, a model at a time.

    Every version is made by its own run, which read one version of data/train and logged
    auc (uniform in 0.5-1, so about a fifth are above 0.9), loss and two params. Of each
    model, the newest version is in production, the one before in staging, three older ones
    archived, and the alias `champion` points at the third newest.
    """
    rng = Random(spec.seed)
    base = {"kind": "file", "size": 1 << 20, "file_count": 1, "mode": 0o644, "user": "bench"}
    base |= {"message": "", "metadata_json": "{}", "deleted_at": None, "host": "bench"}
    base |= {"store_id": None, "description": ""}
    data = [
        {
            **base,
            "id": n,
            "artifact_id": 1,
            "number": n,
            "digest": f"{rng.getrandbits(256):064x}",
            "source_name": b"train.parquet",
            "created_at": T0 + timedelta(minutes=n),
            "run_id": None,
            "registered": False,
            "stage": "none",
            "stage_changed_at": None,
        }
        for n in range(1, DATASET_VERSIONS + 1)
    ]
    art = {"created_at": T0, "description": ""}
    yield (
        "artifacts",
        [
            {**art, "id": 1, "name": DATASET, "type": "dataset", "latest_number": DATASET_VERSIONS}
            | {"registered": False}  # every row of a table has the same keys (one executemany)
        ],
    )
    yield "versions", data
    vid, rid = DATASET_VERSIONS, 0
    v = spec.versions_per_model
    for m in range(spec.models):
        runs, versions, params, metrics, inputs = [], [], [], [], []
        at = T0 + timedelta(days=1, seconds=m)
        for n in range(1, v + 1):
            rid += 1
            vid += 1
            started = at + timedelta(hours=n)
            rid_hex = run_id(rid)
            runs.append(
                {
                    "id": rid_hex,
                    "name": f"train-{m:04d}",
                    "status": "finished",
                    "user": "bench",
                    "host": "bench",
                    "pid": 1,
                    "pid_started": None,
                    "started_at": started,
                    "heartbeat_at": started + timedelta(minutes=30),
                    "ended_at": started + timedelta(minutes=30),
                    "exit_code": 0,
                    "error": "",
                    "command_json": "{}",
                    "code_json": "{}",
                    "env_id": None,
                    "parent_id": None,
                    "note": "",
                    "deleted_at": None,
                    "experiment_id": None,
                }
            )
            auc = rng.uniform(0.5, 1.0)
            metrics += [
                {"run_id": rid_hex, "key": k, "value": x, "step": 0, "logged_at": started}
                for k, x in (("auc", auc), ("loss", 1 - auc))
            ]
            params += [
                {
                    "run_id": rid_hex,
                    "key": "lr",
                    "value_json": json.dumps(rng.choice((1e-3, 1e-4))),
                },
                {"run_id": rid_hex, "key": "depth", "value_json": str(rng.randint(2, 12))},
            ]
            inputs.append({"run_id": rid_hex, "version_id": rng.randint(1, DATASET_VERSIONS)})
            stage = (
                "production"
                if n == v
                else "staging"
                if n == v - 1
                else "archived"
                if v - 6 < n < v - 2
                else "none"
            )
            versions.append(
                {
                    **base,
                    "id": vid,
                    "artifact_id": m + 2,
                    "number": n,
                    "digest": f"{rng.getrandbits(256):064x}",
                    "source_name": b"model.safetensors",
                    "created_at": started + timedelta(minutes=31),
                    "run_id": rid_hex,
                    "registered": True,
                    "stage": stage,
                    "stage_changed_at": started + timedelta(minutes=31),
                }
            )
        yield "runs", runs
        art_row = {**art, "id": m + 2, "name": model_name(m), "type": "model"}
        yield "artifacts", [{**art_row, "latest_number": v, "registered": True}]
        yield "versions", versions
        champion = versions[max(0, v - 3)]["id"]
        yield "aliases", [{"artifact_id": m + 2, "alias": "champion", "version_id": champion}]
        yield "run_inputs", inputs
        yield "params", params
        yield "metrics", metrics


def load(repo: Repo, spec: Spec) -> float:
    """Insert the store in one write transaction per model; seconds taken."""
    t0 = time.perf_counter()
    pending: dict[str, list[dict[str, Any]]] = {}
    done = 0

    def flush() -> None:
        with repo.db.write() as s:
            for table in ORDER:
                batch = pending.pop(table, [])
                for i in range(0, len(batch), 5_000):
                    s.execute(sa.insert(TABLES[table]), batch[i : i + 5_000])

    for table, batch in rows(spec):
        pending.setdefault(table, []).extend(batch)
        if table == "metrics":  # the last table of a model
            done += 1
            if done % 50 == 0 or done == spec.models:
                flush()
                log(f"  {done:,} of {spec.models:,} models loaded")
    flush()
    with repo.db.write() as s:
        if s.get_bind().dialect.name == "postgresql":
            # Explicit ids do not move the sequences, and ANALYZE is what autovacuum does
            # soon after a bulk load. (SQLite is not analysed: modelkeep never does, so its
            # users' planner has no statistics either.)
            for name in ("artifacts", "versions", "metrics"):
                sequence = f"pg_get_serial_sequence('{name}', 'id')"
                s.execute(sa.text(f"SELECT setval({sequence}, max(id)) FROM {name}"))
            s.execute(sa.text("ANALYZE"))
    return time.perf_counter() - t0


@dataclass
class Op:
    label: str
    call: Callable[[int], object]  # i -> result
    check: Callable[[int, Any], str | None]  # i, result -> a problem, or None


def operations(repo: Repo, spec: Spec) -> list[Op]:
    v = spec.versions_per_model

    def name(i: int) -> str:
        return model_name((i * 7919) % spec.models)

    def version_of(i: int) -> str:
        return f"{name(i)}:v{1 + (i * 31) % v}"

    def want(what: str, got: object, expected: object) -> str | None:
        return None if got == expected else f"{what}: expected {expected!r}, got {got!r}"

    return [
        Op(
            f"`models` ({spec.models:,} models)",
            lambda i: len(repo.models()),
            lambda i, got: want("models", got, spec.models),
        ),
        Op(
            f"`versions NAME` ({v:,} versions)",
            lambda i: len(repo.versions(name(i))),
            lambda i, got: want(f"versions {name(i)}", got, v),
        ),
        Op(
            "resolve `NAME@champion`",
            lambda i: repo.show(f"{name(i)}@champion").number,
            lambda i, got: want(f"{name(i)}@champion", got, max(1, v - 2)),
        ),
        Op(
            "resolve `NAME@production`",
            lambda i: repo.show(f"{name(i)}@production").number,
            lambda i, got: want(f"{name(i)}@production", got, v),
        ),
        Op(
            '`runs --where "metrics.auc > 0.9" --limit 50`',
            lambda i: repo.runs(where=["metrics.auc > 0.9"], limit=50),
            lambda i, got: (
                None
                if len(got) == 50 and all(r.metrics["auc"] > 0.9 for r in got)
                else f"runs --where: {len(got)} runs, or one with auc <= 0.9"
            ),
        ),
        Op(
            "`lineage NAME:vN`",
            lambda i: repo.lineage(version_of(i)),
            lambda i, got: want(f"lineage {version_of(i)} nodes", len(got.nodes), 3),
        ),
    ]


def time_ops(
    repo: Repo, spec: Spec, n: int, problems: list[str], db: str
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for op in operations(repo, spec):
        log(f"{db}: {op.label} x {n} (load {common.load_avg()})")
        op.call(n)  # a warm-up call, untimed
        seconds = []
        for i in range(n):
            t0 = time.perf_counter()
            got = op.call(i)
            seconds.append(time.perf_counter() - t0)
            if (problem := op.check(i, got)) is not None:
                problems.append(f"{db}: {problem}")
                break
            if i >= 5 and sum(seconds) > 60:  # a slow call: enough samples for a p95
                break
        out[op.label] = seconds
    return out


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A private PostgreSQL server, started as the test suite starts one (tests/pg.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import pg

    bindir = pg.find_pg_bindir()
    if bindir is None:
        raise BenchError("no PostgreSQL binaries found (initdb); give --postgres URL")
    local = pg.LocalPostgres(bindir)
    local.start()
    try:
        server = pg.PostgresServer(local.maintenance_url().set(database=pg.INITIAL_DB))
        yield server.create_database("registry_scale")
    finally:
        local.stop()


def sqlite_repo(work: Path, spec: Spec, problems: list[str]) -> tuple[Repo, float | None]:
    """The cached SQLite store of spec, built when missing or stale; (repo, load seconds)."""
    root = work / "registry-scale" / f"sqlite-{spec.models}x{spec.versions_per_model}"
    marker = root / "spec.json"
    if marker.exists() and json.loads(marker.read_text()) == asdict(spec):
        log(f"reusing the cached store in {root}")
        return mk.open(root), None
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    repo = mk.init(root)
    log(f"building {spec.runs:,} versions and runs in {root} ...")
    seconds = load(repo, spec)
    marker.write_text(json.dumps(asdict(spec)))
    return repo, seconds


def report(
    spec: Spec, results: dict[str, dict[str, list[float]]], loads: dict[str, float | None],
    problems: list[str], total_s: float, machine: str,
) -> list[str]:  # fmt: skip
    dbs = list(results)
    head = ["operation"] + [f"{db} {x}" for db in dbs for x in ("p50 ms", "p95 ms")]
    head += [f"p95 ≤ {TARGET_P95_MS:.0f} ms?"]
    table = []
    for label in next(iter(results.values())):
        cells = [label]
        met = True
        for db in dbs:
            s = results[db].get(label, [])
            cells += [common.fmt_ms(s), f"{common.p95_ms(s):,.1f}" if s else "—"]
            met = met and bool(s) and common.p95_ms(s) <= TARGET_P95_MS
        table.append([*cells, "yes" if met else "**NO**"])
    built = "; ".join(
        f"{db}: {'cached' if s is None else f'built in {s:.0f} s'}" for db, s in loads.items()
    )
    return [
        "## modelkeep registry at scale",
        "",
        f"* machine: {machine}",
        f"* store: {spec.models:,} models x {spec.versions_per_model:,} versions = "
        f"{spec.runs:,} registered versions, {spec.runs:,} runs (2 metrics, 2 params, 1 input "
        f"each), {DATASET_VERSIONS} versions of {DATASET}; {built}",
        f"* n = {max((len(x) for r in results.values() for x in r.values()), default=0)} calls per "
        "operation (fewer past 60 s), each on another model, after one untimed call; "
        "Python API calls (Repo methods) in one process",
        "",
        *common.md_table(head, table),
        *(["", "Problems:", "", *(f"* {p}" for p in problems)] if problems else []),
        "",
        f"Total benchmark wall time: {total_s:.0f} s.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Registry reads at 1,000 models / 100,000 versions.")
    add = p.add_argument
    add("--models", type=int, default=1_000, help="registered models (1,000)")
    add("--versions", type=int, default=100, help="versions (and runs) per model (100)")
    add("--quick", action="store_true", help="100 models x 20 versions: a smoke run")
    add("--repeat", type=int, default=50, help="timed calls per operation (50)")
    add("--work", type=Path, default=common.WORK, help="the cached store and results")
    add("--postgres", metavar="URL", help="an empty PostgreSQL database instead of a private one")
    add("--skip-postgres", action="store_true", help="SQLite only")
    args = p.parse_args(argv)
    spec = Spec(100, 20) if args.quick else Spec(args.models, args.versions)
    t_start = time.perf_counter()
    common.process_env()
    work: Path = args.work.absolute()
    problems: list[str] = []
    results: dict[str, dict[str, list[float]]] = {}
    loads: dict[str, float | None] = {}
    machine = common.machine("psycopg")
    repo, loads["sqlite"] = sqlite_repo(work, spec, problems)
    with repo:
        results["sqlite"] = time_ops(repo, spec, args.repeat, problems, "sqlite")
    if not args.skip_postgres:
        with contextlib.ExitStack() as stack:
            try:
                url = args.postgres or stack.enter_context(throwaway_postgres())
                url = common.postgres_url(url)
                folder = work / "registry-scale" / "postgres-run"
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                stack.callback(shutil.rmtree, folder, ignore_errors=True)
                pg_repo = stack.enter_context(common.postgres_repo(folder, url))
                log(f"building {spec.runs:,} versions and runs in PostgreSQL ...")
                loads["postgres"] = load(pg_repo, spec)
                results["postgres"] = time_ops(pg_repo, spec, args.repeat, problems, "postgres")
            except BenchError as exc:
                problems.append(f"postgres: {exc}")
    lines = report(spec, results, loads, problems, time.perf_counter() - t_start, machine)
    common.save(work, "registry-scale", lines, {"spec": asdict(spec), "results": results})
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
