#!/usr/bin/env python3
"""Sharing benchmark: the metadata of 1,000 versions pulled from a folder remote.

A store makes N versions (default 1,000) of tiny files across 20 models, one run with
parameters and metrics per 10 versions, and registers and promotes each model's newest
version; everything is pushed to a folder remote (packs, then one record file per version,
run and event). Then a fresh store, with no shared database, pulls:

* records: reading and validating every record, and importing them in one transaction
  (`sharing.read_bundle` + `exchange.import_bundle`, in process) -- the figure the target
  asks to keep under 2 s;
* `modelkeep pull --all`: the whole command in a subprocess, records and the (tiny) bytes.

Each is repeated on a new empty store; medians are printed. DVC has no counterpart: its
metadata travels in the Git repository (a `git clone`), not through the remote. Exit 1 if a
pulled store does not hold every version or its audit chain does not verify.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import common
from common import BenchError, log

import modelkeep as mk
from modelkeep import sharing
from modelkeep.meta import exchange
from modelkeep.meta.identity import database_id
from modelkeep.remotes import Remote

MODELS = 20


def make_origin(top: Path, n: int) -> tuple[Path, str]:
    root, remote = top / "origin", str(top / "remote")
    with mk.init(root) as repo:
        repo.add_remote("shared", remote, default=True)
        src = top / "w.bin"
        for i in range(n):
            model = f"model-{i % MODELS:02d}"
            src.write_bytes(f"weights {i}".encode())
            if i % 10 == 0:
                params = {"lr": 0.01, "i": i}
                with mk.start_run("train", params, repo=repo, capture_code=False) as run:
                    run.log_metrics({"auc": 0.9, "loss": 0.1})
                    run.log_artifact(src, name=model, type="model", message=f"v{i}")
            else:
                repo.add(src, model, type="model", message=f"v{i}")
        for m in range(MODELS):
            name = f"model-{m:02d}"
            newest = repo.show(name)
            repo.register(newest, name)
            repo.promote(f"{name}:v{newest.number}", "production", reason="bench")
        t0 = time.perf_counter()
        repo.push()
        log(f"pushed {n} versions with their records in {time.perf_counter() - t0:.1f} s")
    return root, remote


def records_once(top: Path, remote_url: str, i: int, n: int) -> float:
    with mk.init(top / f"records-{i}") as repo:
        t0 = time.perf_counter()
        bundle = sharing.read_bundle(Remote(remote_url), None)
        exchange.import_bundle(
            repo.db,
            bundle,
            store=database_id(repo.db),
            remote=Remote(remote_url).url,
            host="bench",
        )
        took = time.perf_counter() - t0
        check(repo, n)
    return took


def cli_once(top: Path, remote_url: str, i: int, n: int) -> float:
    root = top / f"cli-{i}"
    with mk.init(root) as repo:
        repo.add_remote("shared", remote_url, default=True)
    t0 = time.perf_counter()
    r = subprocess.run(
        [*common.cli_command(), "pull", "--all", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"modelkeep pull --all failed: {r.stderr.strip()}")
    if len(json.loads(r.stdout)["versions"]) != n:
        raise BenchError("modelkeep pull --all did not fetch every version")
    with mk.open(root) as repo:
        check(repo, n)
    return took


def check(repo: mk.Repo, n: int) -> None:
    count = sum(len(repo.versions(a.name)) for a in repo.artifacts())
    if count != n:
        raise BenchError(f"the pulled store holds {count} versions, not {n}")
    if not repo.verify_audit().ok:
        raise BenchError("the pulled store's audit chain does not verify")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--versions", type=int, default=1000)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="mk-bench-sharing-"))
    try:
        _, remote = make_origin(top, args.versions)
        records = [records_once(top, remote, i, args.versions) for i in range(args.reps)]
        whole = [cli_once(top, remote, i, args.versions) for i in range(args.reps)]
    except BenchError as exc:
        print(f"bench_sharing: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(top, ignore_errors=True)
    files = args.versions + args.versions // 10 + 2 * MODELS
    lines = [
        f"# Sharing: metadata of {args.versions:,} versions from a folder remote",
        "",
        common.machine(),
        "",
        *common.md_table(
            ["operation", "median ms", "runs"],
            [
                [
                    f"records only ({files:,} files: read, validate, import)",
                    common.fmt_ms(records),
                    str(len(records)),
                ],
                [
                    "`modelkeep pull --all` (records and bytes, CLI)",
                    common.fmt_ms(whole),
                    str(len(whole)),
                ],
            ],
        ),
    ]
    common.save(common.WORK, "sharing", lines, {"records_s": records, "pull_all_s": whole})
    return 0


if __name__ == "__main__":
    sys.exit(main())
