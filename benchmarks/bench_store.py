#!/usr/bin/env python3
"""Storage benchmark: modelkeep vs DVC vs plain `cp`, side by side on generated workloads.

W1: one safetensors file; W2: a checkpoint and four successors, ~10% of the bytes changed each
time; W2b: as W2, with a tensor inserted near the start (every later byte shifts); W3: a tree
of small files, then some modified and added. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import filecmp
import functools
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import common
import numpy as np
from common import Arg, BenchError, log, run

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
DVC_VERSION = "3.67.1"
GENERATOR_VERSION = 2  # bump when the generators change, so cached workloads are rebuilt
BASE_SEED = 20_240_601
WRITE_BLOCK = 16 * MiB
INSERTED_TENSOR_SHAPE = (1, 1000)  # 4,000 bytes: shifts every later byte by a non-4K amount
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
SECTIONS = ("w1", "w2", "w2b", "w3", "help")
TOOLS = ("modelkeep", "dvc", "cp")
PEERS = ("modelkeep", "dvc")
Timing = tuple[float, float]  # seconds of the command(s), and of the `sync` right after them
ENV: dict[str, str] = {}  # every command's environment, set by main
ARGV: dict[str, list[str]] = {}  # the command of modelkeep and DVC, when they run


@dataclass(frozen=True)
class Scale:
    mode: str
    w1_bytes: int
    w2_bytes: int
    tensor_min: int
    tensor_max: int
    w3_files: int
    w3_changed: int  # W3 files modified, and as many added
    min_free: int
    w2_successors: int = 4
    w2_change_frac: float = 0.10
    w3_file_min: int = 8 * KiB
    w3_file_max: int = 64 * KiB


FULL = Scale("full", GiB, 512 * MiB, MiB, 16 * MiB, 20_000, 200, 15 * GiB)
QUICK = Scale("quick", 128 * MiB, 64 * MiB, 256 * KiB, 4 * MiB, 2_500, 25, 2 * GiB)


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float) -> str:
    return f"{s:.3f} s" if s < 10 else f"{s:.2f} s" if s < 100 else f"{s:.1f} s"


def timed(*cmds: Sequence[Arg], cwd: Path | None = None) -> Timing:
    """Commands back to back, then a `sync`; pending writes are flushed first, untimed."""
    os.sync()
    t0 = time.perf_counter()
    for cmd in cmds:
        run(cmd, ENV, cwd)
    t1 = time.perf_counter()
    os.sync()
    return t1 - t0, time.perf_counter() - t1


def files_under(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        yield from (Path(dirpath) / name for name in files)


def warm(*paths: Path) -> None:
    """The same start for every tool: page cache dropped (when root), then the input read once."""
    os.sync()
    if os.access(DROP_CACHES, os.W_OK):
        DROP_CACHES.write_text("1\n")
    for path in paths:
        for p in [path] if path.is_file() else files_under(path):
            with p.open("rb", buffering=0) as f:
                while f.read(8 * MiB):
                    pass


def du_sb(path: Path) -> int:
    return int(run(["du", "-sb", path], ENV).split()[0])


def rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    seed: tuple[int, ...]  # entropy for the values; changes when the tensor is re-randomised

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * 4


def tensor_layout(total: int, lo: int, hi: int, seed: int) -> list[Tensor]:
    """float32 tensors of assorted sizes in [lo, hi] (multiples of 4 KiB) adding up to total."""
    rng = np.random.default_rng([BASE_SEED, seed])
    cols, row_bytes = 1024, 4096
    tensors: list[Tensor] = []
    remaining, i = total, 0
    while remaining > 0:
        size = int(rng.integers(lo, hi + 1)) // row_bytes * row_bytes
        if remaining - size < lo:
            size = remaining
        size = max(row_bytes, min(size, remaining))
        rows, rest = divmod(size, row_bytes)
        shape = (rows, cols) if rest == 0 else (size // 4,)
        kind = ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")[i % 4]
        tensors.append(Tensor(f"model.layers.{i // 4}.{kind}.weight", shape, (seed, i, 0)))
        remaining -= size
        i += 1
    return tensors


def write_safetensors(path: Path, tensors: Sequence[Tensor]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "generator": "modelkeep-bench"}}
    offset = 0
    for t in tensors:
        end = offset + t.nbytes
        header[t.name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for t in tensors:
            rng = np.random.default_rng([BASE_SEED, *t.seed])
            left = t.nbytes // 4
            while left:
                n = min(left, WRITE_BLOCK // 4)
                f.write(rng.standard_normal(n, dtype=np.float32).tobytes())
                left -= n
    tmp.replace(path)


def successor(tensors: list[Tensor], frac: float, version: int, seed: int) -> list[Tensor]:
    """Re-randomise whole tensors, in a seeded order, until about frac of the bytes changed."""
    rng = np.random.default_rng([BASE_SEED, seed, 1000 + version])
    target = frac * sum(t.nbytes for t in tensors)
    out, changed = list(tensors), 0
    for idx in rng.permutation(len(tensors)):
        t = out[int(idx)]
        if changed + t.nbytes - target > target - changed:
            continue  # taking it would land further from the target than leaving it
        out[int(idx)] = Tensor(t.name, t.shape, (*t.seed[:2], version))
        changed += t.nbytes
        if changed >= 0.98 * target:
            break
    return out


def w3_path(i: int) -> Path:
    return Path(f"pkg{i % 16:02d}", f"mod{(i // 16) % 12:02d}", f"part{i % 3}", f"f{i:05d}.bin")


def build_w3(s: Scale, d: Path) -> None:
    def write(rng: np.random.Generator, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(int(rng.integers(s.w3_file_min, s.w3_file_max + 1))))

    rng = np.random.default_rng([BASE_SEED, 3])
    for i in range(s.w3_files):
        write(rng, d / "tree" / w3_path(i))
    # The change set, applied by copying it over the tree: modified files, then new ones,
    # half in existing folders and half in a new one.
    rng = np.random.default_rng([BASE_SEED, 33])
    for i in rng.choice(s.w3_files, size=s.w3_changed, replace=False):
        write(rng, d / "changes" / w3_path(int(i)))
    for j in range(s.w3_changed):
        i = s.w3_files + j
        new_folder = Path("pkg_new", f"mod{j % 7}", f"f{i:05d}.bin")
        write(rng, d / "changes" / (w3_path(i) if j % 2 else new_folder))


def apply_w3_changes(changes: Path, tree: Path) -> None:
    for src in files_under(changes):
        dst = tree / src.relative_to(changes)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)  # never write through a link a tool may have placed
        shutil.copyfile(src, dst)


def generate(s: Scale, data: Path) -> None:
    """The workloads, in data (kept, and reused while its marker matches the scale)."""
    spec, marker = {"generator": GENERATOR_VERSION, "seed": BASE_SEED, **asdict(s)}, data / ".spec"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return
    log(f"generating the {s.mode} workloads in {data} ...")
    rmtree(data)
    for name in ("w1", "w2", "w2b"):
        (data / name).mkdir(parents=True)
    layout = functools.partial(tensor_layout, lo=s.tensor_min, hi=s.tensor_max)
    write_safetensors(data / "w1" / "model.safetensors", layout(s.w1_bytes, seed=1))
    chain = [layout(s.w2_bytes, seed=2)]
    for v in range(1, s.w2_successors + 1):
        chain.append(successor(chain[-1], s.w2_change_frac, v, seed=2))
    extra = Tensor("model.embed_norm_extra.weight", INSERTED_TENSOR_SHAPE, (99, 0, 0))
    for v, tensors in enumerate(chain):
        write_safetensors(data / "w2" / f"ckpt{v}.safetensors", tensors)
        if v:  # W2b: the same with a tensor inserted after the first (its ckpt0 is W2's)
            write_safetensors(
                data / "w2b" / f"ckpt{v}.safetensors", [tensors[0], extra, *tensors[1:]]
            )
    build_w3(s, data / "w3")
    marker.write_text(json.dumps(spec))


def peer_init(tool: str, repo: Path) -> None:
    repo.mkdir(parents=True)
    if tool == "modelkeep":
        run([*ARGV[tool], "init"], ENV, repo)
        return
    run(["git", "init", "-q"], ENV, repo)
    run([*ARGV[tool], "init", "-q"], ENV, repo)
    # ext4 has no reflinks: DVC's default "reflink,copy" is "copy" there anyway.
    run([*ARGV[tool], "config", "--local", "cache.type", "copy"], ENV, repo)
    run([*ARGV[tool], "config", "--local", "core.check_update", "false"], ENV, repo)


def peer_add(tool: str, repo: Path, path: Path, name: str) -> Timing:
    args = ["--name", name] if tool == "modelkeep" else []  # DVC: a path inside its repo
    return timed([*ARGV[tool], "add", path if args else path.relative_to(repo), *args], cwd=repo)


def peer_stored(tool: str, repo: Path) -> int:
    if tool == "dvc":
        return du_sb(repo / ".dvc" / "cache")
    return int(json.loads(run([*ARGV[tool], "du", "--json"], ENV, repo))["stored_bytes"])


@dataclass
class Row:
    label: str
    unit: str = "s"  # "s" or "B"
    tools: tuple[str, ...] = TOOLS  # the others read "—"
    target: tuple[str, float] | None = None  # modelkeep's figure or the ratio, and its limit
    values: dict[str, list[float]] = field(default_factory=dict)  # one per run
    splits: dict[str, list[Timing]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def put(self, tool: str, value: Timing | float) -> None:
        if isinstance(value, tuple):
            self.splits.setdefault(tool, []).append(value)
        self.values.setdefault(tool, []).append(sum(value) if isinstance(value, tuple) else value)

    def value(self, tool: str) -> float | None:
        ok = tool in self.values and tool not in self.errors
        return statistics.median(self.values[tool]) if ok else None

    def cells(self, skipped: set[str]) -> list[str]:
        cells = [self.label]
        for tool in TOOLS:
            missing = "error" if tool in self.errors else "skipped" if tool in skipped else "—"
            v = self.value(tool)
            cells.append(
                missing if v is None else human_bytes(v) if self.unit == "B" else human_seconds(v)
            )
        mk, dvc = self.value("modelkeep"), self.value("dvc")
        ratio = mk / dvc if mk is not None and dvc else None
        cells.append(
            "—" if ratio is None else f"{ratio:.1%}" if self.unit == "B" else f"{ratio:.2f}×"
        )
        if self.target is None:
            return [*cells, "—", "—"]
        on, limit = self.target
        v = ratio if on == "ratio" else mk
        text = f"≤ {limit:.0%} of DVC" if on == "ratio" else f"< {limit} s"
        return [*cells, text, "—" if v is None else "yes" if v <= limit else "**NO**"]

    def details(self) -> str:
        parts = []
        for tool, splits in self.splits.items():
            op, sync = (statistics.median(t[i] for t in splits) for i in (0, 1))
            runs = f" (runs: {', '.join(f'{v:.3f}' for v in self.values[tool])} s)"
            parts.append(f"{tool} {op:.3f} s + sync {sync:.3f} s" + runs * (len(splits) > 1))
        if self.unit == "B":
            parts += [f"{t} runs: {v}" for t, v in self.values.items() if len(set(v)) > 1]
        return "; ".join([*parts, *(f"{k} = {v}" for k, v in self.notes.items())])


@dataclass
class Ctx:
    scale: Scale
    data: Path  # the workloads
    runs: Path
    keep_runs: bool
    rows: dict[str, Row] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def row(self, label: str, unit: str = "s", **kw: Any) -> Row:
        """The row of this label, made on the first run of its section."""
        return self.rows.setdefault(label, Row(label, unit, **kw))

    def section(self, name: str, rows: list[Row], work: Callable[[Path, str], None]) -> None:
        """Each tool's work(folder, tool) in a fresh folder; a failure marks the cells it left."""
        d = self.runs / name
        rmtree(d)
        d.mkdir(parents=True)
        for tool in [*ARGV, "cp"]:
            before = [len(r.values.get(tool, [])) for r in rows]
            try:
                work(d, tool)
            except (BenchError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                self.problems.append(f"{name} [{tool}]: {exc}")
                log(f"ERROR {name} [{tool}]: {exc}")
                for r, n in zip(rows, before, strict=True):
                    if tool in r.tools and len(r.values.get(tool, [])) == n:
                        r.errors.append(tool)
        if not self.keep_runs:
            rmtree(d)


def same_file(a: Path, b: Path) -> None:
    if not filecmp.cmp(a, b, shallow=False):
        raise BenchError(f"restored file {b} differs from {a}")


def bench_w1(ctx: Ctx, name: str) -> None:
    src = ctx.data / "w1" / "model.safetensors"
    add = ctx.row(f"W1 add ({human_bytes(src.stat().st_size)} safetensors)")
    readd = ctx.row("W1 re-add, unchanged", tools=PEERS)
    restore = ctx.row("W1 restore (get / dvc checkout / cp)")

    def work(d: Path, tool: str) -> None:
        repo, out = d / tool, d / f"{tool}-out" / src.name
        if tool == "cp":
            out.parent.mkdir()
            warm(src)
            add.put(tool, timed(["cp", src, repo]))
            warm(repo)
            restore.put(tool, timed(["cp", repo, out]))
            return same_file(src, out)
        peer_init(tool, repo)
        ws = src if tool == "modelkeep" else repo / src.name  # DVC adds inside its repo
        if ws != src:
            shutil.copyfile(src, ws)
        for row in (add, readd):
            warm(ws)
            row.put(tool, peer_add(tool, repo, ws, "w1"))
        if tool == "modelkeep":
            out.parent.mkdir()
            warm(repo / ".modelkeep")
            restore.put(tool, timed([*ARGV[tool], "get", "w1:v1", "-o", out, "--force"], cwd=repo))
        else:
            out = ws
            ws.unlink()
            warm(repo / ".dvc" / "cache")
            restore.put(tool, timed([*ARGV[tool], "checkout"], cwd=repo))
        same_file(src, out)

    ctx.section(name, [add, readd, restore], work)


def bench_chain(ctx: Ctx, name: str) -> None:
    label, n = name.upper().replace("B", "b"), ctx.scale.w2_successors + 1
    files = [ctx.data / ("w2" if v == 0 else name) / f"ckpt{v}.safetensors" for v in range(n)]
    adds = ctx.row(f"{label} add all {n} versions (total time)")
    what = f"(DVC: .dvc/cache; cp: {n} full copies)"
    stored = ctx.row(f"{label} stored bytes after {n} versions {what}", "B", target=("ratio", 0.26))

    def work(d: Path, tool: str) -> None:
        repo = d / tool
        if tool == "cp":
            repo.mkdir()
            warm(*files)
            cmds: list[list[Arg]] = [["cp", f, repo / f"v{v}"] for v, f in enumerate(files)]
            adds.put(tool, timed(*cmds))
            return stored.put(tool, du_sb(repo))
        peer_init(tool, repo)
        ws, op, sync = repo / "ckpt.safetensors", 0.0, 0.0
        for src in files:  # the same path for every version, as a trainer writes
            shutil.copyfile(src, ws)
            warm(ws)
            t = peer_add(tool, repo, ws, name)
            op, sync = op + t[0], sync + t[1]
        adds.put(tool, (op, sync))
        stored.put(tool, peer_stored(tool, repo))
        if tool == "modelkeep":
            stored.notes["`du -sb .modelkeep`"] = human_bytes(du_sb(repo / ".modelkeep"))
            du = json.loads(run([*ARGV[tool], "du", "--json"], ENV, repo))
            stored.notes["modelkeep du --json"] = json.dumps(du)

    ctx.section(name, [adds, stored], work)


def bench_w3(ctx: Ctx, name: str) -> None:
    s, tree = ctx.scale, ctx.data / "w3" / "tree"
    add = ctx.row(f"W3 add ({s.w3_files:,} files, 8–64 KiB)")
    noop = ctx.row("W3 no-op status (modelkeep re-add vs dvc status)", tools=PEERS)
    update = ctx.row(f"W3 add after {s.w3_changed} modified + {s.w3_changed} new", tools=PEERS)
    stored = ctx.row("W3 stored bytes after 2 versions (info; cp: one plain copy of v1)", "B")

    def work(d: Path, tool: str) -> None:
        repo = d / tool
        ws = repo / "data"
        if tool == "cp":
            repo.mkdir()
            warm(tree)
            add.put(tool, timed(["cp", "-r", tree, ws]))
            return stored.put(tool, du_sb(ws))
        peer_init(tool, repo)
        run(["cp", "-a", tree, ws], ENV)  # untimed; keeps the mtimes
        warm(ws)
        add.put(tool, peer_add(tool, repo, ws, "w3"))
        warm(ws)
        if tool == "dvc":
            noop.put(tool, timed([*ARGV[tool], "status"], cwd=repo))
        else:  # the same add: the stat cache finds the version exists
            noop.put(tool, peer_add(tool, repo, ws, "w3"))
        apply_w3_changes(ctx.data / "w3" / "changes", ws)
        warm(ws)
        update.put(tool, peer_add(tool, repo, ws, "w3"))
        stored.put(tool, peer_stored(tool, repo))

    ctx.section(name, [add, noop, update, stored], work)


def bench_help(ctx: Ctx, name: str) -> None:
    label = "`modelkeep --help` wall time, best of 5 (DVC: `dvc --help`)"
    row = ctx.row(label, tools=PEERS, target=("modelkeep", 0.3))

    def best_of_5(argv: Sequence[Arg]) -> float:
        return min(common.repeat(lambda: run(argv, ENV), 5)[1])

    def work(d: Path, tool: str) -> None:
        if tool in ARGV:
            row.put(tool, best_of_5([*ARGV[tool], "--help"]))
        if tool == "modelkeep":
            seconds = best_of_5([sys.executable, "-m", "modelkeep", "--help"])
            row.notes["`python -m modelkeep --help`"] = f"{seconds:.3f} s"

    ctx.section(name, [row], work)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark modelkeep against DVC and cp.")
    add = p.add_argument
    add("--quick", action="store_true", help="scale every workload down ~8x")
    add("--skip-dvc", action="store_true", help="do not install or run DVC")
    add("--skip-modelkeep", action="store_true", help="do not run modelkeep")
    add("--workdir", type=Path, default=common.WORK, help="workloads, repos, DVC venv, results")
    add("--only", default=",".join(SECTIONS), help=f"a subset of {','.join(SECTIONS)}")
    add("--repeat", type=int, help="runs per section (default 3, or 1 with --quick)")
    add("--keep-runs", action="store_true", help="keep the repos of this run")
    add("--generate-only", action="store_true", help="only build the workloads")
    args = p.parse_args(argv)
    args.only = {x.strip().lower() for x in args.only.split(",")} - {""}
    if args.only - set(SECTIONS):
        p.error(f"unknown section(s) in --only: {', '.join(sorted(args.only - set(SECTIONS)))}")
    args.repeat = max(1, args.repeat or (1 if args.quick else 3))
    return args


def has_room(workdir: Path, mode: str, min_free: int) -> bool:
    """Make workdir; say so and return False when its disk has less than min_free free."""
    workdir.mkdir(parents=True, exist_ok=True)
    if (free := shutil.disk_usage(workdir).free) >= min_free:
        return True
    print(
        f"Sorry: {mode} mode needs {human_bytes(min_free)} free under {workdir}, "
        f"only {human_bytes(free)} is. Free some space, pick another --workdir or try --quick.",
        file=sys.stderr,
    )
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scale, t_start = QUICK if args.quick else FULL, time.perf_counter()
    workdir: Path = args.workdir.resolve()
    if not has_room(workdir, scale.mode, scale.min_free):
        return 1
    data = workdir / "data" / scale.mode
    generate(scale, data)
    if args.generate_only:
        return 0
    runs = workdir / "runs" / scale.mode
    rmtree(runs)
    ENV.update(common.process_env(), DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(runs / "dvc"))
    ENV["GIT_CEILING_DIRECTORIES"] = str(workdir)  # no Git work tree above the repos and data
    for who in ("AUTHOR", "COMMITTER"):
        ENV.update({f"GIT_{who}_NAME": "bench", f"GIT_{who}_EMAIL": "bench@example.invalid"})
    if not args.skip_modelkeep:
        ARGV["modelkeep"] = common.cli_command()
    if not args.skip_dvc:
        dvc = common.peer_venv(workdir / "dvc-venv", [f"dvc=={DVC_VERSION}"], "dvc", ENV)
        ARGV["dvc"] = [str(dvc.parent / "dvc")]
    ctx = Ctx(scale, data, runs, args.keep_runs)
    sections = {"w1": bench_w1, "w2": bench_chain, "w2b": bench_chain, "w3": bench_w3}
    for name, bench in (sections | {"help": bench_help}).items():
        for i in range(args.repeat if name != "help" else 1):
            if name in args.only:
                log(f"{name} (run {i + 1}) ...")
                bench(ctx, name)
    skipped = set(PEERS) - set(ARGV)
    head = ["workload", "modelkeep", "DVC", "cp", "ratio (modelkeep/DVC)", "target", "met?"]
    fs = run(["findmnt", "-n", "-o", "FSTYPE", "-T", workdir], ENV).strip()
    dropped = "dropped" if os.access(DROP_CACHES, os.W_OK) else "not dropped (not root)"
    lines = [
        f"## modelkeep storage benchmark ({scale.mode} mode)",
        "",
        *common.md_table(head, [r.cells(skipped) for r in ctx.rows.values()]),
        "",
        f"- Times: median of {args.repeat} run(s) of each section, fresh repositories each run "
        "(`--help`: best of 5); wall-clock seconds of the command **plus a `sync` right after "
        f"it**, after an untimed `sync`. Before each timed step the page cache is {dropped} and "
        "the step's input read once. DVC `add` excludes `git add`/`git commit` of .dvc files.",
        "- Stored bytes: modelkeep `du --json` stored_bytes; DVC `du -sb .dvc/cache`; cp `du -sb` "
        "of the copies.",
        f"- machine: {common.machine()}; workdir filesystem {fs}",
        f"- `{' '.join(ARGV.get('modelkeep', ['modelkeep not run']))}`; "
        + ("DVC not run" if "dvc" in skipped else f"DVC {DVC_VERSION} (cache.type=copy)"),
        *(["- QUICK mode: workloads scaled down ~8x; a smoke run."] if args.quick else []),
        "",
        "Details (operation time + sync time):",
        "",
        *(f"- {r.label}: {d}" for r in ctx.rows.values() if (d := r.details())),
        *(["", "Problems:", "", *(f"- {p}" for p in ctx.problems)] if ctx.problems else []),
        "",
        f"Total benchmark wall time: {human_seconds(time.perf_counter() - t_start)}.",
    ]
    rows = [asdict(r) for r in ctx.rows.values()]
    common.save(workdir, f"bench-{scale.mode}", lines, {"scale": asdict(scale), "rows": rows})
    if not args.keep_runs:
        rmtree(runs)
    return 1 if ctx.problems else 0


if __name__ == "__main__":
    sys.exit(main())
