#!/usr/bin/env python3
"""Side-by-side storage benchmark: modelkeep vs DVC vs plain ``cp``.

Generates deterministic workloads (fixed seeds), runs modelkeep, DVC (installed into a
private venv by this script) and ``cp`` on them in the same run and under the same
warm-page-cache conditions, then prints a Markdown table of the figures and the
modelkeep/DVC ratios.

Workloads (full size; ``--quick`` scales everything down ~8x):

* W1  - one 1 GiB safetensors-layout float32 file (random normal values).
* W2  - a 512 MiB checkpoint and four successors, each re-randomising ~10% of the bytes
        (whole tensors chosen at random).
* W2b - as W2, but the first successor also inserts a small tensor near the start of the
        file, so every later byte shifts.
* W3  - 20,000 files of 8-64 KiB in nested folders, then 200 modified and 200 new files.

Run ``python benchmarks/bench_store.py --help`` for the options; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_WORKDIR = BENCH_DIR / ".work"
DVC_VERSION = "3.67.1"
GENERATOR_VERSION = 2  # bump when the generators change, so cached workloads are rebuilt
BASE_SEED = 20_240_601
CMD_TIMEOUT_S = 3 * 3600
WRITE_BLOCK = 16 * MiB
INSERTED_TENSOR_SHAPE = (1, 1000)  # 4,000 bytes: shifts every later byte by a non-4K amount

Unit = Literal["s", "B"]


# --------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Sizes of every workload for one mode."""

    mode: str
    w1_bytes: int
    w2_bytes: int
    w2_successors: int
    w2_change_frac: float
    tensor_min: int
    tensor_max: int
    w3_files: int
    w3_file_min: int
    w3_file_max: int
    w3_modified: int
    w3_new: int
    min_free: int


FULL = Scale(
    mode="full",
    w1_bytes=1 * GiB,
    w2_bytes=512 * MiB,
    w2_successors=4,
    w2_change_frac=0.10,
    tensor_min=1 * MiB,
    tensor_max=16 * MiB,
    w3_files=20_000,
    w3_file_min=8 * KiB,
    w3_file_max=64 * KiB,
    w3_modified=200,
    w3_new=200,
    min_free=15 * GiB,
)

QUICK = Scale(
    mode="quick",
    w1_bytes=128 * MiB,
    w2_bytes=64 * MiB,
    w2_successors=4,
    w2_change_frac=0.10,
    tensor_min=256 * KiB,
    tensor_max=4 * MiB,
    w3_files=2_500,
    w3_file_min=8 * KiB,
    w3_file_max=64 * KiB,
    w3_modified=25,
    w3_new=25,
    min_free=2 * GiB,
)


# --------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float) -> str:
    if s < 10:
        return f"{s:.3f} s"
    if s < 100:
        return f"{s:.2f} s"
    return f"{s:.1f} s"


def human(value: float, unit: Unit) -> str:
    return human_bytes(value) if unit == "B" else human_seconds(value)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Command running
# --------------------------------------------------------------------------------------


class BenchError(RuntimeError):
    """A command failed; the message carries the tail of its output."""


@dataclass
class Timing:
    """Wall time of one operation and of the ``sync`` that followed it."""

    op: float
    sync: float

    @property
    def durable(self) -> float:
        return self.op + self.sync


