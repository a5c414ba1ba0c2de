#!/usr/bin/env python3
"""modelkeep at scale: W5, a tree of 200,000 small files (with DVC beside it), and W6, one
file of 20 GiB generated on the fly (peak memory and throughput against 1 GiB).

W5 times `add`, a no-op `status`, `status` after 1% of the files changed and the re-add, for
modelkeep and DVC on the same files in the same run, at 20,000 and 200,000 files: the cost per
file must not grow with the tree. W6 times `add`, the add of a successor with ~10% of its
bytes changed in place, and `get` of the successor (the source deleted first, the restored
file checked against the BLAKE3 recorded while generating), with each process's peak RSS.
Helpers (timing with a `sync`, cache dropping, DVC repositories) are bench_store.py's.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bench_store as bs
import blake3
import common
import numpy as np
from bench_store import ENV, GiB, KiB, MiB, human_bytes, human_seconds, rmtree, warm
from common import Arg, BenchError, log

SEED = 20_261_206
W5_SIZES = (20_000, 200_000)
W5_QUICK = (2_000, 20_000)
W5_CHANGE = 0.01  # of the files rewritten for "status after a change" and the re-add
LINEAR_LIMIT = 1.25  # per-file time at the larger tree / at the smaller: at most this
W6_SIZES = (1 * GiB, 20 * GiB)
W6_QUICK = (256 * MiB, 1 * GiB)
W6_BLOCK = 16 * MiB
W6_CHANGE_EVERY = 10  # every 10th block rewritten: the successor differs in ~10% of its bytes
RSS_LIMIT = 300 * 1000 * 1000  # bytes
TIME = "/usr/bin/time"  # GNU time, for the peak RSS of one command
THROUGHPUT_SLACK = 0.15


# -- processes with their peak memory ----------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    op_s: float  # the command
    sync_s: float  # the `sync` right after it
    rss: int  # the command's peak resident set, bytes
    out: str


def measured(argv: Sequence[Arg], cwd: Path) -> Measured:
    """Run argv (after an untimed sync) and a sync; time both, and the peak RSS of argv.

    The peak comes from GNU time (`/usr/bin/time -f %M`), which execs argv at once: the
    ru_maxrss of a child forked from this process would also count what the child
    inherited before its exec (this process's own memory: a hashed file's mapped pages).
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        os.sync()
        t0 = time.perf_counter()
        out = common.run([TIME, "-o", rss.name, "-f", "%M", *argv], ENV, cwd)
        t1 = time.perf_counter()
        os.sync()
        t2 = time.perf_counter()
        kib = int(rss.read().split()[-1])
    return Measured(t1 - t0, t2 - t1, kib * 1024, out)


# -- W5: 200,000 small files --------------------------------------------------------------------


def w5_path(i: int) -> Path:
    """200,000 files in 16 x 25 x 25 folders, 20 files each at the full size."""
    return Path(
        f"pkg{i % 16:02d}",
        f"mod{(i // 16) % 25:02d}",
        f"part{(i // 400) % 25:02d}",
        f"f{i:06d}.bin",
    )


def w5_size(rng: np.random.Generator) -> int:
    return int(rng.integers(8 * KiB, 64 * KiB + 1))


def build_w5(root: Path, n: int) -> None:
    """n files of 8-64 KiB of random bytes (seeded), kept while the marker matches."""
    marker = root / ".spec"
    spec = {"files": n, "seed": SEED, "version": 1}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return
    log(f"generating W5: {n:,} files in {root} ...")
    rmtree(root)
    rng = np.random.default_rng([SEED, n])
    for i in range(n):
        path = root / "tree" / w5_path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(w5_size(rng)))
    marker.write_text(json.dumps(spec))


def change_w5(tree: Path, n: int, keep: Path) -> int:
    """Rewrite 1% of the files (seeded choice), their originals moved to keep; how many."""
    rng = np.random.default_rng([SEED, n, 1])
    picks = rng.choice(n, size=max(1, int(n * W5_CHANGE)), replace=False)
    for i in picks:
        path = tree / w5_path(int(i))
        saved = keep / w5_path(int(i))
        saved.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, saved)
        path.write_bytes(rng.bytes(w5_size(rng)))
    return len(picks)


