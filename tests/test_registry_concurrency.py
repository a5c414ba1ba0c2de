"""Twenty processes registering and promoting against one repository at once.

Workers are real processes (the project's interpreter running a small script) started
together on a "go" file; nothing is mocked. Both metadata backends: the SQLite file in
`.modelkeep/`, and one fresh PostgreSQL database that every process points at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkeep as mk

WORKERS = 20

# One worker: a run that logs an auc and makes a model file; register it as the next
# version of `fraud` (even workers also of `other`), point an alias at it, promote it to
# staging, then to production, which the policy's champion gate may refuse.
WORKER = r"""
import json, os, sys, time
from pathlib import Path
import modelkeep as mk
from modelkeep.errors import PromotionRefused

root, worker, auc, go = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
src = Path(root) / f"model-{worker}.bin"
src.write_bytes(f"weights of worker {worker}\n".encode() * 1000)
while not os.path.exists(go):
    time.sleep(0.002)
out = {"worker": worker, "auc": auc}
with mk.open(root) as repo:
    with mk.start_run(name=f"train-{worker}", repo=repo, capture_code=False) as run:
        run.log_metric("auc", auc)
        made = run.log_artifact(src, f"src-{worker}")
    v = repo.register(made.ref, "fraud", reason=f"worker {worker}")
    out["number"] = v.number
    if worker % 2 == 0:
        out["other"] = repo.register(made.ref, "other").number
    repo.set_alias("fraud@newest", v.ref, reason=f"worker {worker}")
    repo.promote(v.ref, "staging", reason="try it")
    try:
        repo.promote(v.ref, "production", reason="ship it")
        out["production"] = "promoted"
    except PromotionRefused as exc:
        out["production"] = "refused"
        out["why"] = str(exc)
print(json.dumps(out), flush=True)
"""

POLICY = """\
[policy.default.production]
require_stage = "staging"
gates = ["auc >= production.auc"]
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the default SQLite file, or a fresh PostgreSQL database's URL."""
    if request.param == "postgresql":
        yield str(request.getfixturevalue("fresh_postgres_url"))
    else:
        yield None


def _auc(worker: int) -> float:
    """Distinct values in a shuffled order, so later workers do not simply win."""
    return 0.5 + ((worker * 7) % WORKERS) / 100


def test_twenty_processes_register_and_promote_at_once(
    tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database_url:
        monkeypatch.setenv("MODELKEEP_DATABASE_URL", database_url)
    root = tmp_path / "proj"
    mk.init(root).close()
    (root / "modelkeep.toml").write_text(POLICY)
    go = tmp_path / "go"
    env = {**os.environ, "MODELKEEP_USER": "tester"}

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), str(w), str(_auc(w)), str(go)],
            env={**env, "MODELKEEP_USER": f"worker-{w}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WORKERS)
    ]
    time.sleep(0.5)  # let them all import and wait at the line
    go.touch()
    results: list[dict[str, Any]] = []
    failures = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures.append(f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
        assert "database is locked" not in err
        results += [json.loads(line) for line in out.splitlines() if line.strip()]
    assert not failures, failures
    assert len(results) == WORKERS

    with mk.open(root) as repo:
        # Version numbers: 1..N exactly, each handed to one worker.
        assert sorted(r["number"] for r in results) == list(range(1, WORKERS + 1))
        assert sorted(r["other"] for r in results if "other" in r) == list(
            range(1, WORKERS // 2 + 1)
        )
        fraud = repo.versions("fraud")
        assert [v.number for v in fraud] == list(range(1, WORKERS + 1))
        by_number = {r["number"]: r for r in results}
        for v in fraud:  # each number holds the content of the worker that got it
            assert v.run_id is not None
            assert repo.run(v.run_id).metrics == {"auc": by_number[v.number]["auc"]}
            assert repo.run(v.run_id).name == f"train-{by_number[v.number]['worker']}"

        # One production version per model, and the champion gate held throughout:
        # every version that entered production beat (or matched) the one it replaced.
        productions = [v for v in fraud if v.stage == "production"]
        assert len(productions) == 1
        best = max(results, key=lambda r: r["auc"])
        assert best["production"] == "promoted"
        assert productions[0].number == best["number"]
        assert [v for v in repo.versions("other") if v.stage == "production"] == []
        entered = [
            int(e.target.rsplit(":v", 1)[1])
            for e in repo.history("fraud")
            if e.action == "promote" and e.after.get("stage") == "production"
        ]
        assert sorted(entered) == sorted(
            r["number"] for r in results if r["production"] == "promoted"
        )
        aucs = [by_number[n]["auc"] for n in entered]
        assert aucs == sorted(aucs), f"a promotion passed a stale gate: {aucs}"
        for r in results:
            if r["production"] == "refused":
                assert "gate 'auc >= production.auc' unmet" in r["why"]
        # The alias names exactly one version, the one whose alias-set came last.
        sets = [e for e in repo.history("fraud") if e.action == "alias-set"]
        assert repo.show("fraud@newest").number == sets[-1].after["version"]

        # The audit log: one chain, ids 1..M, time never running backwards.
        report = repo.verify_audit()
        assert report.ok, report.problems
        events = repo.audit()
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert report.events == len(events)
        times = [e.at for e in events]
        assert times == sorted(times), "event times out of order with their ids"
        promoted = sum(r["production"] == "promoted" for r in results)
        assert len(events) == (
            WORKERS  # register fraud
            + WORKERS // 2  # register other
            + len(sets)  # alias moves (a set to where it already points records nothing)
            + WORKERS  # to staging
            + promoted  # to production
            + (promoted - 1)  # each later promotion archives the one before
        )
        actors = {e.actor for e in events}
        assert actors == {f"worker-{w}" for w in range(WORKERS)}


def test_sixteen_threads_of_one_process_register_at_once(tmp_path: Path) -> None:
    """A server's threads share one process: they queue for SQLite's write lock on a lock
    of the process (meta/db.py), and every registration lands, numbered without gaps."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    threads, each = 16, 5
    with mk.init(tmp_path / "repo") as repo:
        sources = []
        for i in range(2):
            (tmp_path / "w.bin").write_bytes(bytes([i]) * 4096)
            sources.append(repo.add(tmp_path / "w.bin", "weights", track=False).version.ref)
        start = Barrier(threads)

        def work(t: int) -> list[int]:
            start.wait()
            model = f"m{t:02d}"
            return [repo.register(sources[i % 2], model).number for i in range(each)]

        with ThreadPoolExecutor(threads) as pool:
            numbers = list(pool.map(work, range(threads)))
        assert numbers == [list(range(1, each + 1))] * threads
        report = repo.verify_audit()
        assert report.ok, report.problems
        assert report.events == threads * each