class Runner:
    """Runs subprocesses, logs every command with its output to a log file."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self.env = env
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._log.close()

    def run(
        self, cmd: Sequence[str | os.PathLike[str]], cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [os.fspath(c) for c in cmd]
        t0 = time.perf_counter()
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CMD_TIMEOUT_S,
            check=False,
        )
        elapsed = time.perf_counter() - t0
        self._log.write(
            f"$ {' '.join(argv)}\n  cwd={cwd} rc={proc.returncode} t={elapsed:.3f}s\n"
            f"{_indent(proc.stdout)}{_indent(proc.stderr)}"
        )
        self._log.flush()
        if check and proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip())[-600:]
            raise BenchError(f"`{' '.join(argv)}` exited {proc.returncode}: {tail}")
        return proc

    def timed(self, cmd: Sequence[str | os.PathLike[str]], cwd: Path | None = None) -> Timing:
        """Time ``cmd`` and, separately, the ``sync`` after it (pending writes flushed first)."""
        os.sync()
        t0 = time.perf_counter()
        self.run(cmd, cwd=cwd)
        t1 = time.perf_counter()
        os.sync()
        t2 = time.perf_counter()
        return Timing(op=t1 - t0, sync=t2 - t1)

    def timed_many(
        self, cmds: Sequence[Sequence[str | os.PathLike[str]]], cwd: Path | None = None
    ) -> Timing:
        """Time several commands back to back, then one ``sync``."""
        os.sync()
        t0 = time.perf_counter()
        for cmd in cmds:
            self.run(cmd, cwd=cwd)
        t1 = time.perf_counter()
        os.sync()
        t2 = time.perf_counter()
        return Timing(op=t1 - t0, sync=t2 - t1)


def _indent(text: str, limit: int = 4000) -> str:
    if not text:
        return ""
    if len(text) > limit:
        text = text[: limit // 2] + "\n  [...]\n" + text[-limit // 2 :]
    return "".join(f"  | {line}\n" for line in text.splitlines())


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def warm(path: Path) -> None:
    """Give every tool the same start: an emptied page cache, then path read once.

    A page cache full of earlier steps' files makes the kernel reclaim memory during the
    next step's writes, which on small VMs swings timings by 2-3x; dropping it first (when
    running as root) makes the steps comparable. The input is then read, so it is warm.
    """
    os.sync()
    if os.access(DROP_CACHES, os.W_OK):
        DROP_CACHES.write_text("1\n")
    paths: Iterator[Path] = iter([path]) if path.is_file() else _files_under(path)
    for p in paths:
        with p.open("rb", buffering=0) as f:
            while f.read(8 * MiB):
                pass


def _files_under(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            yield Path(dirpath) / name


def du_sb(runner: Runner, path: Path) -> int:
    """Apparent size like ``du -sb PATH``."""
    out = runner.run(["du", "-sb", path]).stdout
    return int(out.split()[0])


def rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


# --------------------------------------------------------------------------------------
# Workload generation (deterministic, bounded memory)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    seed: tuple[int, ...]  # entropy for np.random.default_rng; changes when re-randomised

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * 4


def tensor_layout(total: int, lo: int, hi: int, seed: int) -> list[Tensor]:
    """Tensors of assorted sizes in [lo, hi] (multiples of 4 KiB) adding up to ``total``."""
    rng = np.random.default_rng([BASE_SEED, seed])
    cols = 1024  # float32 -> 4 KiB rows
    row_bytes = cols * 4
    tensors: list[Tensor] = []
    remaining = total
    i = 0
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
    """Write a safetensors-layout file tensor by tensor (memory bounded by WRITE_BLOCK)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "generator": "modelkeep-bench"}}
    offset = 0
    for t in tensors:
        header[t.name] = {
            "dtype": "F32",
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors:
            rng = np.random.default_rng([BASE_SEED, *t.seed])
            left = t.nbytes // 4
            while left:
                n = min(left, WRITE_BLOCK // 4)
                f.write(rng.standard_normal(n, dtype=np.float32).tobytes())
                left -= n
    tmp.replace(path)


def successor(tensors: list[Tensor], frac: float, version: int, seed: int) -> list[Tensor]:
    """Re-randomise randomly chosen whole tensors so that about ``frac`` of the bytes change.

    Tensors are taken in a seeded random order; one is skipped when taking it would land
    further from the target than leaving it out.
    """
    rng = np.random.default_rng([BASE_SEED, seed, 1000 + version])
    target = frac * sum(t.nbytes for t in tensors)
    out = list(tensors)
    changed = 0
    for idx in rng.permutation(len(tensors)):
        t = out[int(idx)]
        if changed + t.nbytes - target > target - changed:
            continue
        out[int(idx)] = Tensor(t.name, t.shape, (*t.seed[:2], version))
        changed += t.nbytes
        if changed >= 0.98 * target:
            break
    return out


def _spec_ok(marker: Path, spec: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(marker.read_text()) == spec)
    except (OSError, ValueError):
        return False


def _cached(dirpath: Path, spec: dict[str, Any], build: Callable[[Path], None]) -> None:
    """Build ``dirpath`` with ``build`` unless a marker says it already holds ``spec``."""
    marker = dirpath / ".complete.json"
    spec = {"generator": GENERATOR_VERSION, **spec}
    if _spec_ok(marker, spec):
        return
    rmtree(dirpath)
    dirpath.mkdir(parents=True)
    build(dirpath)
    marker.write_text(json.dumps(spec, indent=1))


@dataclass
class Workloads:
    w1: Path
    w2: list[Path]
    w2b: list[Path]
    w3: Path
    w3_changes: Path


def generate(scale: Scale, data: Path) -> Workloads:
    t0 = time.perf_counter()

    def build_w1(d: Path) -> None:
        log(f"generating W1 ({human_bytes(scale.w1_bytes)}) ...")
        write_safetensors(
            d / "model.safetensors",
            tensor_layout(scale.w1_bytes, scale.tensor_min, scale.tensor_max, seed=1),
        )

    def w2_chain() -> list[list[Tensor]]:
        chain = [tensor_layout(scale.w2_bytes, scale.tensor_min, scale.tensor_max, seed=2)]
        for v in range(1, scale.w2_successors + 1):
            chain.append(successor(chain[-1], scale.w2_change_frac, v, seed=2))
        return chain

    def build_w2(d: Path) -> None:
        log(f"generating W2 ({scale.w2_successors + 1} x {human_bytes(scale.w2_bytes)}) ...")
        for v, tensors in enumerate(w2_chain()):
            write_safetensors(d / f"ckpt{v}.safetensors", tensors)

    def build_w2b(d: Path) -> None:
        log(f"generating W2b ({scale.w2_successors} successors) ...")
        extra = Tensor("model.embed_norm_extra.weight", INSERTED_TENSOR_SHAPE, (99, 0, 0))
        for v, tensors in enumerate(w2_chain()):
            if v == 0:
                continue  # identical to W2's ckpt0; reused from there
            write_safetensors(d / f"ckpt{v}.safetensors", [tensors[0], extra, *tensors[1:]])

    base = {"seed": BASE_SEED, "tensor_min": scale.tensor_min, "tensor_max": scale.tensor_max}
    _cached(data / "w1", {**base, "bytes": scale.w1_bytes}, build_w1)
    w2_spec = {
        **base,
        "bytes": scale.w2_bytes,
        "successors": scale.w2_successors,
        "frac": scale.w2_change_frac,
    }
    _cached(data / "w2", w2_spec, build_w2)
    _cached(data / "w2b", {**w2_spec, "insert": list(INSERTED_TENSOR_SHAPE)}, build_w2b)
    w3_spec = {
        "seed": BASE_SEED,
        "files": scale.w3_files,
        "min": scale.w3_file_min,
        "max": scale.w3_file_max,
        "modified": scale.w3_modified,
        "new": scale.w3_new,
    }
    _cached(data / "w3", w3_spec, lambda d: build_w3(scale, d))
    log(f"workloads ready in {human_seconds(time.perf_counter() - t0)} ({data})")

    w2 = [data / "w2" / f"ckpt{v}.safetensors" for v in range(scale.w2_successors + 1)]
    w2b = [w2[0]] + [
        data / "w2b" / f"ckpt{v}.safetensors" for v in range(1, scale.w2_successors + 1)
    ]
    return Workloads(
        w1=data / "w1" / "model.safetensors",
        w2=w2,
        w2b=w2b,
        w3=data / "w3" / "tree",
        w3_changes=data / "w3" / "changes",
    )


def _w3_relpath(i: int) -> Path:
    # 3 levels of nesting: 16 packages x 12 modules x ~100 files (full scale).
    return Path(f"pkg{i % 16:02d}", f"mod{(i // 16) % 12:02d}", f"part{i % 3}", f"f{i:05d}.bin")


def build_w3(scale: Scale, d: Path) -> None:
    log(f"generating W3 ({scale.w3_files} files + {scale.w3_modified}/{scale.w3_new} changes) ...")
    rng = np.random.default_rng([BASE_SEED, 3])
    tree = d / "tree"
    for i in range(scale.w3_files):
        p = tree / _w3_relpath(i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.bytes(int(rng.integers(scale.w3_file_min, scale.w3_file_max + 1))))
    # The change set: same relative paths as in the tree, applied by copying over it.
    changes = d / "changes"
    rng = np.random.default_rng([BASE_SEED, 33])
    for i in rng.choice(scale.w3_files, size=scale.w3_modified, replace=False):
        p = changes / _w3_relpath(int(i))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.bytes(int(rng.integers(scale.w3_file_min, scale.w3_file_max + 1))))
    for j in range(scale.w3_new):
        i = scale.w3_files + j
        # half go into existing folders, half into a brand-new package folder
        rel = _w3_relpath(i) if j % 2 else Path("pkg_new", f"mod{j % 7}", f"f{i:05d}.bin")
        p = changes / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.bytes(int(rng.integers(scale.w3_file_min, scale.w3_file_max + 1))))


