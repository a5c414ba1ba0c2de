#!/usr/bin/env python3
"""Lineage and run-listing benchmark on a synthetic history of 10,000 runs.

Builds a modelkeep repository (``mk.init``) in a temporary folder and fills its metadata
database in bulk, with SQLAlchemy inserts into modelkeep's own tables (a few transactions),
from a seeded history shaped like real ML work:

* a few hundred dataset versions: ``data/source-NN`` imported over time, a hot
  ``data/corpus:v1`` that many preprocessing runs read, and a ``data/holdout`` evaluation
  set (3 versions) that every evaluation run reads, so one version has 1,000+ users;
* preprocessing runs: dataset -> features, and features -> refined features (chains);
* training runs: features (+ sometimes a code patch) -> model, ~7 params and 5 metrics
  logged over 3-8 epochs;
* evaluation runs: model + holdout -> report, 4 metrics;
* fine-tuning chains: model -> model, 20-40 steps deep.

The store holds no bytes: versions point at made-up digests, which lineage queries and run
listings never read. The script then times lineage queries on landmark versions and run
listings, in-process through the Python API and end to end through the CLI (one subprocess
per call, interpreter start-up included), checks the lineage node and edge counts against
the generated graph, and prints one Markdown table of medians and p95s.

Run ``python benchmarks/bench_lineage.py --help`` for the options; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import heapq
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
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any, TypeVar

import sqlalchemy as sa

import modelkeep as mk
from modelkeep import config
from modelkeep.capture.environment import canonical_json, environment_id
from modelkeep.meta import Lineage
from modelkeep.meta.models import Base
from modelkeep.repo import Repo

SEED = 20_240_917
HISTORY_START = datetime(2024, 1, 1, tzinfo=UTC)
HISTORY_DAYS = 365
DEFAULT_RUNS = 10_000
DEFAULT_REPEAT = 10
MIN_RUNS = 100
OP_BUDGET_S = 15.0  # an operation stops repeating after this long, once it has MIN_SAMPLES
MIN_SAMPLES = 3
CMD_TIMEOUT_S = 900
INSERT_CHUNK = 5_000
WHERE = "metrics.auc > 0.9"
WHERE_LIMIT = 50

# Run mix, in percent of all runs.
MIX = {"prep": 15, "train": 40, "eval": 35, "finetune": 10}
DATASET_SHARE = 0.03  # dataset versions per run: 300 for 10,000 runs
HOT_CORPUS_SHARE = 0.3  # of preprocessing runs that read a raw dataset
REFINE_SHARE = 0.25  # of preprocessing runs that refine an existing features version
CODE_PATCH_SHARE = 0.08  # of training and fine-tuning runs, run from a dirty Git tree
CHAIN_DEPTH = (20, 40)
ACTIVE_CHAINS = 4
FAILED_SHARE, KILLED_SHARE = 0.03, 0.01

USERS = ("alice", "bob", "carol", "dan", "erin", "farid")
HOSTS = (*(f"gpu-{i:02d}" for i in range(1, 9)), "laptop-alice", "laptop-dan")
FAMILIES = (
    "ctr-xgb",
    "churn-lgbm",
    "fraud-gbdt",
    "resnet50-cls",
    "vit-small",
    "bert-intent",
    "t5-summarize",
    "ranker-lambdamart",
    "asr-conformer",
    "detr-detect",
    "unet-seg",
    "gpt2-small",
    "wide-deep",
    "tabnet",
    "demand-prophet",
    "two-tower-recsys",
)
RECIPES = ("tfidf", "bert-emb", "normalize", "hashing", "pca64", "tokenize")
TRAIN_METRICS = ("loss", "val_loss", "auc", "accuracy", "f1")
EVAL_METRICS = ("auc", "accuracy", "precision", "recall")
FINISHED, FAILED, KILLED = "finished", "failed", "killed"

T = TypeVar("T")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


# --------------------------------------------------------------------------------------
# The synthetic history
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class GenArtifact:
    id: int
    name: str
    type: str
    created_at: datetime
    latest: int = 0


@dataclass(slots=True)
class GenVersion:
    id: int
    artifact: GenArtifact
    number: int
    kind: str
    digest: str
    size: int
    file_count: int
    source_name: str
    created_at: datetime
    user: str
    run_id: str | None
    metadata: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.artifact.name}:v{self.number}"


@dataclass(slots=True)
class GenRun:
    id: str
    kind: str  # prep, train, eval or finetune
    name: str
    status: str
    user: str
    host: str
    pid: int
    started_at: datetime
    ended_at: datetime
    exit_code: int | None
    error: str
    env_id: str
    command: dict[str, Any]
    code: dict[str, Any]
    params: dict[str, Any]
    inputs: list[int]  # version ids
    metrics: list[tuple[str, float, int, datetime]] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Chain:
    """A fine-tuning chain: each step reads the previous model and writes the next."""

    name: str
    versions: list[int]  # the base model first
    target: int
    features: int


@dataclass
class History:
    n_runs: int
    artifacts: list[GenArtifact]
    versions: list[GenVersion]  # versions[i].id == i + 1
    runs: list[GenRun]
    environments: dict[str, str]  # id -> canonical JSON
    chains: list[Chain]
    holdout: list[int]
    corpus: int
    generate_s: float = 0.0

    def version(self, vid: int) -> GenVersion:
        return self.versions[vid - 1]

    def counts(self) -> dict[str, int]:
        return {
            "runs": len(self.runs),
            "artifacts": len(self.artifacts),
            "versions": len(self.versions),
            "dataset versions": sum(v.artifact.name.startswith("data/") for v in self.versions),
            "features versions": sum(
                v.artifact.name.startswith("features/") for v in self.versions
            ),
            "run inputs": sum(len(r.inputs) for r in self.runs),
            "params": sum(len(r.params) for r in self.runs),
            "metric values": sum(len(r.metrics) for r in self.runs),
        }

    def mix(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.runs:
            out[r.kind] += 1
        return dict(out)


class Generator:
    """Makes a History, step by step in time; every choice comes from one seeded Random."""

    def __init__(self, n_runs: int, seed: int = SEED) -> None:
        self.n = n_runs
        self.rng = Random(seed)
        self.artifacts: dict[str, GenArtifact] = {}
        self.versions: list[GenVersion] = []
        self.runs: list[GenRun] = []
        self.clock = HISTORY_START
        self.mean_gap_s = HISTORY_DAYS * 86_400 / n_runs
        # (created at, version id, pools it joins then)
        self.pending: list[tuple[datetime, int, tuple[str, ...]]] = []
        self.released: set[int] = set()
        self.pools: dict[str, list[int]] = defaultdict(list)
        self.quality: dict[int, float] = {}  # model version id -> the auc it reaches
        self.chains: list[Chain] = []
        self.active: list[Chain] = []
        self.holdout: list[int] = []
        self.commit = self._hex(40)
        self.envs = self._environments()

    # -- helpers ----------------------------------------------------------------

    def _hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def _environments(self) -> list[tuple[str, str]]:
        packages = [f"pkg-{i:03d}" for i in range(140)]
        envs = []
        for i, py in enumerate(("3.10.14", "3.11.9", "3.11.9", "3.12.4", "3.12.4", "3.12.7")):
            doc = {
                "python": {"version": py, "implementation": "CPython"},
                "os": {"system": "Linux", "release": f"6.{i}.0-generic", "machine": "x86_64"},
                "cpu": {"model": "AMD EPYC 7763 64-Core Processor", "count": 64},
                "gpu": [{"name": "NVIDIA A100-SXM4-80GB", "memory_mb": 81920}] * 8,
                "cuda": "12.1",
                "torch": {"version": f"2.{i}.0", "cuda": "12.1"},
                "packages": {
                    p: f"{1 + (j + i) % 7}.{(j * 3 + i) % 20}.0" for j, p in enumerate(packages)
                },
            }
            envs.append((environment_id(doc), canonical_json(doc).decode()))
        return envs

    def _artifact(self, name: str, type_: str) -> GenArtifact:
        art = self.artifacts.get(name)
        if art is None:
            art = GenArtifact(len(self.artifacts) + 1, name, type_, self.clock)
            self.artifacts[name] = art
        return art

    def _version(
        self,
        name: str,
        type_: str,
        *,
        at: datetime,
        run_id: str | None,
        kind: str,
        size: int,
        file_count: int,
        source_name: str,
        user: str,
        pools: tuple[str, ...],
        metadata: dict[str, Any] | None = None,
    ) -> int:
        art = self._artifact(name, type_)
        art.latest += 1
        vid = len(self.versions) + 1
        self.versions.append(
            GenVersion(
                id=vid,
                artifact=art,
                number=art.latest,
                kind=kind,
                digest=self._hex(64),
                size=size,
                file_count=file_count,
                source_name=source_name,
                created_at=at,
                user=user,
                run_id=run_id,
                metadata=metadata or {},
            )
        )
        if pools:
            heapq.heappush(self.pending, (at, vid, pools))
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
        back = min(len(items) - 1, int(self.rng.expovariate(1 / scale)))
        return items[-1 - back]

    def _run(
        self, kind: str, name: str, params: dict[str, Any], inputs: list[int], duration_s: float
    ) -> GenRun:
        rng = self.rng
        roll = rng.random()
        exit_code: int | None
        if roll < FAILED_SHARE:
            status, exit_code, error = FAILED, 1, "exited with status 1"
        elif roll < FAILED_SHARE + KILLED_SHARE:
            status, exit_code, error = KILLED, -15, "killed by SIGTERM"
        else:
            status, exit_code, error = FINISHED, (0 if rng.random() < 0.4 else None), ""
        if status != FINISHED:
            duration_s *= rng.uniform(0.05, 0.9)
        if rng.random() < 0.03:
            self.commit = self._hex(40)
        user = rng.choice(USERS)
        cwd = f"/home/{user}/ml-platform"
        script = {"prep": "prep.py", "train": "train.py", "eval": "evaluate.py"}.get(
            kind, "finetune.py"
        )
        code: dict[str, Any] = {
            "git": {
                "root": cwd,
                "commit": self.commit,
                "branch": rng.choice(("main", "main", "dev", f"{user}/experiment")),
                "remote": "git@github.com:acme/ml-platform.git",
                "dirty": False,
            }
        }
        env_index = min(len(self.envs) - 1, len(self.runs) * len(self.envs) // self.n)
        if rng.random() < 0.1:
            env_index = rng.randrange(len(self.envs))
        run = GenRun(
            id=self._hex(32),
            kind=kind,
            name=name,
            status=status,
            user=user,
            host=rng.choice(HOSTS),
            pid=rng.randrange(1_000, 4_000_000),
            started_at=self.clock,
            ended_at=self.clock + timedelta(seconds=duration_s),
            exit_code=exit_code,
            error=error,
            env_id=self.envs[env_index][0],
            command={
                "argv": ["python", script, *(f"--{k}={v}" for k, v in list(params.items())[:3])],
                "script": f"{cwd}/{script}",
                "cwd": cwd,
            },
            code=code,
            params=params,
            inputs=inputs,
        )
        if kind in ("train", "finetune") and rng.random() < CODE_PATCH_SHARE:
            code["git"]["dirty"] = True
            patch = self._version(
                "code/ml-platform",
                "code",
                at=self.clock - timedelta(seconds=2),
                run_id=None,
                kind="dir",
                size=rng.randrange(2_000, 200_000),
                file_count=rng.randrange(1, 12),
                source_name="code",
                user=user,
                pools=(),
            )
            code["patch"] = self.versions[patch - 1].ref
            run.inputs.append(patch)
        self.runs.append(run)
        return run

    def _at(self, run: GenRun, fraction: float) -> datetime:
        return run.started_at + (run.ended_at - run.started_at) * fraction

    # -- the history ------------------------------------------------------------

    def generate(self) -> History:
        t0 = time.perf_counter()
        rng = self.rng
        n_datasets = max(12, round(self.n * DATASET_SHARE))
        n_sources = max(3, n_datasets // 12)
        source_imports = n_datasets - 4  # corpus:v1 and holdout v1-v3 are the other four
        corpus = self._import("data/corpus", "corpus.parquet", pools=())
        self.holdout.append(self._import("data/holdout", "holdout.parquet", pools=()))
        holdout_at = {round(self.n * 0.25), round(self.n * 0.8)}
        imported = 0
        kinds = list(MIX)
        weights = list(MIX.values())
        for i in range(self.n):
            self.clock += timedelta(seconds=rng.expovariate(1 / self.mean_gap_s))
            while imported < source_imports * (0.1 + 0.9 * i / self.n):
                k = imported if imported < n_sources else self._pick_source(n_sources)
                self._import(f"data/source-{k:02d}", "data", pools=("datasets",))
                imported += 1
            if i in holdout_at:
                self.holdout.append(self._import("data/holdout", "holdout.parquet", pools=()))
            self._release()
            action = rng.choices(kinds, weights)[0]
            if action == "finetune":
                self._finetune()
            elif action == "eval":
                self._eval()
            elif action == "train":
                self._train()
            else:
                self._prep(corpus)
        history = History(
            n_runs=self.n,
            artifacts=list(self.artifacts.values()),
            versions=self.versions,
            runs=self.runs,
            environments=dict(self.envs),
            chains=self.chains,
            holdout=self.holdout,
            corpus=corpus,
        )
        history.generate_s = time.perf_counter() - t0
        return history

    def _pick_source(self, n_sources: int) -> int:
        weights = [1 / (k + 1) for k in range(n_sources)]
        return self.rng.choices(range(n_sources), weights)[0]

    def _import(self, name: str, source_name: str, pools: tuple[str, ...]) -> int:
        """A dataset added by hand (`modelkeep add`), not by a run."""
        rng = self.rng
        rows = rng.randrange(100_000, 50_000_000)
        vid = self._version(
            name,
            "dataset",
            at=self.clock - timedelta(seconds=1),
            run_id=None,
            kind="dir",
            size=rows * rng.randrange(40, 400),
            file_count=rng.randrange(1, 5_000),
            source_name=source_name,
            user=rng.choice(USERS),
            pools=pools,
            metadata={"rows": rows, "source": "s3://acme-raw/" + name.removeprefix("data/")},
        )
        return vid

    def _prep(self, corpus: int) -> None:
        rng = self.rng
        recipe = rng.choice(RECIPES)
        if self.pools["features"] and rng.random() < REFINE_SHARE:
            parent = self._recent("features", 30, 0.1)
            base = self.versions[parent - 1].artifact.name
            out_name = base if base.endswith("-refined") else f"{base}-refined"
            recipe = "refine"
        else:
            if not self.pools["datasets"] or rng.random() < HOT_CORPUS_SHARE:
                parent = corpus
            else:
                parent = self._recent("datasets", 40, 0.2)
            short = self.versions[parent - 1].artifact.name.removeprefix("data/")
            out_name = f"features/{short}-{recipe}"
        params = {
            "recipe": recipe,
            "max_features": rng.choice((1024, 4096, 16384, 65536)),
            "min_df": rng.choice((1, 2, 5)),
            "lowercase": rng.random() < 0.7,
            "seed": rng.randrange(100),
        }
        run = self._run("prep", f"prep-{recipe}", params, [parent], rng.uniform(120, 1_800))
        rows = rng.randrange(100_000, 20_000_000)
        run.metrics += [
            ("rows", float(rows), 0, self._at(run, 0.9)),
            ("n_features", float(params["max_features"]), 0, self._at(run, 0.9)),
        ]
        if run.status == FINISHED:
            vid = self._version(
                out_name,
                "dataset",
                at=run.ended_at,
                run_id=run.id,
                kind="dir",
                size=rows * rng.randrange(16, 256),
                file_count=rng.randrange(1, 200),
                source_name="features",
                user=run.user,
                pools=("features",),
            )
            run.outputs.append(vid)

    def _train(self) -> None:
        rng = self.rng
        if not self.pools["features"]:
            return self._prep(self._corpus_id())
        features = self._recent("features", 40, 0.15)
        family = FAMILIES[(self.versions[features - 1].artifact.id * 7) % len(FAMILIES)]
        if rng.random() < 0.3:
            family = rng.choice(FAMILIES)
        epochs = rng.randint(3, 8)
        params = {
            "lr": rng.choice((1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),
            "batch_size": rng.choice((32, 64, 128, 256)),
            "epochs": epochs,
            "optimizer": rng.choice(("adam", "adamw", "sgd")),
            "layers": rng.randint(2, 24),
            "dropout": rng.choice((0.0, 0.1, 0.2, 0.3)),
            "seed": rng.randrange(1_000),
        }
        run = self._run("train", f"train-{family}", params, [features], rng.uniform(600, 21_600))
        quality = rng.uniform(0.70, 0.975)
        done = epochs if run.status == FINISHED else rng.randint(0, epochs - 1)
        self._epochs(run, quality, done, epochs)
        if run.status == FINISHED:
            vid = self._model(run, f"models/{family}", ("models", "train_models"))
            self.quality[vid] = quality

    def _epochs(self, run: GenRun, quality: float, done: int, epochs: int) -> None:
        rng = self.rng
        for e in range(done):
            reach = 1 - 0.55 ** (e + 1)
            auc = 0.5 + (quality - 0.5) * reach + rng.uniform(-0.005, 0.005)
            loss = 0.69 * (1 - reach) + 0.1 + rng.uniform(0, 0.02)
            at = self._at(run, (e + 1) / (epochs + 1))
            values = {
                "loss": loss,
                "val_loss": loss * rng.uniform(1.0, 1.3),
                "auc": auc,
                "accuracy": auc - rng.uniform(0.02, 0.06),
                "f1": auc - rng.uniform(0.05, 0.12),
            }
            run.metrics += [(k, values[k], e, at) for k in TRAIN_METRICS]

    def _model(self, run: GenRun, name: str, pools: tuple[str, ...]) -> int:
        vid = self._version(
            name,
            "model",
            at=run.ended_at,
            run_id=run.id,
            kind="file",
            size=self.rng.randrange(5 << 20, 2 << 30),
            file_count=1,
            source_name="model.safetensors",
            user=run.user,
            pools=pools,
        )
        run.outputs.append(vid)
        return vid

    def _corpus_id(self) -> int:
        return next(v.id for v in self.versions if v.artifact.name == "data/corpus")

    def _eval(self) -> None:
        rng = self.rng
        if not self.pools["models"]:
            return self._train()
        model = self._recent("models", 60, 0.1)
        params = {"split": "holdout", "threshold": rng.choice((0.3, 0.5, 0.7)), "batch_size": 512}
        name = self.versions[model - 1].artifact.name.removeprefix("models/")
        run = self._run("eval", f"eval-{name}", params, [model, self.holdout[-1]], 300)
        auc = self.quality.get(model, 0.8) + rng.uniform(-0.02, 0.01)
        at = self._at(run, 0.95)
        values = {
            "auc": auc,
            "accuracy": auc - 0.04,
            "precision": auc - 0.08,
            "recall": auc - 0.1,
        }
        run.metrics += [(k, values[k], 0, at) for k in EVAL_METRICS]
        if run.status == FINISHED:
            vid = self._version(
                f"reports/{name}",
                "other",
                at=run.ended_at,
                run_id=run.id,
                kind="file",
                size=rng.randrange(2_000, 400_000),
                file_count=1,
                source_name="report.json",
                user=run.user,
                pools=(),
                metadata={"auc": round(auc, 4)},
            )
            run.outputs.append(vid)

    def _finetune(self) -> None:
        rng = self.rng
        ready = [c for c in self.active if c.versions[-1] in self.released]
        if ready and (len(self.active) >= ACTIVE_CHAINS or rng.random() < 0.85):
            chain = rng.choice(ready)
        elif len(self.active) < ACTIVE_CHAINS and self.pools["train_models"]:
            base = self._recent("train_models", 50, 0.2)
            family = self.versions[base - 1].artifact.name.removeprefix("models/")
            chain = Chain(
                name=f"models/ft-{len(self.chains):03d}-{family}",
                versions=[base],
                target=rng.randint(*CHAIN_DEPTH),
                features=self._recent("features", 40, 0.1),
            )
            self.chains.append(chain)
            self.active.append(chain)
        else:
            return self._train()
        tip = chain.versions[-1]
        params = {
            "lr": rng.choice((1e-5, 3e-5, 1e-4)),
            "steps": rng.choice((500, 1_000, 2_000)),
            "lora_rank": rng.choice((8, 16, 64)),
            "base": self.versions[tip - 1].ref,
            "seed": rng.randrange(1_000),
        }
        short = chain.name.removeprefix("models/")
        run = self._run(
            "finetune",
            f"finetune-{short}",
            params,
            [tip, chain.features],
            rng.uniform(1_200, 10_800),
        )
        quality = min(0.99, self.quality.get(tip, 0.8) + rng.uniform(-0.004, 0.008))
        self._epochs(run, quality, 3 if run.status == FINISHED else rng.randint(0, 2), 3)
        if run.status == FINISHED:
            vid = self._model(run, chain.name, ("models",))
            self.quality[vid] = quality
            chain.versions.append(vid)
            if len(chain.versions) > chain.target:
                self.active.remove(chain)


# --------------------------------------------------------------------------------------
# Expected lineage, from the generated graph (mirrors the walk in modelkeep.meta.lineage)
# --------------------------------------------------------------------------------------


class Graph:
    def __init__(self, history: History) -> None:
        self.producer: dict[int, str] = {}
        self.inputs: dict[str, list[int]] = {}
        self.outputs: dict[str, list[int]] = {}
        self.users: dict[int, list[str]] = defaultdict(list)
        for r in history.runs:
            self.inputs[r.id] = r.inputs
            self.outputs[r.id] = r.outputs
            for v in r.inputs:
                self.users[v].append(r.id)
            for v in r.outputs:
                self.producer[v] = r.id

    def lineage(self, root: int, *, upstream: bool, downstream: bool) -> tuple[int, int]:
        """(nodes, edges) that a lineage query of root should return."""
        versions: set[int] = {root}
        runs: set[str] = set()
        edges: set[tuple[str, str]] = set()
        if upstream:
            frontier, seen_v, seen_r = {root}, {root}, set[str]()
            while frontier:
                producers = set()
                for v in frontier:
                    p = self.producer.get(v)
                    if p is not None:
                        edges.add((f"run:{p}", f"v{v}"))
                        producers.add(p)
                producers -= seen_r
                seen_r |= producers
                runs |= producers
                reached = set()
                for p in producers:
                    for v in self.inputs[p]:
                        edges.add((f"v{v}", f"run:{p}"))
                        reached.add(v)
                versions |= reached
                frontier = reached - seen_v
                seen_v |= frontier
        if downstream:
            frontier, seen_v, seen_r = {root}, {root}, set()
            while frontier:
                users = set()
                for v in frontier:
                    for r in self.users.get(v, ()):
                        edges.add((f"v{v}", f"run:{r}"))
                        users.add(r)
                runs |= users
                users -= seen_r
                seen_r |= users
                made = set()
                for r in users:
                    for v in self.outputs[r]:
                        edges.add((f"run:{r}", f"v{v}"))
                        made.add(v)
                versions |= made
                frontier = made - seen_v
                seen_v |= frontier
        return len(versions) + len(runs), len(edges)


# --------------------------------------------------------------------------------------
# Loading the history into the database
# --------------------------------------------------------------------------------------


def _rows(history: History) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(table, rows) in an order the foreign keys accept."""
    yield "environments", [{"id": k, "doc_json": v} for k, v in history.environments.items()]
    yield (
        "runs",
        [
            {
                "id": r.id,
                "name": r.name,
                "status": r.status,
                "user": r.user,
                "host": r.host,
                "pid": r.pid,
                "pid_started": None,
                "started_at": r.started_at,
                "heartbeat_at": r.ended_at,
                "ended_at": r.ended_at,
                "exit_code": r.exit_code,
                "error": r.error,
                "command_json": json.dumps(r.command, sort_keys=True),
                "code_json": json.dumps(r.code, sort_keys=True),
                "env_id": r.env_id,
            }
            for r in history.runs
        ],
    )
    yield (
        "artifacts",
        [
            {
                "id": a.id,
                "name": a.name,
                "type": a.type,
                "created_at": a.created_at,
                "latest_number": a.latest,
            }
            for a in history.artifacts
        ],
    )
    yield (
        "versions",
        [
            {
                "id": v.id,
                "artifact_id": v.artifact.id,
                "number": v.number,
                "kind": v.kind,
                "digest": v.digest,
                "size": v.size,
                "file_count": v.file_count,
                "mode": 0o644 if v.kind == "file" else 0,
                "source_name": v.source_name.encode(),
                "created_at": v.created_at,
                "user": v.user,
                "message": "",
                "metadata_json": json.dumps(v.metadata, sort_keys=True),
                "run_id": v.run_id,
            }
            for v in history.versions
        ],
    )
    yield (
        "run_inputs",
        [{"run_id": r.id, "version_id": v} for r in history.runs for v in r.inputs],
    )
    yield (
        "params",
        [
            {"run_id": r.id, "key": k, "value_json": json.dumps(v, sort_keys=True)}
            for r in history.runs
            for k, v in r.params.items()
        ],
    )
    yield (
        "metrics",
        [
            {"run_id": r.id, "key": k, "value": value, "step": step, "logged_at": at}
            for r in history.runs
            for k, value, step, at in r.metrics
        ],
    )


