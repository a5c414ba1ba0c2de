#!/usr/bin/env python3
"""Lineage and run-listing benchmark on a synthetic history of runs (default 10,000).

A seeded history shaped like real ML work (datasets, preprocessing, training, evaluation and
fine-tuning chains) is bulk-inserted into modelkeep's own tables; versions point at made-up
digests, which lineage queries and run listings never read. Lineage queries on landmark
versions and run listings are timed through the Python API and the CLI, and their node and
edge counts checked against the generated graph. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import heapq
import json
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from random import Random
from typing import Any, TypeVar

import common
import sqlalchemy as sa
from common import BenchError, log

import modelkeep as mk
from modelkeep.capture.environment import canonical_json, environment_id
from modelkeep.meta import Lineage
from modelkeep.meta.models import Base
from modelkeep.repo import Repo

T = TypeVar("T")
TABLES = Base.metadata.tables
TABLE_ORDER = ("environments", "runs", "artifacts", "versions", "run_inputs", "params", "metrics")
SEED = 20_240_917
MIN_RUNS = 100
OP_BUDGET_S = 15.0  # an operation stops repeating after this long, once it has MIN_SAMPLES
MIN_SAMPLES = 3
WHERE = "metrics.auc > 0.9"
MIX = {"prep": 15, "train": 40, "eval": 35, "finetune": 10}  # percent of all runs
DATASET_SHARE = 0.03  # dataset versions per run
HOT_CORPUS_SHARE = 0.3  # of preprocessing runs that read a raw dataset
REFINE_SHARE = 0.25  # of preprocessing runs that refine an existing features version
CODE_PATCH_SHARE = 0.08  # of training and fine-tuning runs, run from a dirty Git tree
CHAIN_DEPTH, ACTIVE_CHAINS = (20, 40), 4
FAILED_SHARE, KILLED_SHARE = 0.03, 0.01
USERS = ("alice", "bob", "carol", "dan", "erin", "farid")
HOSTS = (*(f"gpu-{i:02d}" for i in range(1, 9)), "laptop-alice", "laptop-dan")
FAMILIES = (
    *("ctr-xgb", "churn-lgbm", "fraud-gbdt", "resnet50-cls", "vit-small", "bert-intent"),
    *("t5-summarize", "ranker-lambdamart", "asr-conformer", "detr-detect", "unet-seg"),
    *("gpt2-small", "wide-deep", "tabnet", "demand-prophet", "two-tower-recsys"),
)
RECIPES = ("tfidf", "bert-emb", "normalize", "hashing", "pca64", "tokenize")
TRAIN_METRICS = ("loss", "val_loss", "auc", "accuracy", "f1")
SCRIPTS = {"prep": "prep.py", "train": "train.py", "eval": "evaluate.py", "finetune": "finetune.py"}


def dumps(doc: object) -> str:
    return json.dumps(doc, sort_keys=True)


@dataclass(slots=True)
class Chain:
    """A fine-tuning chain: each step reads the previous model and writes the next."""

    name: str
    versions: list[int]  # the base model first
    target: int
    features: int


class History:
    """Rows of modelkeep's tables, generated step by step in time from one seeded Random: a run
    only reads versions that existed when it started. Versions point at made-up digests."""

    def __init__(self, n_runs: int) -> None:
        t0 = time.perf_counter()
        self.n, self.rng = n_runs, Random(SEED)
        # in an order the foreign keys accept
        self.tables: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLE_ORDER}
        self.runs, self.versions = self.tables["runs"], self.tables["versions"]
        self.artifacts: dict[str, dict[str, Any]] = {}  # by name
        self.names: list[str] = []  # the artifact name of each version (id - 1)
        self.kinds: list[str] = []  # of each run: prep, train, eval or finetune
        self.clock = datetime(2024, 1, 1, tzinfo=UTC)
        self.pending: list[tuple[datetime, int, tuple[str, ...]]] = []  # (made at, id, pools)
        self.released: set[int] = set()
        self.pools: dict[str, list[int]] = defaultdict(list)
        self.quality: dict[int, float] = {}  # model version id -> the auc it reaches
        self.chains: list[Chain] = []
        self.active: list[Chain] = []
        self.holdout: list[int] = []
        self.commit = self._hex(40)
        for i, py in enumerate(("3.10.14", "3.11.9", "3.11.9", "3.12.4", "3.12.4", "3.12.7")):
            pkgs = {f"pkg-{j:03d}": f"{1 + (j + i) % 7}.{(j * 3 + i) % 20}.0" for j in range(140)}
            doc = {"python": py, "torch": f"2.{i}.0", "cuda": "12.1", "packages": pkgs}
            row = {"id": environment_id(doc), "doc_json": canonical_json(doc).decode()}
            self.tables["environments"].append(row)
        self._generate()
        # The graph: inputs and outputs of each run, users and producer of each version.
        self.inputs: dict[str, list[int]] = defaultdict(list)
        self.outputs: dict[str, list[int]] = defaultdict(list)
        self.users: dict[int, list[str]] = defaultdict(list)
        for edge in self.tables["run_inputs"]:
            self.inputs[edge["run_id"]].append(edge["version_id"])
            self.users[edge["version_id"]].append(edge["run_id"])
        for v in self.versions:
            self.outputs[v["run_id"]].append(v["id"])
        self.producer = {v["id"]: v["run_id"] for v in self.versions if v["run_id"]}
        self.generate_s = time.perf_counter() - t0

    def of_run(self, table: str, run_id: str) -> list[dict[str, Any]]:
        return [row for row in self.tables[table] if row["run_id"] == run_id]

    def ref(self, vid: int) -> str:
        return f"{self.names[vid - 1]}:v{self.versions[vid - 1]['number']}"

    def summary(self) -> str:
        mix = Counter(self.kinds)
        datasets, features = (
            sum(n.startswith(p) for n in self.names) for p in ("data/", "features/")
        )
        t = {name: f"{len(rows):,}" for name, rows in self.tables.items()}
        return (
            f"{t['runs']} runs ({', '.join(f'{k} {mix[k]:,}' for k in MIX)}), {t['versions']} "
            f"versions of {t['artifacts']} artifacts ({datasets:,} datasets, {features:,} "
            f"features), {t['run_inputs']} run inputs, {t['params']} params, {t['metrics']} "
            f"metric values; {len(self.chains)} fine-tuning chains, the deepest "
            f"{max(len(c.versions) for c in self.chains) - 1} steps"
        )

    def _hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def _version(
        self,
        name: str,
        type_: str,
        source_name: str,
        size: int,
        file_count: int,
        run: dict[str, Any] | None = None,
        pools: tuple[str, ...] = (),
        at: datetime | None = None,  # made by hand (no run): when, by whom
        user: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> int:
        if name not in self.artifacts:
            art: dict[str, Any] = {"id": len(self.artifacts) + 1, "name": name, "type": type_}
            art["latest_number"] = 0
            self.artifacts[name] = art | {"created_at": self.clock}
            self.tables["artifacts"].append(self.artifacts[name])
        art = self.artifacts[name]
        art["latest_number"] += 1
        vid, kind = len(self.names) + 1, "file" if type_ in ("model", "other") else "dir"
        at = run["ended_at"] if run else at
        row: dict[str, Any] = {"id": vid, "artifact_id": art["id"], "number": art["latest_number"]}
        row["kind"] = kind
        row |= {"digest": self._hex(64), "size": size, "file_count": file_count, "message": ""}
        row |= {"mode": 0o644 if kind == "file" else 0, "source_name": source_name.encode()}
        row |= {"created_at": at, "user": run["user"] if run else user}
        row |= {"metadata_json": dumps(metadata or {})}
        self.versions.append(row | {"run_id": run["id"] if run else None})
        self.names.append(name)
        if pools:
            heapq.heappush(self.pending, (row["created_at"], vid, pools))
        else:  # never picked from a pool: usable at once, by name (holdout, corpus, code)
            self.released.add(vid)
        return vid

    def _release(self) -> None:
        """Versions become usable once made: the inputs of a run exist when it starts."""
        while self.pending and self.pending[0][0] <= self.clock:
            _, vid, pools = heapq.heappop(self.pending)
            self.released.add(vid)
            for pool in pools:
                self.pools[pool].append(vid)

    def _recent(self, pool: str, scale: float, uniform: float) -> int:
        """Mostly one of the newest items (a geometric pick), sometimes any item."""
        items = self.pools[pool]
        if self.rng.random() < uniform:
            return self.rng.choice(items)
        return items[-1 - min(len(items) - 1, int(self.rng.expovariate(1 / scale)))]

    def _run(
        self, kind: str, name: str, params: dict[str, Any], inputs: list[int], duration: float
    ) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        exit_code: int | None
        if roll < FAILED_SHARE:
            status, exit_code, error = "failed", 1, "exited with status 1"
        elif roll < FAILED_SHARE + KILLED_SHARE:
            status, exit_code, error = "killed", -15, "killed by SIGTERM"
        else:
            status, exit_code, error = "finished", (0 if rng.random() < 0.4 else None), ""
        if status != "finished":
            duration *= rng.uniform(0.05, 0.9)
        if rng.random() < 0.03:
            self.commit = self._hex(40)
        user = rng.choice(USERS)
        cwd = f"/home/{user}/ml-platform"
        branch = rng.choice(("main", "main", "dev", f"{user}/experiment"))
        git = {"root": cwd, "commit": self.commit, "branch": branch, "dirty": False}
        code: dict[str, Any] = {"git": git | {"remote": "git@github.com:acme/ml-platform.git"}}
        envs = self.tables["environments"]
        env_index = min(len(envs) - 1, len(self.kinds) * len(envs) // self.n)
        if rng.random() < 0.1:
            env_index = rng.randrange(len(envs))
        run: dict[str, Any] = {"id": self._hex(32), "host": rng.choice(HOSTS)}
        run["pid"] = rng.randrange(1_000, 4_000_000)
        end = self.clock + timedelta(seconds=duration)
        run |= {"status": status, "user": user, "started_at": self.clock, "heartbeat_at": end}
        run |= {"ended_at": end, "exit_code": exit_code, "error": error, "pid_started": None}
        run |= {"env_id": envs[env_index]["id"], "name": f"{kind}-{name}"}
        argv = ["python", SCRIPTS[kind], *(f"--{k}={v}" for k, v in list(params.items())[:3])]
        command = {"argv": argv, "script": f"{cwd}/{SCRIPTS[kind]}", "cwd": cwd}
        if kind in ("train", "finetune") and rng.random() < CODE_PATCH_SHARE:
            code["git"]["dirty"] = True
            at = self.clock - timedelta(seconds=2)
            size, files = rng.randrange(2_000, 200_000), rng.randrange(1, 12)
            patch = self._version("code/ml-platform", "code", "code", size, files, at=at, user=user)
            code["patch"] = self.ref(patch)
            inputs.append(patch)
        run |= {"command_json": dumps(command), "code_json": dumps(code)}
        self.runs.append(run)
        self.kinds.append(kind)
        self.tables["run_inputs"] += [{"run_id": run["id"], "version_id": v} for v in inputs]
        params_rows = [{"key": k, "value_json": dumps(v)} for k, v in params.items()]
        self.tables["params"] += [{"run_id": run["id"], **row} for row in params_rows]
        return run

    def _metrics(self, run: dict[str, Any], step: int, at: float, values: dict[str, float]) -> None:
        """Values logged at step, a fraction at of the way through the run."""
        logged_at = run["started_at"] + (run["ended_at"] - run["started_at"]) * at
        for key, value in values.items():
            row = {"key": key, "value": value, "step": step, "logged_at": logged_at}
            self.tables["metrics"].append({"run_id": run["id"], **row})

    def _generate(self) -> None:
        rng = self.rng
        n_datasets = max(12, round(self.n * DATASET_SHARE))
        n_sources = max(3, n_datasets // 12)
        source_imports = n_datasets - 4  # corpus:v1 and holdout v1-v3 are the other four
        self.corpus = self._import("data/corpus", "corpus.parquet", pools=())
        self.holdout.append(self._import("data/holdout", "holdout.parquet", pools=()))
        holdout_at = {round(self.n * 0.25), round(self.n * 0.8)}
        imported, mean_gap_s = 0, 365 * 86_400 / self.n
        for i in range(self.n):
            self.clock += timedelta(seconds=rng.expovariate(1 / mean_gap_s))
            while imported < source_imports * (0.1 + 0.9 * i / self.n):
                weights = [1 / (k + 1) for k in range(n_sources)]
                k = imported if imported < n_sources else rng.choices(range(n_sources), weights)[0]
                self._import(f"data/source-{k:02d}", "data", pools=("datasets",))
                imported += 1
            if i in holdout_at:
                self.holdout.append(self._import("data/holdout", "holdout.parquet", pools=()))
            self._release()
            getattr(self, f"_{rng.choices(list(MIX), list(MIX.values()))[0]}")()

    def _import(self, name: str, source_name: str, pools: tuple[str, ...]) -> int:
        """A dataset added by hand (`modelkeep add`), not by a run."""
        rng = self.rng
        rows = rng.randrange(100_000, 50_000_000)
        size = rows * rng.randrange(40, 400)
        files, user = rng.randrange(1, 5_000), rng.choice(USERS)
        at = self.clock - timedelta(seconds=1)
        meta = {"rows": rows, "source": "s3://acme-raw/" + name.removeprefix("data/")}
        return self._version(name, "dataset", source_name, size, files, None, pools, at, user, meta)

    def _prep(self) -> None:
        rng = self.rng
        recipe = rng.choice(RECIPES)
        if self.pools["features"] and rng.random() < REFINE_SHARE:
            parent = self._recent("features", 30, 0.1)
            base = self.names[parent - 1]
            out_name, recipe = base if base.endswith("-refined") else f"{base}-refined", "refine"
        else:
            if not self.pools["datasets"] or rng.random() < HOT_CORPUS_SHARE:
                parent = self.corpus
            else:
                parent = self._recent("datasets", 40, 0.2)
            out_name = f"features/{self.names[parent - 1].removeprefix('data/')}-{recipe}"
        params: dict[str, Any] = {"recipe": recipe}
        params["max_features"] = n_features = rng.choice((1024, 4096, 16384, 65536))
        params |= {"min_df": rng.choice((1, 2, 5)), "lowercase": rng.random() < 0.7}
        params["seed"] = rng.randrange(100)
        run = self._run("prep", recipe, params, [parent], rng.uniform(120, 1_800))
        rows = rng.randrange(100_000, 20_000_000)
        self._metrics(run, 0, 0.9, {"rows": float(rows), "n_features": float(n_features)})
        if run["status"] == "finished":
            size, files = rows * rng.randrange(16, 256), rng.randrange(1, 200)
            self._version(out_name, "dataset", "features", size, files, run, ("features",))

    def _train(self) -> None:
        rng = self.rng
        if not self.pools["features"]:
            return self._prep()
        features = self._recent("features", 40, 0.15)
        family = FAMILIES[(self.versions[features - 1]["artifact_id"] * 7) % len(FAMILIES)]
        if rng.random() < 0.3:
            family = rng.choice(FAMILIES)
        epochs = rng.randint(3, 8)
        params: dict[str, Any] = {"lr": rng.choice((1e-4, 3e-4, 1e-3, 3e-3, 1e-2))}
        params |= {"batch_size": rng.choice((32, 64, 128, 256)), "epochs": epochs}
        params |= {"optimizer": rng.choice(("adam", "adamw", "sgd")), "layers": rng.randint(2, 24)}
        params |= {"dropout": rng.choice((0.0, 0.1, 0.2, 0.3)), "seed": rng.randrange(1_000)}
        run = self._run("train", family, params, [features], rng.uniform(600, 21_600))
        quality = rng.uniform(0.70, 0.975)
        done = epochs if run["status"] == "finished" else rng.randint(0, epochs - 1)
        self._epochs(run, quality, done, epochs)
        if run["status"] == "finished":
            self.quality[self._model(run, f"models/{family}", ("models", "train_models"))] = quality

    def _epochs(self, run: dict[str, Any], quality: float, done: int, epochs: int) -> None:
        u = self.rng.uniform
        for e in range(done):
            reach = 1 - 0.55 ** (e + 1)
            auc = 0.5 + (quality - 0.5) * reach + u(-0.005, 0.005)
            loss = 0.69 * (1 - reach) + 0.1 + u(0, 0.02)
            values = {"loss": loss, "val_loss": loss * u(1.0, 1.3), "auc": auc}
            values |= {"accuracy": auc - u(0.02, 0.06), "f1": auc - u(0.05, 0.12)}
            self._metrics(run, e, (e + 1) / (epochs + 1), values)

    def _model(self, run: dict[str, Any], name: str, pools: tuple[str, ...]) -> int:
        size = self.rng.randrange(5 << 20, 2 << 30)
        return self._version(name, "model", "model.safetensors", size, 1, run, pools)

    def _eval(self) -> None:
        rng = self.rng
        if not self.pools["models"]:
            return self._train()
        model = self._recent("models", 60, 0.1)
        name = self.names[model - 1].removeprefix("models/")
        params = {"split": "holdout", "threshold": rng.choice((0.3, 0.5, 0.7)), "batch_size": 512}
        run = self._run("eval", name, params, [model, self.holdout[-1]], 300)
        auc = self.quality.get(model, 0.8) + rng.uniform(-0.02, 0.01)
        values = {"auc": auc, "accuracy": auc - 0.04, "precision": auc - 0.08, "recall": auc - 0.1}
        self._metrics(run, 0, 0.95, values)
        if run["status"] == "finished":
            size, meta = rng.randrange(2_000, 400_000), {"auc": round(auc, 4)}
            self._version(f"reports/{name}", "other", "report.json", size, 1, run, metadata=meta)

    def _finetune(self) -> None:
        rng = self.rng
        ready = [c for c in self.active if c.versions[-1] in self.released]
        if ready and (len(self.active) >= ACTIVE_CHAINS or rng.random() < 0.85):
            chain = rng.choice(ready)
        elif len(self.active) < ACTIVE_CHAINS and self.pools["train_models"]:
            base = self._recent("train_models", 50, 0.2)
            family = self.names[base - 1].removeprefix("models/")
            target = rng.randint(*CHAIN_DEPTH)
            name = f"models/ft-{len(self.chains):03d}-{family}"
            chain = Chain(name, [base], target, self._recent("features", 40, 0.1))
            self.chains.append(chain)
            self.active.append(chain)
        else:
            return self._train()
        tip = chain.versions[-1]
        params: dict[str, Any] = {"lr": rng.choice((1e-5, 3e-5, 1e-4))}
        params["steps"] = rng.choice((500, 1_000, 2_000))
        params |= {"lora_rank": rng.choice((8, 16, 64)), "base": self.ref(tip)}
        params["seed"] = rng.randrange(1_000)
        short, inputs = chain.name.removeprefix("models/"), [tip, chain.features]
        run = self._run("finetune", short, params, inputs, rng.uniform(1_200, 10_800))
        quality = min(0.99, self.quality.get(tip, 0.8) + rng.uniform(-0.004, 0.008))
        self._epochs(run, quality, 3 if run["status"] == "finished" else rng.randint(0, 2), 3)
        if run["status"] == "finished":
            vid = self._model(run, chain.name, ("models",))
            self.quality[vid] = quality
            chain.versions.append(vid)
            if len(chain.versions) > chain.target:
                self.active.remove(chain)


def expected_lineage(h: History, root: int, upstream: bool, downstream: bool) -> tuple[int, int]:
    """(nodes, edges) of a lineage query of root, by the walk modelkeep.meta.lineage does."""
    nodes, edges = {f"v{root}"}, set()
    for up in [True] * upstream + [False] * downstream:
        frontier, seen_v, seen_r = {root}, {root}, set[str]()
        while frontier:
            runs = set()
            for v in frontier:
                for rid in ([h.producer[v]] if v in h.producer else []) if up else h.users[v]:
                    edges.add((f"run:{rid}", f"v{v}") if up else (f"v{v}", f"run:{rid}"))
                    runs.add(rid)
            runs -= seen_r
            seen_r |= runs
            reached = set()
            for rid in runs:
                for v in h.inputs[rid] if up else h.outputs[rid]:
                    edges.add((f"v{v}", f"run:{rid}") if up else (f"run:{rid}", f"v{v}"))
                    reached.add(v)
            frontier = reached - seen_v
            seen_v |= reached
        nodes |= {f"v{v}" for v in seen_v} | {f"run:{rid}" for rid in seen_r}
    return len(nodes), len(edges)


def load(repo: Repo, h: History) -> int:
    """Insert the history, one transaction per table; returns the number of rows."""
    total = 0
    for name, rows in h.tables.items():
        with repo.db.write() as s:
            for i in range(0, len(rows), 5_000):
                s.execute(sa.insert(TABLES[name]), rows[i : i + 5_000])
        total += len(rows)
    with repo.db.write() as s:
        if s.get_bind().dialect.name == "postgresql":
            # Explicit ids do not move the sequences (later adds would collide), and ANALYZE is
            # what autovacuum does soon after a bulk load.
            for name in ("artifacts", "versions"):
                sequence = f"pg_get_serial_sequence('{name}', 'id')"
                s.execute(sa.text(f"SELECT setval({sequence}, max(id)) FROM {name}"))
            s.execute(sa.text("ANALYZE"))
    # One run read back through the API must be the one generated.
    i = max(i for i, r in enumerate(h.runs) if h.kinds[i] == "train" and r["status"] == "finished")
    run_id = h.runs[i]["id"]
    params = {p["key"]: json.loads(p["value_json"]) for p in h.of_run("params", run_id)}
    metrics = dict(sorted({m["key"]: m["value"] for m in h.of_run("metrics", run_id)}.items()))
    refs = sorted(map(h.ref, h.inputs[run_id])), list(map(h.ref, h.outputs[run_id]))
    got = repo.run(run_id[:12])
    if (got.params, got.metrics, sorted(got.inputs), list(got.outputs)) != (params, metrics, *refs):
        raise BenchError(f"run {run_id[:8]} does not read back as generated")
    return total


Landmark = tuple[str, str, list[str], str]  # label, ref, the CLI's direction flag, expected size


def db_mib(repo: Repo) -> float:
    if not repo.db.url.startswith("postgresql"):
        return sum(p.stat().st_size for p in repo.settings.control_dir.glob("meta.sqlite*")) / 2**20
    sizes = " + ".join(f"pg_total_relation_size('{t}')" for t in [*TABLES, "alembic_version"])
    with repo.db.read() as s:
        return float(s.execute(sa.text(f"SELECT {sizes}")).scalar() or 0) / 2**20


def graph_size(nodes: int, edges: int) -> str:
    return f"{nodes:,} nodes / {edges:,} edges"


def rows_size(rows: int) -> str:
    return f"{rows:,} row{'' if rows == 1 else 's'}"


def landmarks(h: History) -> list[Landmark]:
    if not h.chains:
        raise BenchError("the history has no fine-tuning chain; give more --runs")
    users = {v: len(h.users[v]) for v in range(1, len(h.versions) + 1)}
    deepest = max(h.chains, key=lambda c: len(c.versions))
    depth, half = len(deepest.versions) - 1, len(deepest.versions) // 2
    holdout = max(h.holdout, key=lambda v: users[v])
    half_on = [(r["id"], kind) for r, kind in zip(h.runs, h.kinds, strict=True)][len(h.runs) // 2 :]
    trained = [h.outputs[run_id] for run_id, kind in half_on if kind == "train"]
    typical = next(out[0] for out in trained if out and users[out[0]])
    end, mid, corpus = deepest.versions[-1], deepest.versions[half], h.corpus
    marks = [
        ("a trained model, both ways", typical, True, True),
        (f"the deepest chain's end (depth {depth}), upstream", end, True, False),
        (f"a mid-chain model (step {half} of {depth}), both ways", mid, True, True),
        (f"the holdout set ({users[holdout]:,} direct users), downstream", holdout, False, True),
        (f"the hot raw dataset ({users[corpus]:,} direct users), downstream", corpus, False, True),
    ]
    out = []
    for label, vid, up, down in marks:
        flags = [] if up and down else ["--upstream" if up else "--downstream"]
        expected = graph_size(*expected_lineage(h, vid, up, down))
        out.append((f"lineage of {label}", h.ref(vid), flags, expected))
    return out


def bench(
    repo: Repo, cli: Callable[..., str], h: History, marks: list[Landmark], db: str, repeat: int
) -> tuple[list[list[str]], list[str]]:
    """Every operation through the API (in this process) and through the CLI: table rows, and
    problems. Each gets one untimed warm-up call, then timed calls; describing the result
    (counting, parsing the CLI's JSON) is not timed. API and CLI must give the same result,
    and lineage counts those of the generated graph."""
    rows: list[list[str]] = []
    problems: list[str] = []

    def measure(label: str, via: str, call: Callable[[], T], describe: Callable[[T], str]) -> str:
        log(f"{db} {via}: {label}")
        size = describe(call())
        last, seconds = common.repeat(call, repeat, OP_BUDGET_S, MIN_SAMPLES)
        if describe(last) != size:
            raise BenchError(f"{label}: the result changed between calls: {describe(last)}")
        median, p95 = common.median_ms(seconds), common.p95_ms(seconds)
        rows.append([label, db, via, size, str(len(seconds)), f"{median:,.1f}", f"{p95:,.1f}"])
        return size

    def both(
        label: str,
        api: Callable[[], T],
        api_size: Callable[[T], str],
        args: list[str],
        cli_size: Callable[[str], str],
        expected: str | None = None,
    ) -> None:
        by_api = measure(label, "API", api, api_size)
        by_cli = measure(label, "CLI", lambda: cli(*args), cli_size)
        if by_api != by_cli or expected not in (None, by_api):
            problems.append(f"{db}: {label}: API {by_api}, CLI {by_cli}, expected {expected}")

    def found(runs: Sized) -> str:
        return rows_size(len(runs))

    def text_rows(out: str) -> str:
        return rows_size(len(out.splitlines()) - 1)  # minus the header

    def lines(text: str) -> str:
        return f"{len(text.splitlines()):,} lines of text"

    def json_rows(out: str) -> str:
        return rows_size(len(json.loads(out)["runs"]))

    def json_graph(out: str) -> str:
        doc = json.loads(out)
        return graph_size(len(doc["nodes"]), len(doc["edges"]))

    def graph(lineage: Lineage) -> str:
        return graph_size(len(lineage.nodes), len(lineage.edges))

    for label, ref, flags, expected in marks:
        up, down = "--downstream" not in flags, "--upstream" not in flags
        api = partial(repo.lineage, ref, upstream=up, downstream=down)
        both(label, api, graph, ["lineage", ref, *flags, "--format", "json"], json_graph, expected)
    hot = marks[-1][1]
    text = partial(lambda: repo.lineage(hot, upstream=False).to_text())
    both(f"{marks[-1][0]}, as text", text, lines, ["lineage", hot, "--downstream"], lines)
    n = len(h.runs)
    both(f"runs: all {n:,}", repo.runs, found, ["runs", "--limit", str(n), "--json"], json_rows)
    both(
        "runs: newest 50 (CLI default, text)",
        partial(repo.runs, limit=50),
        found,
        ["runs"],
        text_rows,
    )
    where = f'runs --where "{WHERE}" --limit 50 ({len(repo.runs(where=[WHERE])):,} match)'
    args = ["runs", "--where", WHERE, "--limit", "50", "--json"]
    both(where, partial(repo.runs, where=[WHERE], limit=50), found, args, json_rows)
    later = zip(h.runs[n // 3 :], h.kinds[n // 3 :], strict=True)
    shown = next(r["id"] for r, kind in later if kind == "train" and h.outputs[r["id"]])
    both(
        f"runs show {shown[:8]} (train run, {len(h.of_run('metrics', shown))} metric values)",
        partial(repo.run, shown[:8]),
        lambda run: rows_size(int(run.id == shown)),
        ["runs", "show", shown[:8], "--json"],
        lambda out: rows_size(int(json.loads(out)["id"] == shown)),
    )
    measure("CLI start-up: modelkeep --version", "CLI", lambda: cli("--version"), lambda _: "-")
    return rows, problems


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time lineage and run listings on a synthetic history.")
    add = p.add_argument
    add("--runs", type=int, default=10_000, help="runs in the history (default 10,000)")
    add("--repeat", type=int, default=10, help="timed calls per operation (default 10)")
    add("--work", type=Path, help="keep the repositories here (default: a temporary folder)")
    add("--postgres", metavar="URL", help="also run on this empty PostgreSQL database")
    add("--keep-postgres", action="store_true", help="leave the tables in PostgreSQL")
    args = p.parse_args(argv)
    if args.runs < MIN_RUNS or args.repeat < 1:
        p.error(f"--runs must be at least {MIN_RUNS}, --repeat at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = common.process_env()
    temp = None if args.work else tempfile.mkdtemp(prefix="modelkeep-bench-lineage-")
    work: Path = Path(temp) if temp else args.work.absolute()
    lines = ["## modelkeep lineage and runs benchmark", "", f"* machine: {common.machine()}"]
    rows: list[list[str]] = []
    problems: list[str] = []
    try:
        if any((work / db).exists() for db in ("sqlite", "postgres")):
            raise BenchError(f"{work} already holds repositories; give another --work")
        log(f"generating a history of {args.runs:,} runs")
        h = History(args.runs)
        lines.append(f"* history: {h.summary()}; generated in {h.generate_s:.1f} s")
        log(lines[-1])
        marks = landmarks(h)
        for db in ["sqlite", "postgres"] if args.postgres else ["sqlite"]:
            root, t0 = work / db, time.perf_counter()
            url = common.postgres_url(args.postgres) if db == "postgres" else None
            pg = common.postgres_repo(root, url, args.keep_postgres) if url else None
            with pg or mk.init(root) as repo:
                init_s = time.perf_counter() - t0
                log(f"{db}: inserting the history")
                n_rows = load(repo, h)
                lines.append(
                    f"* build ({db}): `mk.init` {init_s:.2f} s, {n_rows:,} rows inserted (one "
                    f"transaction per table) in {time.perf_counter() - t0 - init_s:.1f} s; "
                    f"database {db_mib(repo):.1f} MiB"
                )
                cli = common.cli(root, {**env, "MODELKEEP_DATABASE_URL": url} if url else env)
                got = bench(repo, cli, h, marks, db, args.repeat)
                rows, problems = rows + got[0], problems + got[1]
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        if temp:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"repositories kept in {work}")
    script = Path(common.cli_command()[-1]).name
    lines += [
        f"* load average after measuring: {common.load_avg()}",
        f"* CLI: `{script} --repo REPO ...`, one process per call, output read through a pipe "
        "(parsing it is not timed); API: the same call on an open `mk.Repo`; median and p95 "
        "(nearest rank) of n timed calls after an untimed warm-up call",
        "",
        *common.md_table(["operation", "db", "via", "result", "n", "median ms", "p95 ms"], rows, 4),
        "",
        "Landmark refs:",
        *(f"* {label}: `{ref}`" for label, ref, *_ in marks),
        *(["", "Problems:", *(f"* {p}" for p in problems)] if problems else []),
    ]
    print("\n".join(lines))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