def apply_w3_changes(changes: Path, tree: Path) -> None:
    """Overwrite/add the change-set files (fresh mtimes, so stat caches must notice)."""
    for src in _files_under(changes):
        dst = tree / src.relative_to(changes)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            dst.unlink()  # never write through a link a tool may have placed
        shutil.copyfile(src, dst)


def copy_tree(runner: Runner, src: Path, dst: Path) -> None:
    """Untimed workspace copy (cp -a keeps mtimes)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    runner.run(["cp", "-a", src, dst])


# --------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------


class Modelkeep:
    """Drives the modelkeep CLI as a subprocess: ``python -m modelkeep`` run inside the repo."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.argv = [sys.executable, "-m", "modelkeep"]

    def cmd(self, *args: str | os.PathLike[str]) -> list[str | os.PathLike[str]]:
        return [*self.argv, *args]

    def available(self) -> tuple[bool, str]:
        try:
            proc = self.runner.run(self.cmd("--help"), check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, str(exc)
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return proc.returncode == 0, (msg[-1] if msg else "")

    def init(self, repo: Path) -> None:
        repo.mkdir(parents=True, exist_ok=True)
        self.runner.run(self.cmd("init"), cwd=repo)

    def add(self, repo: Path, path: Path, name: str, msg: str | None = None) -> Timing:
        extra = ["-m", msg] if msg else []
        return self.runner.timed(self.cmd("add", path, "--name", name, *extra), cwd=repo)

    def get(self, repo: Path, ref: str, dest: Path) -> Timing:
        return self.runner.timed(self.cmd("get", ref, "-o", dest, "--force"), cwd=repo)

    def du(self, repo: Path) -> dict[str, Any]:
        out = self.runner.run(self.cmd("du", "--json"), cwd=repo).stdout
        doc = json.loads(out)
        if not isinstance(doc, dict) or "stored_bytes" not in doc:
            raise BenchError(f"`modelkeep du --json` gave no stored_bytes: {out[:300]}")
        return doc


class Dvc:
    """DVC in its own venv; each repo is a fresh ``git init`` + ``dvc init``."""

    def __init__(self, runner: Runner, venv: Path) -> None:
        self.runner = runner
        self.venv = venv
        self.exe = venv / "bin" / "dvc"

    def ensure_installed(self) -> str:
        if self.exe.exists():
            out = self.runner.run([self.exe, "--version"], check=False).stdout.strip()
            if out == DVC_VERSION:
                return out
        log(f"installing dvc=={DVC_VERSION} into {self.venv} (one-off) ...")
        rmtree(self.venv)
        self.runner.run([sys.executable, "-m", "venv", self.venv])
        pip = self.venv / "bin" / "pip"
        self.runner.run([pip, "install", "-q", "--upgrade", "pip"])
        self.runner.run([pip, "install", "-q", f"dvc=={DVC_VERSION}"])
        return self.runner.run([self.exe, "--version"]).stdout.strip()

    def init(self, repo: Path) -> None:
        repo.mkdir(parents=True, exist_ok=True)
        self.runner.run(["git", "init", "-q"], cwd=repo)
        self.runner.run([self.exe, "init", "-q"], cwd=repo)
        # ext4 has no reflinks, so DVC's default "reflink,copy" is "copy" here anyway.
        self.runner.run([self.exe, "config", "--local", "cache.type", "copy"], cwd=repo)
        self.runner.run([self.exe, "config", "--local", "core.check_update", "false"], cwd=repo)

    def timed(self, repo: Path, *args: str | os.PathLike[str]) -> Timing:
        return self.runner.timed([self.exe, *args], cwd=repo)

    def cache_bytes(self, repo: Path) -> int:
        return du_sb(self.runner, repo / ".dvc" / "cache")


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------

Value = float | str  # a number, or a short reason it is missing ("n/a", "error", "skipped")


@dataclass
class Target:
    on: Literal["ratio", "modelkeep"]
    op: Literal["<", "<="]
    value: float
    text: str

    def met(self, row: Row) -> str:
        v = row.ratio() if self.on == "ratio" else row.modelkeep
        if not isinstance(v, float):
            return "—"
        ok = v < self.value if self.op == "<" else v <= self.value
        return "yes" if ok else "**NO**"


@dataclass
class Row:
    workload: str
    unit: Unit
    modelkeep: Value = "n/a"
    dvc: Value = "n/a"
    cp: Value = "—"
    target: Target | None = None
    ratio_as_percent: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def ratio(self) -> float | None:
        if isinstance(self.modelkeep, float) and isinstance(self.dvc, float) and self.dvc > 0:
            return self.modelkeep / self.dvc
        return None

    def cells(self) -> list[str]:
        def fmt(v: Value) -> str:
            return human(v, self.unit) if isinstance(v, float) else v

        r = self.ratio()
        ratio = "—" if r is None else (f"{r:.1%}" if self.ratio_as_percent else f"{r:.2f}×")
        return [
            self.workload,
            fmt(self.modelkeep),
            fmt(self.dvc),
            fmt(self.cp),
            ratio,
            self.target.text if self.target else "—",
            self.target.met(self) if self.target else "—",
        ]


def markdown_table(rows: Sequence[Row]) -> str:
    head = ["workload", "modelkeep", "DVC", "cp", "ratio (modelkeep/DVC)", "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Benchmark sections
# --------------------------------------------------------------------------------------


@dataclass
class Ctx:
    scale: Scale
    runner: Runner
    wl: Workloads
    runs: Path
    mk: Modelkeep | None
    dvc: Dvc | None
    keep_runs: bool
    repeat: int = 1
    problems: list[str] = field(default_factory=list)

    def attempt(
        self, row: Row, tool: Literal["modelkeep", "dvc", "cp"], fn: Callable[[], None]
    ) -> None:
        """Run one tool's part of a section; a failure marks its cells and is reported."""
        try:
            fn()
        except (BenchError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            self.problems.append(f"{row.workload} [{tool}]: {exc}")
            log(f"ERROR {row.workload} [{tool}]: {exc}")
            setattr(row, tool, "error")

    def section_dir(self, name: str) -> Path:
        d = self.runs / name
        rmtree(d)
        d.mkdir(parents=True)
        return d

    def done(self, d: Path) -> None:
        if not self.keep_runs:
            rmtree(d)


def _set(row: Row, tool: str, t: Timing) -> None:
    setattr(row, tool, t.durable)
    row.details[tool] = {"op_s": round(t.op, 4), "sync_s": round(t.sync, 4)}


def _same_file(runner: Runner, a: Path, b: Path) -> None:
    if runner.run(["cmp", "-s", a, b], check=False).returncode != 0:
        raise BenchError(f"restored file {b} differs from {a}")


def bench_w1(ctx: Ctx) -> list[Row]:
    size = human_bytes(ctx.wl.w1.stat().st_size)
    add = Row(f"W1 add ({size} safetensors)", "s")
    readd = Row("W1 re-add, unchanged", "s")
    restore = Row("W1 restore (get / dvc checkout / cp)", "s")
    rows = [add, readd, restore]
    d = ctx.section_dir("w1")
    src = ctx.wl.w1

    if ctx.mk is not None:
        mk = ctx.mk
        repo = d / "mk"

        def run_mk_add() -> None:
            mk.init(repo)
            warm(src)
            _set(add, "modelkeep", mk.add(repo, src, "w1", "W1"))

        def run_mk_readd() -> None:
            warm(src)
            _set(readd, "modelkeep", mk.add(repo, src, "w1", "W1 again"))

        def run_mk_get() -> None:
            out = d / "mk-out" / src.name
            out.parent.mkdir()
            warm(repo / ".modelkeep")
            _set(restore, "modelkeep", mk.get(repo, "w1:v1", out))
            _same_file(ctx.runner, src, out)
            out.unlink()

        ctx.attempt(add, "modelkeep", run_mk_add)
        ctx.attempt(readd, "modelkeep", run_mk_readd)
        ctx.attempt(restore, "modelkeep", run_mk_get)
    else:
        add.modelkeep = readd.modelkeep = restore.modelkeep = "skipped"

    if ctx.dvc is not None:
        dvc = ctx.dvc
        repo = d / "dvc"
        ws = repo / src.name

        def run_dvc_add() -> None:
            dvc.init(repo)
            shutil.copyfile(src, ws)
            warm(ws)
            _set(add, "dvc", dvc.timed(repo, "add", ws.name))

        def run_dvc_readd() -> None:
            warm(ws)
            _set(readd, "dvc", dvc.timed(repo, "add", ws.name))

        def run_dvc_checkout() -> None:
            ws.unlink()
            warm(repo / ".dvc" / "cache")
            _set(restore, "dvc", dvc.timed(repo, "checkout"))
            _same_file(ctx.runner, src, ws)

        ctx.attempt(add, "dvc", run_dvc_add)
        ctx.attempt(readd, "dvc", run_dvc_readd)
        ctx.attempt(restore, "dvc", run_dvc_checkout)
    else:
        add.dvc = readd.dvc = restore.dvc = "skipped"

    def run_cp() -> None:
        dest = d / "cp" / src.name
        dest.parent.mkdir()
        warm(src)
        _set(add, "cp", ctx.runner.timed(["cp", src, dest]))
        out = d / "cp-out" / src.name
        out.parent.mkdir()
        warm(dest)
        _set(restore, "cp", ctx.runner.timed(["cp", dest, out]))
        _same_file(ctx.runner, src, out)

    ctx.attempt(add, "cp", run_cp)
    if add.cp == "error":
        restore.cp = "error"
    ctx.done(d)
    return rows


def bench_chain(ctx: Ctx, label: str, name: str, files: list[Path]) -> list[Row]:
    n = len(files)
    adds = Row(f"{label} add all {n} versions (total time)", "s")
    stored = Row(
        f"{label} stored bytes after {n} versions (DVC: .dvc/cache; cp: {n} full copies)",
        "B",
        target=Target("ratio", "<=", 0.32, "≤ 32% of DVC"),
        ratio_as_percent=True,
    )
    rows = [adds, stored]
    d = ctx.section_dir(name)

    def add_versions(ws: Path, add_one: Callable[[int], Timing]) -> Timing:
        total = Timing(0.0, 0.0)
        for v, src in enumerate(files):
            shutil.copyfile(src, ws)  # same workspace path for every version, like a trainer
            warm(ws)
            t = add_one(v)
            total = Timing(total.op + t.op, total.sync + t.sync)
        return total

    if ctx.mk is not None:
        mk = ctx.mk
        repo = d / "mk"

        def run_mk() -> None:
            mk.init(repo)
            ws = repo / "ckpt.safetensors"
            t = add_versions(ws, lambda v: mk.add(repo, ws, name, f"ckpt{v}"))
            _set(adds, "modelkeep", t)
            doc = mk.du(repo)
            stored.modelkeep = float(doc["stored_bytes"])
            stored.details["modelkeep_du_json"] = doc
            stored.details["modelkeep_dir_du_sb"] = du_sb(ctx.runner, repo / ".modelkeep")

        ctx.attempt(adds, "modelkeep", run_mk)
        if adds.modelkeep == "error":
            stored.modelkeep = "error"
    else:
        adds.modelkeep = stored.modelkeep = "skipped"

    if ctx.dvc is not None:
        dvc = ctx.dvc
        repo = d / "dvc"

        def run_dvc() -> None:
            dvc.init(repo)
            ws = repo / "ckpt.safetensors"
            t = add_versions(ws, lambda v: dvc.timed(repo, "add", ws.name))
            _set(adds, "dvc", t)
            stored.dvc = float(dvc.cache_bytes(repo))

        ctx.attempt(adds, "dvc", run_dvc)
        if adds.dvc == "error":
            stored.dvc = "error"
    else:
        adds.dvc = stored.dvc = "skipped"

    def run_cp() -> None:
        dest = d / "cp"
        dest.mkdir()
        for f in files:
            warm(f)
        cmds: list[list[str | os.PathLike[str]]]
        cmds = [["cp", f, dest / f"{name}-v{v}.safetensors"] for v, f in enumerate(files)]
        _set(adds, "cp", ctx.runner.timed_many(cmds))
        stored.cp = float(du_sb(ctx.runner, dest))

    ctx.attempt(adds, "cp", run_cp)
    if adds.cp == "error":
        stored.cp = "error"
    ctx.done(d)
    return rows


def bench_w3(ctx: Ctx) -> list[Row]:
    s = ctx.scale
    add = Row(f"W3 add ({s.w3_files:,} files, 8–64 KiB)", "s")
    noop = Row("W3 no-op status (modelkeep re-add vs dvc status)", "s")
    upd = Row(f"W3 add after {s.w3_modified} modified + {s.w3_new} new", "s")
    stored = Row(
        "W3 stored bytes after 2 versions (info; cp: one plain copy of v1)",
        "B",
        ratio_as_percent=True,
    )
    rows = [add, noop, upd, stored]
    d = ctx.section_dir("w3")

    if ctx.mk is not None:
        mk = ctx.mk
        repo = d / "mk"
        ws = repo / "data"

        def run_mk_add() -> None:
            mk.init(repo)
            copy_tree(ctx.runner, ctx.wl.w3, ws)
            warm(ws)
            _set(add, "modelkeep", mk.add(repo, ws, "w3", "W3"))

        def run_mk_noop() -> None:
            warm(ws)
            _set(noop, "modelkeep", mk.add(repo, ws, "w3", "W3 unchanged"))

        def run_mk_upd() -> None:
            apply_w3_changes(ctx.wl.w3_changes, ws)
            warm(ws)
            _set(upd, "modelkeep", mk.add(repo, ws, "w3", "W3 changed"))
            stored.modelkeep = float(mk.du(repo)["stored_bytes"])

        ctx.attempt(add, "modelkeep", run_mk_add)
        ctx.attempt(noop, "modelkeep", run_mk_noop)
        ctx.attempt(upd, "modelkeep", run_mk_upd)
        if upd.modelkeep == "error":
            stored.modelkeep = "error"
    else:
        add.modelkeep = noop.modelkeep = upd.modelkeep = stored.modelkeep = "skipped"

    if ctx.dvc is not None:
        dvc = ctx.dvc
        repo = d / "dvc"
        ws = repo / "data"

        def run_dvc_add() -> None:
            dvc.init(repo)
            copy_tree(ctx.runner, ctx.wl.w3, ws)
            warm(ws)
            _set(add, "dvc", dvc.timed(repo, "add", "data"))

        def run_dvc_status() -> None:
            warm(ws)
            _set(noop, "dvc", dvc.timed(repo, "status"))

        def run_dvc_upd() -> None:
            apply_w3_changes(ctx.wl.w3_changes, ws)
            warm(ws)
            _set(upd, "dvc", dvc.timed(repo, "add", "data"))
            stored.dvc = float(dvc.cache_bytes(repo))

        ctx.attempt(add, "dvc", run_dvc_add)
        ctx.attempt(noop, "dvc", run_dvc_status)
        ctx.attempt(upd, "dvc", run_dvc_upd)
        if upd.dvc == "error":
            stored.dvc = "error"
    else:
        add.dvc = noop.dvc = upd.dvc = stored.dvc = "skipped"

    def run_cp() -> None:
        dest = d / "cp" / "data"
        dest.parent.mkdir()
        warm(ctx.wl.w3)
        _set(add, "cp", ctx.runner.timed(["cp", "-r", ctx.wl.w3, dest]))
        stored.cp = float(du_sb(ctx.runner, dest))

    ctx.attempt(add, "cp", run_cp)
    ctx.done(d)
    return rows


def best_of(runner: Runner, cmd: Sequence[str | os.PathLike[str]], n: int = 5) -> float:
    best = math.inf
    for _ in range(n):
        t0 = time.perf_counter()
        runner.run(cmd)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_help(ctx: Ctx) -> list[Row]:
    script = Path(sys.executable).parent / "modelkeep"
    row = Row(
        "`modelkeep --help` wall time, best of 5 (DVC: `dvc --help`)",
        "s",
        target=Target("modelkeep", "<", 0.3, "< 0.3 s"),
    )
    if ctx.mk is not None:
        mk = ctx.mk
        cmd: list[str | os.PathLike[str]] = (
            [script, "--help"] if script.exists() else mk.cmd("--help")
        )
        row.details["modelkeep_cmd"] = " ".join(os.fspath(c) for c in cmd)

        def run_mk() -> None:
            row.modelkeep = best_of(ctx.runner, cmd)
            row.details["python_-m_modelkeep_s"] = round(best_of(ctx.runner, mk.cmd("--help")), 4)

        ctx.attempt(row, "modelkeep", run_mk)
    else:
        row.modelkeep = "skipped"
    if ctx.dvc is not None:
        dvc = ctx.dvc

        def run_dvc() -> None:
            row.dvc = best_of(ctx.runner, [dvc.exe, "--help"])

        ctx.attempt(row, "dvc", run_dvc)
    else:
        row.dvc = "skipped"
    return [row]


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

SECTIONS = ("w1", "w2", "w2b", "w3", "help")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark modelkeep against DVC and cp on generated workloads.",
    )
    p.add_argument("--quick", action="store_true", help="scale every workload down ~8x")
    p.add_argument("--skip-dvc", action="store_true", help="do not install or run DVC")
    p.add_argument("--skip-modelkeep", action="store_true", help="do not run modelkeep")
    p.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where workloads, repos, the DVC venv and results live (default: {DEFAULT_WORKDIR})",
    )
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="run each section N times and report medians (default: 3, or 1 with --quick)",
    )
    p.add_argument(
        "--keep-runs", action="store_true", help="keep the repos of this run (default: delete)"
    )
    p.add_argument(
        "--generate-only", action="store_true", help="only build the workloads, then stop"
    )
    return p.parse_args(argv)


