#!/usr/bin/env python3
"""Start-up benchmark: how long a command takes end to end on a small repository.

Each command runs as a user runs it (the `modelkeep` console script, one process per
call) N times; the table gives the median wall time and the median CPU time (user + system,
from the kernel's accounting of the child), beside `git status` and DVC's `status` and
`init` run in the same run. CPU time is the figure to trust on a shared machine: wall time
there includes waiting for a core. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import common
from common import Arg, BenchError, log, run

DVC_VERSION = "3.67.1"  # as bench_store.py
READ_TARGET_S = 0.15  # issue 14: a read command on a small SQLite store
STATUS_TARGET_S = 0.3  # issue 14: a no-op status on W3 (20k files)
ENV: dict[str, str] = {}


def timed(argv: Sequence[Arg], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of one run; BenchError if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [os.fspath(a) for a in argv], cwd=cwd, env=ENV, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    # The child is reaped: its CPU time is what RUSAGE_CHILDREN grew by.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"`{' '.join(map(str, argv))}` exited {proc.returncode}: {proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def measure(
    argv: Sequence[Arg], cwd: Path, n: int, fresh: Callable[[], Path] | None = None
) -> tuple[float, float, str]:
    """Median wall and CPU seconds of n runs (each in a new folder from fresh(), if given),
    and the last run's output."""
    walls: list[float] = []
    cpus: list[float] = []
    out = ""
    for _ in range(n):
        wall, cpu, out = timed(argv, fresh() if fresh is not None else cwd)
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus), out


def make_modelkeep_repo(d: Path, files: int) -> Path:
    mk = common.cli_command()
    d.mkdir(parents=True)
    run(["git", "init", "-q"], ENV, d)
    run([*mk, "init"], ENV, d)
    (d / "model.bin").write_bytes(os.urandom(64 * 1024))
    run([*mk, "add", "model.bin", "--name", "m", "--type", "model"], ENV, d)
    run([*mk, "register", "m:v1", "--as", "served", "--reason", "bench"], ENV, d)
    if files:
        write_tree(d / "tree", files)
        run([*mk, "add", "tree", "--name", "tree"], ENV, d)
    return d


def make_dvc_repo(dvc: list[str], d: Path, files: int) -> Path:
    d.mkdir(parents=True)
    run(["git", "init", "-q"], ENV, d)
    run([*dvc, "init", "-q"], ENV, d)
    run([*dvc, "config", "--local", "core.check_update", "false"], ENV, d)
    (d / "model.bin").write_bytes(os.urandom(64 * 1024))
    run([*dvc, "add", "model.bin"], ENV, d)
    if files:
        write_tree(d / "tree", files)
        run([*dvc, "add", "tree"], ENV, d)
    return d