def restore_w5(tree: Path, keep: Path) -> None:
    for saved in bs.files_under(keep):
        os.replace(saved, tree / saved.relative_to(keep))
    rmtree(keep)


@dataclass
class W5Row:
    files: int
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # step -> tool -> s


W5_STEPS = ("add", "no-op status", "status after 1% changed", "re-add after the change")


def bench_w5(data: Path, runs: Path, n: int, problems: list[str]) -> W5Row:
    """Each tool on the same tree, moved (not copied) into its repository and back."""
    build_w5(data / f"w5-{n}", n)
    tree, row = data / f"w5-{n}" / "tree", W5Row(n)
    for tool in bs.ARGV:
        repo = runs / f"w5-{n}-{tool}"
        rmtree(repo)
        repo.mkdir(parents=True)
        ws, keep = repo / "data", repo / "originals"
        times = row.values
        try:
            if tool == "modelkeep":  # a Git work tree, so the added folder is tracked in the lock
                common.run(["git", "init", "-q"], ENV, repo)
                common.run([*bs.ARGV[tool], "init"], ENV, repo)
            else:
                repo.rmdir()
                bs.peer_init(tool, repo)
            os.replace(tree, ws)
            add = [
                *bs.ARGV[tool],
                "add",
                "data",
                *(["--name", "w5"] if tool == "modelkeep" else []),
            ]
            status = [*bs.ARGV[tool], "status", *(["--json"] if tool == "modelkeep" else [])]
            log(f"W5 {n:,} files [{tool}]: add (load {common.load_avg()})")
            warm(ws)
            times.setdefault("add", {})[tool] = sum(bs.timed(add, cwd=repo))
            cold_stat(ws)
            t0 = time.perf_counter()
            clean = common.run(status, ENV, repo)
            times.setdefault("no-op status", {})[tool] = time.perf_counter() - t0
            changed = change_w5(ws, n, keep)
            cold_stat(ws)
            t0 = time.perf_counter()
            dirty = common.run(status, ENV, repo)
            times.setdefault("status after 1% changed", {})[tool] = time.perf_counter() - t0
            check_status(tool, clean, dirty, problems, n)
            warm(ws)
            times.setdefault("re-add after the change", {})[tool] = sum(bs.timed(add, cwd=repo))
            log(f"W5 {n:,} [{tool}]: {changed:,} files changed; {json.dumps(times)}")
        except (BenchError, OSError) as exc:
            problems.append(f"W5 {n:,} files [{tool}]: {exc}")
            log(problems[-1])
        finally:
            if ws.exists():
                restore_w5(ws, keep)
                os.replace(ws, tree)
            rmtree(repo)
    return row


def cold_stat(tree: Path) -> None:
    """Before a status (which stats files, and reads the changed ones): the page cache
    dropped (when root), then every file stat-ed once, the same start for every tool."""
    os.sync()
    if os.access(bs.DROP_CACHES, os.W_OK):
        bs.DROP_CACHES.write_text("1\n")
    for path in bs.files_under(tree):
        path.stat()


def check_status(tool: str, clean: str, dirty: str, problems: list[str], n: int) -> None:
    """A no-op status reports nothing changed, and the one after the change names data."""
    if tool == "modelkeep":
        states = [p.get("state") for p in json.loads(clean)["paths"]]
        after = [p.get("state") for p in json.loads(dirty)["paths"]]
        ok = states == ["ok"] and after == ["modified"]
        if not ok:
            problems.append(
                f"W5 {n:,} [{tool}]: status said {clean.strip()[:200]} / {dirty.strip()[:200]}"
            )
    elif "data" in clean or "data" not in dirty:
        problems.append(
            f"W5 {n:,} [{tool}]: status said {clean.strip()[:200]!r} / {dirty.strip()[:200]!r}"
        )


# -- W6: one 20 GiB file -----------------------------------------------------------------------