def machine_notes(workdir: Path, dvc_version: str | None) -> list[str]:
    fs = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE", "-T", workdir],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        mk_version = importlib.metadata.version("modelkeep")
    except importlib.metadata.PackageNotFoundError:
        mk_version = "not installed"
    return [
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {human_bytes(mem)} RAM, "
        f"workdir filesystem {fs[0] if fs else '?'}; Python {platform.python_version()}",
        f"modelkeep {mk_version} (`{sys.executable} -m modelkeep`); "
        f"DVC {dvc_version or 'not run'} (fresh `git init` + `dvc init` repo per workload, "
        "cache.type=copy)",
    ]


TOOLS: tuple[Literal["modelkeep", "dvc", "cp"], ...] = ("modelkeep", "dvc", "cp")


def merge_repeats(reps: list[list[Row]]) -> list[Row]:
    """Median of each cell over repeated runs of a section (a failure in any run wins)."""
    if len(reps) == 1:
        return reps[0]
    merged: list[Row] = []
    for same in zip(*reps, strict=True):
        row = same[0]
        for tool in TOOLS:
            values = [getattr(r, tool) for r in same]
            failed = [v for v in values if isinstance(v, str)]
            if failed:
                setattr(row, tool, failed[0])
                row.details.pop(tool, None)
                continue
            setattr(row, tool, statistics.median(values))
            splits = [r.details.get(tool) for r in same]
            if row.unit == "s" and all(isinstance(d, dict) for d in splits):
                row.details[tool] = {
                    "op_s": statistics.median(d["op_s"] for d in splits if d),
                    "sync_s": statistics.median(d["sync_s"] for d in splits if d),
                    "runs_s": [round(v, 3) for v in values],
                }
            elif row.unit == "B" and len(set(values)) > 1:
                row.details[f"{tool}_runs_bytes"] = values
        merged.append(row)
    return merged