def load(repo: Repo, history: History) -> tuple[float, int]:
    """Insert the history, one transaction per table; returns (seconds, rows)."""
    t0 = time.perf_counter()
    total = 0
    for name, rows in _rows(history):
        table = Base.metadata.tables[name]
        with repo.db.write() as s:
            for i in range(0, len(rows), INSERT_CHUNK):
                s.execute(sa.insert(table), rows[i : i + INSERT_CHUNK])
        total += len(rows)
    with repo.db.write() as s:
        if s.get_bind().dialect.name == "postgresql":
            # Explicit ids do not move the sequences; later adds would collide without this.
            for name in ("artifacts", "versions"):
                s.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), max(id)) "
                        f"FROM {name}"
                    )
                )
    return time.perf_counter() - t0, total


def check_loaded(repo: Repo, history: History) -> None:
    """One run read back through the API must be the one generated."""
    run = next(r for r in reversed(history.runs) if r.kind == "train" and r.status == FINISHED)
    got = repo.run(run.id[:12])
    last: dict[str, float] = {}
    for key, value, _, _ in run.metrics:
        last[key] = value
    want_inputs = sorted(history.version(v).ref for v in run.inputs)
    want_outputs = [history.version(v).ref for v in run.outputs]
    problems = []
    if got.params != run.params:
        problems.append(f"params {got.params} != {run.params}")
    if got.metrics != dict(sorted(last.items())):
        problems.append(f"metrics {got.metrics} != {last}")
    if sorted(got.inputs) != want_inputs or list(got.outputs) != want_outputs:
        problems.append(f"inputs/outputs {got.inputs}/{got.outputs}")
    if problems:
        raise BenchError(f"run {run.id[:8]} does not read back as generated: {problems}")


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