def write_tree(root: Path, files: int) -> None:
    """files small files (1-8 KiB) in folders of 500, as W3 has them."""
    rng = random.Random(20_241_206)
    for i in range(files):
        path = root / f"d{i // 500:03d}" / f"f{i:06d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1024, 8192)))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=10, help="runs per command (median reported)")
    p.add_argument("--files", type=int, default=20_000, help="files of the status tree; 0: none")
    p.add_argument("--skip-dvc", action="store_true", help="do not install or run DVC")
    p.add_argument("--workdir", type=Path, default=common.WORK, help="repos, DVC venv, results")
    args = p.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    runs = workdir / "runs" / "startup"
    shutil.rmtree(runs, ignore_errors=True)
    ENV.update(common.process_env(), DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(runs / "dvcs"))
    ENV["GIT_CEILING_DIRECTORIES"] = str(workdir)
    for who in ("AUTHOR", "COMMITTER"):
        ENV.update({f"GIT_{who}_NAME": "bench", f"GIT_{who}_EMAIL": "bench@example.invalid"})
    mk = common.cli_command()
    t_start = time.perf_counter()
    log(f"small repositories (and a tree of {args.files:,} files) ...")
    small = make_modelkeep_repo(runs / "mk", 0)
    big = make_modelkeep_repo(runs / "mk-tree", args.files) if args.files else None
    dvc: list[str] | None = None
    if not args.skip_dvc:
        python = common.peer_venv(workdir / "dvc-venv", [f"dvc=={DVC_VERSION}"], "dvc", ENV)
        dvc = [str(python.parent / "dvc")]
        dvc_small = make_dvc_repo(dvc, runs / "dvc", 0)
        dvc_big = make_dvc_repo(dvc, runs / "dvc-tree", args.files) if args.files else None

    counter = iter(range(1_000_000))

    def fresh(prefix: str, git: bool) -> Callable[[], Path]:
        def make() -> Path:
            d = runs / f"{prefix}-{next(counter)}"
            d.mkdir()
            if git:
                run(["git", "init", "-q"], ENV, d)
            return d

        return make

    rows: list[list[str]] = []
    problems: list[str] = []
    doc: dict[str, object] = {}

    def row(
        label: str,
        argv: list[Arg],
        cwd: Path,
        target: float | None,
        fresh: Callable[[], Path] | None = None,
    ) -> None:
        log(label)
        wall, cpu, out = measure(argv, cwd, args.n, fresh)
        met = "—" if target is None else ("yes" if wall <= target else "no")
        rows.append(
            [label, f"{wall:.3f}", f"{cpu:.3f}", "—" if target is None else f"≤ {target}", met]
        )
        doc[label] = {"wall_s": wall, "cpu_s": cpu}
        check = checks.get(label)
        if check is not None and not check(out):
            problems.append(f"{label}: unexpected output {out[:200]!r}")

    checks: dict[str, Callable[[str], bool]] = {
        "modelkeep ls": lambda out: any(a["name"] == "m" for a in json.loads(out)["artifacts"]),
        "modelkeep versions m": lambda out: (
            [v["number"] for v in json.loads(out)["versions"]] == [1]
        ),
    }
    reads = [
        ("ls", ["ls", "--json"]),
        ("versions m", ["versions", "m", "--json"]),
        ("show m", ["show", "m"]),
        ("status", ["status"]),
        ("runs", ["runs"]),
        ("models", ["models"]),
        ("lineage m", ["lineage", "m"]),
    ]
    for label, cmd in reads:
        row(f"modelkeep {label}", [*mk, *cmd], small, READ_TARGET_S)
    row("modelkeep --help", [*mk, "--help"], small, None)
    row("modelkeep init", [*mk, "init"], small, None, fresh=fresh("mk-init", True))
    if dvc is not None:
        row("dvc status", [*dvc, "status"], dvc_small, None)
        row("dvc init", [*dvc, "init", "-q"], dvc_small, None, fresh=fresh("dvc-init", True))
    row("git status", ["git", "status", "--short"], small, None)
    if big is not None:
        label = f"modelkeep status, {args.files:,} files unchanged"
        row(label, [*mk, "status"], big, STATUS_TARGET_S)
        if dvc is not None and dvc_big is not None:
            row(f"dvc status, {args.files:,} files unchanged", [*dvc, "status"], dvc_big, None)
        row(f"git status, {args.files:,} files ignored", ["git", "status", "--short"], big, None)

    head = ["command", "wall s (median)", "CPU s (median)", "target (wall)", "met?"]
    lines = [
        "## modelkeep start-up benchmark",
        "",
        *common.md_table(head, rows),
        "",
        f"- Median of {args.n} runs of each command, one process per run, on a repository "
        "with one 64 KiB model (registered); `init` in a new Git work tree each run. Wall: "
        "start to exit; CPU: user + system time of the process.",
        f"- machine: {common.machine()}",
        f"- `{' '.join(mk)}`; " + ("DVC not run" if dvc is None else f"DVC {DVC_VERSION}"),
        "",
        f"Total benchmark wall time: {time.perf_counter() - t_start:.0f} s.",
        *(["", "Problems:", "", *(f"- {p}" for p in problems)] if problems else []),
    ]
    common.save(workdir, "startup", lines, doc)
    shutil.rmtree(runs, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