def run_sections(
    ctx: Ctx, args: argparse.Namespace, only: set[str]
) -> tuple[list[Row], str | None]:
    """Run the selected sections, each ``ctx.repeat`` times, and return the merged rows."""
    if not args.skip_modelkeep:
        mk = Modelkeep(ctx.runner)
        ok, why = mk.available()
        if ok:
            ctx.mk = mk
        else:
            ctx.problems.append(f"modelkeep CLI not usable (`python -m modelkeep --help`): {why}")
            log(f"modelkeep CLI not usable, skipping it: {why}")
    dvc_version: str | None = None
    if not args.skip_dvc:
        ctx.dvc = Dvc(ctx.runner, args.workdir.resolve() / "dvc-venv")
        dvc_version = ctx.dvc.ensure_installed()

    sections: list[tuple[str, Callable[[], list[Row]]]] = [
        ("w1", lambda: bench_w1(ctx)),
        ("w2", lambda: bench_chain(ctx, "W2", "w2", ctx.wl.w2)),
        ("w2b", lambda: bench_chain(ctx, "W2b", "w2b", ctx.wl.w2b)),
        ("w3", lambda: bench_w3(ctx)),
    ]
    rows: list[Row] = []
    for name, fn in sections:
        if name not in only:
            continue
        reps = []
        for i in range(ctx.repeat):
            log(f"{name.upper()} (run {i + 1}/{ctx.repeat}) ...")
            reps.append(fn())
        rows += merge_repeats(reps)
    if "help" in only:
        log("--help timings ...")
        rows += bench_help(ctx)
    return rows, dvc_version


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scale = QUICK if args.quick else FULL
    only = {s.strip().lower() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        print(f"unknown section(s) in --only: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if free < scale.min_free:
        print(
            f"Sorry: {scale.mode} mode needs at least {human_bytes(scale.min_free)} free under "
            f"{workdir}, but only {human_bytes(free)} is free. Free some space, point --workdir "
            "elsewhere, or try --quick.",
            file=sys.stderr,
        )
        return 1

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = workdir / "results"
    runs = workdir / "runs" / scale.mode
    rmtree(runs)
    runs.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(runs / "dvc-site-cache"),
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
    )
    runner = Runner(results / f"bench-{scale.mode}-{stamp}.log", env)
    t_start = time.perf_counter()
    try:
        wl = generate(scale, workdir / "data" / scale.mode)
        if args.generate_only:
            return 0
        repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
        ctx = Ctx(scale, runner, wl, runs, None, None, args.keep_runs, max(1, repeat))
        rows, dvc_version = run_sections(ctx, args, only)
    finally:
        runner.close()

    report = render_report(scale, rows, ctx, machine_notes(workdir, dvc_version), t_start)
    print(report)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"bench-{scale.mode}-{stamp}.md").write_text(report + "\n")
    (results / f"bench-{scale.mode}-{stamp}.json").write_text(
        json.dumps(
            {
                "mode": scale.mode,
                "scale": asdict(scale),
                "rows": [
                    {**asdict(r), "ratio": r.ratio(), "met": r.target.met(r) if r.target else None}
                    for r in rows
                ],
                "problems": ctx.problems,
            },
            indent=1,
            default=str,
        )
    )
    log(f"results written to {results} (log: {runner.log_path.name})")
    if not args.keep_runs:
        rmtree(runs)
    return 1 if ctx.problems else 0