@dataclass
class Result:
    operation: str
    db: str
    via: str
    size: str
    samples: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def p95_ms(self) -> float:
        """Nearest rank: with fewer than 20 samples this is the slowest one."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] * 1000


def measure(
    call: Callable[[], T], describe: Callable[[T], str], repeat: int
) -> tuple[str, list[float]]:
    """One untimed warm-up call, then up to repeat timed calls (fewer past OP_BUDGET_S)."""
    size = describe(call())
    samples: list[float] = []
    start = time.perf_counter()
    value: T | None = None
    while len(samples) < repeat:
        t0 = time.perf_counter()
        value = call()
        samples.append(time.perf_counter() - t0)
        if len(samples) >= MIN_SAMPLES and time.perf_counter() - start > OP_BUDGET_S:
            break
    assert value is not None
    last = describe(value)
    if last != size:
        raise BenchError(f"the result changed between calls: {size} then {last}")
    return size, samples


def graph_size(nodes: int, edges: int) -> str:
    return f"{nodes:,} nodes / {edges:,} edges"


def lines_size(lines: int) -> str:
    return f"{lines:,} lines of text"


def rows_size(rows: int) -> str:
    return f"{rows:,} row{'' if rows == 1 else 's'}"


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "modelkeep"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "modelkeep"]


class CliRunner:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.base = cli_command()

    def __call__(self, args: Sequence[str]) -> str:
        argv = [*self.base, "--repo", str(self.root), *args]
        proc = subprocess.run(
            argv,
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CMD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip())[-600:]
            raise BenchError(f"`{' '.join(argv)}` exited {proc.returncode}: {tail}")
        return proc.stdout


@dataclass
class Landmark:
    label: str
    ref: str
    upstream: bool
    downstream: bool
    expected: tuple[int, int]


def landmarks(history: History) -> list[Landmark]:
    graph = Graph(history)
    if not history.chains:
        raise BenchError("the history has no fine-tuning chain; give more --runs")
    deepest = max(history.chains, key=lambda c: len(c.versions))
    depth = len(deepest.versions) - 1
    half = len(deepest.versions) // 2
    end, mid = deepest.versions[-1], deepest.versions[half]
    holdout = max(history.holdout, key=lambda v: len(graph.users.get(v, ())))
    middle = history.runs[len(history.runs) // 2 :]
    typical = next(
        r.outputs[0]
        for r in middle
        if r.kind == "train" and r.outputs and graph.users[r.outputs[0]]
    )
    users = {v: len(graph.users.get(v, ())) for v in (holdout, history.corpus)}

    def mark(label: str, vid: int, up: bool, down: bool) -> Landmark:
        ref = history.version(vid).ref
        return Landmark(label, ref, up, down, graph.lineage(vid, upstream=up, downstream=down))

    return [
        mark(
            "lineage of a trained model, both ways",
            typical,
            True,
            True,
        ),
        mark(f"lineage of the deepest chain's end (depth {depth}), upstream", end, True, False),
        mark(f"lineage of a mid-chain model (step {half} of {depth}), both ways", mid, True, True),
        mark(
            f"lineage of the holdout set ({users[holdout]:,} direct users), downstream",
            holdout,
            False,
            True,
        ),
        mark(
            f"lineage of the hot raw dataset ({users[history.corpus]:,} direct users), downstream",
            history.corpus,
            False,
            True,
        ),
    ]


def bench(
    repo: Repo,
    cli: CliRunner,
    history: History,
    marks: list[Landmark],
    db: str,
    repeat: int,
    problems: list[str],
) -> list[Result]:
    """Every operation through the API (in this process) and through the CLI.

    Only the call is timed: counting what it returned (and parsing the CLI's JSON) is not.
    """
    results: list[Result] = []

    def run(label: str, via: str, call: Callable[[], T], describe: Callable[[T], str]) -> str:
        log(f"{db} {via}: {label}")
        size, samples = measure(call, describe, repeat)
        results.append(Result(label, db, via, size, samples))
        return size

    def same(label: str, api: str, cli_size: str) -> None:
        if api != cli_size:
            problems.append(f"{db}: {label}: the API returned {api}, the CLI {cli_size}")

    def graph_of(m: Landmark) -> Callable[[tuple[int, int]], str]:
        def check(counts: tuple[int, int]) -> str:
            if counts != m.expected:
                problems.append(
                    f"{db}: {m.label}: got {graph_size(*counts)}, the generated graph has "
                    f"{graph_size(*m.expected)}"
                )
            return graph_size(*counts)

        return check

    def json_rows(out: str) -> str:
        return rows_size(len(json.loads(out)["runs"]))

    def api_graph(m: Landmark) -> Callable[[Lineage], str]:
        check = graph_of(m)
        return lambda g: check((len(g.nodes), len(g.edges)))

    def cli_graph(m: Landmark) -> Callable[[str], str]:
        check = graph_of(m)

        def describe(out: str) -> str:
            doc = json.loads(out)
            return check((len(doc["nodes"]), len(doc["edges"])))

        return describe

    for m in marks:
        flags = [] if m.upstream and m.downstream else [f"--{'up' if m.upstream else 'down'}stream"]
        lineage = functools.partial(
            repo.lineage, m.ref, upstream=m.upstream, downstream=m.downstream
        )
        run(m.label, "API", lineage, api_graph(m))
        args = ["lineage", m.ref, *flags, "--format", "json"]
        run(m.label, "CLI", functools.partial(cli, args), cli_graph(m))

    hot = marks[-1]
    label = f"{hot.label}, as text"
    api = run(
        label,
        "API",
        lambda: repo.lineage(hot.ref, upstream=False).to_text(),
        lambda text: lines_size(len(text.splitlines())),
    )
    got = run(
        label,
        "CLI",
        functools.partial(cli, ["lineage", hot.ref, "--downstream"]),
        lambda text: lines_size(len(text.splitlines())),
    )
    same(label, api, got)

    n = len(history.runs)
    label = f"runs: all {n:,}"
    api = run(label, "API", repo.runs, lambda found: rows_size(len(found)))
    got = run(
        label, "CLI", functools.partial(cli, ["runs", "--limit", str(n), "--json"]), json_rows
    )
    same(label, api, got)

    label = "runs: newest 50 (CLI default, text)"
    api = run(label, "API", lambda: repo.runs(limit=50), lambda found: rows_size(len(found)))
    got = run(
        label,
        "CLI",
        functools.partial(cli, ["runs"]),
        lambda text: rows_size(len(text.splitlines()) - 1),  # minus the header
    )
    same(label, api, got)

    matching = len(repo.runs(where=[WHERE]))
    label = f'runs --where "{WHERE}" --limit {WHERE_LIMIT} ({matching:,} match)'
    api = run(
        label,
        "API",
        lambda: repo.runs(where=[WHERE], limit=WHERE_LIMIT),
        lambda found: rows_size(len(found)),
    )
    args = ["runs", "--where", WHERE, "--limit", str(WHERE_LIMIT), "--json"]
    got = run(label, "CLI", functools.partial(cli, args), json_rows)
    same(label, api, got)

    shown = next(r for r in history.runs[n // 3 :] if r.kind == "train" and r.outputs)
    prefix = shown.id[:8]
    label = f"runs show {prefix} (train run, {len(shown.metrics)} metric values)"

    def one(run_id: str) -> str:
        return rows_size(1 if run_id == shown.id else 0)

    api = run(label, "API", functools.partial(repo.run, prefix), lambda r: one(r.id))
    got = run(
        label,
        "CLI",
        functools.partial(cli, ["runs", "show", prefix, "--json"]),
        lambda out: one(json.loads(out)["id"]),
    )
    same(label, api, got)

    run(
        "CLI start-up: modelkeep --version",
        "CLI",
        functools.partial(cli, ["--version"]),
        lambda _: "-",
    )
    return results


# --------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------


@dataclass
class Build:
    db: str
    init_s: float
    load_s: float
    rows: int
    size_bytes: int


def sqlite_size(root: Path) -> int:
    control = root / config.REPO_DIR
    return sum(p.stat().st_size for p in control.glob("meta.sqlite*"))


def postgres_size(repo: Repo) -> int:
    with repo.db.read() as s:
        total = 0
        for name in [*Base.metadata.tables, "alembic_version"]:
            size = s.execute(sa.text(f"SELECT pg_total_relation_size('{name}')")).scalar()
            total += int(size or 0)
        return total


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
            " give the URL of an empty database: this benchmark writes its history there and"
            " drops those tables afterwards"
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


def build(repo: Repo, history: History, db: str, init_s: float, root: Path) -> Build:
    log(f"{db}: inserting the history")
    load_s, rows = load(repo, history)
    if db == "postgres":
        with repo.db.write() as s:
            s.execute(sa.text("ANALYZE"))  # what autovacuum does soon after a bulk load
        size = postgres_size(repo)
    else:
        size = sqlite_size(root)
    log(f"{db}: {rows:,} rows in {load_s:.1f} s")
    check_loaded(repo, history)
    return Build(db, init_s, load_s, rows, size)


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def versions_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def report(
    history: History,
    marks: list[Landmark],
    builds: list[Build],
    results: list[Result],
    problems: list[str],
    cli: list[str],
    load: tuple[float, float],
) -> str:
    counts = history.counts()
    mix = history.mix()
    deepest = max((len(c.versions) - 1 for c in history.chains), default=0)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    lines = [
        "## modelkeep lineage and runs benchmark",
        "",
        f"* machine: {os.cpu_count()} CPUs (usable: {affinity or '?'}), {platform.machine()}, "
        f"{platform.system()} {platform.release()}; 1-minute load average {load[0]:.2f} "
        f"before measuring, {load[1]:.2f} after (other work on the machine skews the figures)",
        f"* software: Python {platform.python_version()}, modelkeep {versions_of('modelkeep')}, "
        f"SQLAlchemy {versions_of('sqlalchemy')}, SQLite {sqlite3.sqlite_version}",
        f"* history: {counts['runs']:,} runs ("
        + ", ".join(f"{k} {mix.get(k, 0):,}" for k in MIX)
        + f"), {counts['versions']:,} versions of {counts['artifacts']:,} artifacts "
        f"({counts['dataset versions']:,} datasets, {counts['features versions']:,} features), "
        f"{counts['run inputs']:,} run inputs, {counts['params']:,} params, "
        f"{counts['metric values']:,} metric values; {len(history.chains)} fine-tuning chains, "
        f"the deepest {deepest} steps",
        f"* generating the history in Python: {history.generate_s:.1f} s",
    ]
    for b in builds:
        lines.append(
            f"* build ({b.db}): `mk.init` {b.init_s:.2f} s, inserting {b.rows:,} rows "
            f"(one transaction per table) {b.load_s:.1f} s, total with generation "
            f"{history.generate_s + b.init_s + b.load_s:.1f} s; database "
            f"{b.size_bytes / (1 << 20):.1f} MiB"
        )
    lines += [
        f"* CLI: `{' '.join(Path(c).name for c in cli)} --repo REPO ...`, one process per call, "
        "start-up included, output read through a pipe (parsing it is not timed); "
        "API: the same call on an open `mk.Repo`",
        "* median and p95 (nearest rank: the slowest sample when n < 20) of n timed calls, "
        "after one untimed warm-up call",
        "",
        "| operation | db | via | result | n | median ms | p95 ms |",
        "| --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.operation} | {r.db} | {r.via} | {r.size} | {len(r.samples)} | "
            f"{r.median_ms:,.1f} | {r.p95_ms:,.1f} |"
        )
    lines += ["", "Landmark refs:"]
    lines += [f"* {m.label}: `{m.ref}`" for m in marks]
    if problems:
        lines += ["", "Problems:"]
        lines += [f"* {p}" for p in problems]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time lineage queries and run listings on a synthetic history of runs.",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=DEFAULT_RUNS,
        help=f"runs in the history (default {DEFAULT_RUNS:,})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        help=f"timed calls per operation (default {DEFAULT_REPEAT}; fewer, but at least "
        f"{MIN_SAMPLES}, once an operation has taken {OP_BUDGET_S:.0f} s)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the repositories, kept afterwards (default: a temporary folder, deleted)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="also run against this empty PostgreSQL database "
        "(e.g. postgresql+psycopg://user@host/db); its tables are dropped afterwards",
    )
    parser.add_argument(
        "--keep-postgres", action="store_true", help="leave the tables in PostgreSQL afterwards"
    )
    args = parser.parse_args(argv)
    if args.runs < MIN_RUNS:
        parser.error(f"--runs must be at least {MIN_RUNS}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for var in ("MODELKEEP_DATABASE_URL", config.RUN_ID_ENV, config.REPO_ENV):
        if os.environ.pop(var, None) is not None:
            log(f"ignoring {var} from the environment")
    env = dict(os.environ)
    work: Path = (
        args.work.absolute()
        if args.work
        else Path(tempfile.mkdtemp(prefix="modelkeep-bench-lineage-"))
    )
    pg_url = postgres_url(args.postgres) if args.postgres else None
    pg_created = False
    problems: list[str] = []
    try:
        for sub in ("sqlite", "postgres"):
            if (work / sub).exists():
                raise BenchError(f"{work / sub} exists; remove it or give another --work")
        log(f"generating a history of {args.runs:,} runs")
        history = Generator(args.runs).generate()
        log(f"generated in {history.generate_s:.1f} s: {history.counts()}")
        marks = landmarks(history)
        load_before = os.getloadavg()[0]
        builds: list[Build] = []
        results: list[Result] = []

        root = work / "sqlite"
        t0 = time.perf_counter()
        with mk.init(root) as repo:
            init_s = time.perf_counter() - t0
            builds.append(build(repo, history, "sqlite", init_s, root))
            cli = CliRunner(root, env)
            results += bench(repo, cli, history, marks, "sqlite", args.repeat, problems)

        if pg_url is not None:
            check_empty_postgres(pg_url)
            pg_created = True
            root = work / "postgres"
            t0 = time.perf_counter()
            with open_postgres_repo(root, pg_url) as repo:
                init_s = time.perf_counter() - t0
                builds.append(build(repo, history, "postgres", init_s, root))
                cli = CliRunner(root, {**env, "MODELKEEP_DATABASE_URL": pg_url})
                results += bench(repo, cli, history, marks, "postgres", args.repeat, problems)

        load = (load_before, os.getloadavg()[0])
        print(report(history, marks, builds, results, problems, cli.base, load))
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        if pg_url is not None and pg_created and not args.keep_postgres:
            drop_postgres(pg_url)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"repositories kept in {work}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