def fp32_block(rng: np.random.Generator, n_bytes: int) -> bytes:
    """fp32-like bytes, fast: random sign and mantissa, exponents of weights near 0.01-1."""
    n = n_bytes // 4
    bits = rng.integers(0, 1 << 23, size=n, dtype=np.uint32)
    exponent = np.clip(126 - rng.geometric(0.5, size=n), 110, 126).astype(np.uint32)
    bits |= exponent << 23
    bits |= rng.integers(0, 2, size=n, dtype=np.uint32) << 31
    return bits.tobytes()


def write_w6(path: Path, size: int, version: int) -> str:
    """Write (version 1) or change in place (version 2: every 10th block rewritten) the W6
    file; returns its BLAKE3, read back for version 2 (the unchanged blocks are not kept)."""
    blocks = -(-size // W6_BLOCK)
    if version == 1:
        h = blake3.blake3()
        with path.open("wb") as f:
            for b in range(blocks):
                data = fp32_block(
                    np.random.default_rng([SEED, b]), min(W6_BLOCK, size - b * W6_BLOCK)
                )
                f.write(data)
                h.update(data)
        return str(h.hexdigest())
    with path.open("r+b") as f:
        for b in range(3, blocks, W6_CHANGE_EVERY):
            f.seek(b * W6_BLOCK)
            f.write(
                fp32_block(
                    np.random.default_rng([SEED, b, version]), min(W6_BLOCK, size - b * W6_BLOCK)
                )
            )
    return file_b3(path)


def file_b3(path: Path) -> str:
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    h.update_mmap(path)
    return str(h.hexdigest())


@dataclass
class W6Run:
    size: int
    steps: dict[str, Measured] = field(default_factory=dict)


def digest_of(out: str) -> str:
    doc = json.loads(out)
    version = doc.get("version", doc)
    return str(version.get("digest", "")).removeprefix("b3:")


def bench_w6(runs: Path, size: int, problems: list[str]) -> W6Run:
    d = runs / f"w6-{size}"
    rmtree(d)
    repo = d / "repo"
    repo.mkdir(parents=True)
    src, out = d / "model.bin", d / "restored.bin"
    result = W6Run(size)
    mk = bs.ARGV["modelkeep"]
    try:
        common.run([*mk, "init"], ENV, repo)
        log(f"W6 {human_bytes(size)}: generating (load {common.load_avg()})")
        digests = {1: write_w6(src, size, 1)}
        warm(src)
        log(f"W6 {human_bytes(size)}: add")
        result.steps["add"] = m = measured([*mk, "add", src, "--name", "w6", "--json"], repo)
        if digest_of(m.out) != digests[1]:
            problems.append(
                f"W6 {human_bytes(size)}: add recorded {digest_of(m.out)}, not {digests[1]}"
            )
        digests[2] = write_w6(src, size, 2)
        warm(src)
        log(f"W6 {human_bytes(size)}: successor add")
        result.steps["successor add (~10% changed)"] = m = measured(
            [*mk, "add", src, "--name", "w6", "--json"], repo
        )
        if digest_of(m.out) != digests[2]:
            problems.append(f"W6 {human_bytes(size)}: successor recorded {digest_of(m.out)}")
        src.unlink()  # room for the restored file
        warm(repo / ".modelkeep")
        log(f"W6 {human_bytes(size)}: get")
        result.steps["get of the successor"] = measured([*mk, "get", "w6:v2", "-o", out], repo)
        if file_b3(out) != digests[2]:
            problems.append(f"W6 {human_bytes(size)}: the restored file's BLAKE3 differs")
        stored = json.loads(common.run([*mk, "du", "--json"], ENV, repo))
        result.steps["stored"] = Measured(0, 0, 0, json.dumps(stored))
    except (BenchError, OSError) as exc:
        problems.append(f"W6 {human_bytes(size)}: {exc}")
        log(problems[-1])
    finally:
        rmtree(d)
    return result


# -- the report --------------------------------------------------------------------------------


def w5_lines(rows: list[W5Row]) -> list[str]:
    if not rows:
        return []
    small, big = rows[0], rows[-1]
    head = ["W5 step"]
    for r in rows:
        head += [f"{r.files:,}: modelkeep", "DVC", "ratio"]
    head += [f"modelkeep µs/file {small.files // 1000}k → {big.files // 1000}k", "linear?"]
    table = []
    for step in W5_STEPS:
        cells = [step]
        for r in rows:
            mk, dvc = r.values.get(step, {}).get("modelkeep"), r.values.get(step, {}).get("dvc")
            cells += [human_seconds(mk) if mk else "—", human_seconds(dvc) if dvc else "—"]
            cells.append(f"{mk / dvc:.2f}×" if mk and dvc else "—")
        a, b = (
            small.values.get(step, {}).get("modelkeep"),
            big.values.get(step, {}).get("modelkeep"),
        )
        if a and b and big is not small:
            pa, pb = a / small.files * 1e6, b / big.files * 1e6
            growth = pb / pa
            cells += [
                f"{pa:.1f} → {pb:.1f} ({growth:.2f}×)",
                "yes" if growth <= LINEAR_LIMIT else "**NO**",
            ]
        else:
            cells += ["—", "—"]
        table.append(cells)
    dvc_pf = []
    for step in W5_STEPS:
        a, b = small.values.get(step, {}).get("dvc"), big.values.get(step, {}).get("dvc")
        if a and b and big is not small:
            dvc_pf.append(f"{step} {a / small.files * 1e6:.1f} → {b / big.files * 1e6:.1f}")
    return [
        "### W5: a tree of small files (8-64 KiB of random bytes)",
        "",
        *common.md_table(head, table),
        "",
        "Ratio: modelkeep / DVC. `status`: `modelkeep status --json` (the tree tracked in "
        "modelkeep.lock of a Git work tree) vs `dvc status`; add and re-add include a `sync` "
        "right after them. Linear: the per-file time at the larger tree at most "
        f"{LINEAR_LIMIT:g}× that at the smaller.",
        *(["", f"DVC µs per file: {'; '.join(dvc_pf)}"] if dvc_pf else []),
    ]


def w6_lines(runs: list[W6Run]) -> list[str]:
    if not runs:
        return []
    head = ["W6 step", *(f"{human_bytes(r.size)}: time" for r in runs)]
    head += [f"{human_bytes(r.size)}: MiB/s" for r in runs]
    head += [f"{human_bytes(r.size)}: peak RSS" for r in runs]
    head += [f"RSS ≤ {RSS_LIMIT // 1_000_000} MB?", f"MiB/s within {THROUGHPUT_SLACK:.0%}?"]
    table = []
    for step in ("add", "successor add (~10% changed)", "get of the successor"):
        ms = [r.steps.get(step) for r in runs]
        cells = [step]
        cells += [human_seconds(m.op_s + m.sync_s) if m else "error" for m in ms]
        rates = [
            r.size / MiB / (m.op_s + m.sync_s) if m else None for r, m in zip(runs, ms, strict=True)
        ]
        cells += [f"{x:,.0f}" if x else "—" for x in rates]
        cells += [f"{m.rss / 1e6:,.0f} MB" if m else "—" for m in ms]
        cells.append("yes" if all(m and m.rss <= RSS_LIMIT for m in ms) else "**NO**")
        if len(rates) >= 2 and rates[0] and rates[-1]:
            cells.append(
                "yes"
                if rates[-1] >= (1 - THROUGHPUT_SLACK) * rates[0]
                else f"**NO** ({rates[-1] / rates[0]:.0%})"
            )
        else:
            cells.append("—")
        table.append(cells)
    stored = [
        f"{human_bytes(r.size)}: {human_bytes(json.loads(m.out).get('stored_bytes', 0))}"
        for r in runs
        if (m := r.steps.get("stored"))
    ]
    return [
        "### W6: one large fp32-like file, generated on the fly",
        "",
        *common.md_table(head, table),
        "",
        "Time: the command plus a `sync` right after it (page cache dropped when root, the "
        "input read once first). Peak RSS: the modelkeep process's (`/usr/bin/time -f %M`). "
        "Successor: every 10th 16 MiB block rewritten in place. `get` writes the file back "
        "after the source was deleted; its BLAKE3 is checked against the one computed while "
        f"generating. Stored after both versions: {'; '.join(stored)}.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="W5 (200,000 files, with DVC) and W6 (20 GiB file).")
    add = p.add_argument
    add("--quick", action="store_true", help="W5 2,000 and 20,000 files; W6 256 MiB and 1 GiB")
    add("--only", default="w5,w6", help="w5, w6 or both")
    add("--w5-files", help="comma-separated tree sizes (default 20000,200000)")
    add("--w6-gib", help="comma-separated file sizes in GiB (default 1,20)")
    add("--skip-dvc", action="store_true", help="W5 without DVC")
    add("--workdir", type=Path, default=common.WORK, help="workloads, repositories, results")
    add("--generate-only", action="store_true", help="build (or check) the W5 trees and stop")
    args = p.parse_args(argv)
    only = {x.strip() for x in args.only.split(",")}
    w5 = (
        [int(x) for x in args.w5_files.split(",")]
        if args.w5_files
        else list(W5_QUICK if args.quick else W5_SIZES)
    )
    w6 = (
        [int(float(x) * GiB) for x in args.w6_gib.split(",")]
        if args.w6_gib
        else list(W6_QUICK if args.quick else W6_SIZES)
    )
    workdir: Path = args.workdir.resolve()
    data, runs = workdir / "data" / "scale", workdir / "runs" / "scale"
    data.mkdir(parents=True, exist_ok=True)
    if args.generate_only:
        for n in w5:
            build_w5(data / f"w5-{n}", n)
        return 0
    rmtree(runs)
    runs.mkdir(parents=True)
    t_start = time.perf_counter()
    ENV.update(common.process_env(), DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(runs / "dvc"))
    ENV["GIT_CEILING_DIRECTORIES"] = str(workdir)
    for who in ("AUTHOR", "COMMITTER"):
        ENV.update({f"GIT_{who}_NAME": "bench", f"GIT_{who}_EMAIL": "bench@example.invalid"})
    bs.ARGV["modelkeep"] = common.cli_command()
    if "w5" in only and not args.skip_dvc:
        dvc = common.peer_venv(workdir / "dvc-venv", [f"dvc=={bs.DVC_VERSION}"], "dvc", ENV)
        bs.ARGV["dvc"] = [str(dvc.parent / "dvc")]
    problems: list[str] = []
    loads = [f"start {common.load_avg()}"]
    w5_rows = [bench_w5(data, runs, n, problems) for n in w5] if "w5" in only else []
    loads.append(f"after W5 {common.load_avg()}")
    w6_runs = []
    for size in w6 if "w6" in only else []:
        free = shutil.disk_usage(runs).free
        if (fits := min(size, (free - 3 * GiB) // 2 // GiB * GiB)) < size:
            # The disk is shared: run the largest whole GiB that fits, and say so.
            problems.append(
                f"W6 {human_bytes(size)} needs {human_bytes(2 * size + 3 * GiB)} free, "
                f"{human_bytes(free)} is: ran {human_bytes(fits)} instead"
            )
            if fits < GiB:
                continue
        w6_runs.append(bench_w6(runs, fits, problems))
    loads.append(f"end {common.load_avg()}")
    dropped = "dropped" if os.access(bs.DROP_CACHES, os.W_OK) else "not dropped (not root)"
    lines = [
        "## modelkeep at scale: W5 (many small files) and W6 (one huge file)",
        "",
        f"* machine: {common.machine()}",
        f"* load average (1, 5, 15 min): {'; '.join(loads)}",
        f"* `{' '.join(bs.ARGV['modelkeep'])}`; "
        + (f"DVC {bs.DVC_VERSION} (cache.type=copy)" if "dvc" in bs.ARGV else "DVC not run"),
        f"* one run of each step; page cache {dropped} and the input read once before each step",
        "",
        *w5_lines(w5_rows),
        "",
        *w6_lines(w6_runs),
        *(["", "Problems:", "", *(f"* {x}" for x in problems)] if problems else []),
        "",
        f"Total benchmark wall time: {human_seconds(time.perf_counter() - t_start)}.",
    ]
    doc: dict[str, object] = {
        "w5": [{"files": r.files, **r.values} for r in w5_rows],
        "w6": [{"size": r.size, **{k: vars(m) for k, m in r.steps.items()}} for r in w6_runs],
    }
    common.save(workdir, "scale", lines, doc)
    rmtree(runs)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