def render_report(
    scale: Scale, rows: Sequence[Row], ctx: Ctx, notes: list[str], t_start: float
) -> str:
    out = [
        f"## modelkeep storage benchmark ({scale.mode} mode)",
        "",
        markdown_table(rows),
        "",
        "Notes:",
        "",
        f"- Each time is the median of {ctx.repeat} run(s) of its section (fresh repos each run; "
        "all runs listed below). `--help` rows are the best of 5.",
        "- Times are wall-clock seconds (`time.perf_counter` around the subprocess) **including a "
        "`sync` right after the operation** so that deferred write-back is counted for every tool "
        "(`cp FILE DEST && sync`). The split into operation/sync time is listed below. Pending "
        "writes are flushed (untimed `sync`) before every timed step.",
        "- Page cache: dropping it is not reliably possible here, so every tool runs warm: each "
        "input (file, tree or store) is read once, untimed, right before its timed step.",
        "- Stored bytes: modelkeep = `du --json` stored_bytes; DVC = `du -sb .dvc/cache`; "
        "cp = `du -sb` of the full copies.",
        "- A DVC time for `add` excludes `git add`/`git commit` of the .dvc files.",
    ]
    out += [f"- {n}" for n in notes]
    if scale.mode == "quick":
        out.append(
            "- QUICK mode: workloads scaled down ~8x (smaller tensors too); a smoke run, "
            "not representative figures."
        )
    detail_lines: list[str] = []
    for r in rows:
        parts = []
        for tool in ("modelkeep", "dvc", "cp"):
            d = r.details.get(tool)
            if isinstance(d, dict) and "op_s" in d:
                runs = d.get("runs_s")
                also = f" (runs: {', '.join(f'{v:.3f}' for v in runs)} s)" if runs else ""
                parts.append(f"{tool} {d['op_s']:.3f} s + sync {d['sync_s']:.3f} s{also}")
        extra = {k: v for k, v in r.details.items() if k not in ("modelkeep", "dvc", "cp")}
        if "modelkeep_dir_du_sb" in extra:
            parts.append(f"`du -sb .modelkeep` = {human_bytes(extra.pop('modelkeep_dir_du_sb'))}")
        if "modelkeep_du_json" in extra:
            parts.append(f"modelkeep du --json = {json.dumps(extra.pop('modelkeep_du_json'))}")
        parts += [f"{k} = {v}" for k, v in extra.items()]
        if parts:
            detail_lines.append(f"- {r.workload}: " + "; ".join(parts))
    if detail_lines:
        out += ["", "Details (operation time + sync time):", "", *detail_lines]
    if ctx.problems:
        unique = list(dict.fromkeys(ctx.problems))
        out += ["", "Problems:", "", *[f"- {p}" for p in unique]]
    out += ["", f"Total benchmark wall time: {human_seconds(time.perf_counter() - t_start)}."]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
