#!/usr/bin/env python3
"""The chunk index at scale: lookup and insert cost per chunk, from 100,000 to 10 million.

The store's index (src/modelkeep/store/index.py, SQLite) maps each chunk id to its pack and
place. `add` asks it, chunk by chunk, whether a chunk is stored (`has`) and indexes each
sealed pack at once (`add_pack`); a dedupe check of a listed file asks in batches (`known`);
`get` finds the places of a file's chunks in batches (`places`). This script grows one index,
pack by pack as `add` does, and at each checkpoint times those calls against the grown index.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import common
import numpy as np
from common import log

from modelkeep.store.index import Index
from modelkeep.store.packs import PackEntry

CHUNKS_PER_PACK = 1_024  # a 64 MiB pack of ~64 KiB chunks, as `add` seals them
CHECKPOINTS = (100_000, 1_000_000, 3_000_000, 10_000_000)
QUICK_CHECKPOINTS = (100_000, 300_000, 1_000_000)
PROBES = 20_000  # chunks looked up per checkpoint, per kind of lookup
BATCH = 1_024  # keys per batched lookup (a 64 MiB file's chunks)
TARGET_GROWTH = 2.0  # per-chunk cost at the largest size vs the smallest: at most this


def chunk_ids(rng: np.random.Generator, n: int) -> list[bytes]:
    """n random 32-byte ids (BLAKE3 digests look random to a B-tree)."""
    raw = rng.bytes(32 * n)
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


def entries(ids: list[bytes]) -> list[PackEntry]:
    return [PackEntry(k, 0, 0, i * 65_536, 65_536, 65_536) for i, k in enumerate(ids)]


def per_chunk_us(seconds: float, chunks: int) -> float:
    return seconds / chunks * 1e6


def measure(index: Index, rng: np.random.Generator, stored: list[bytes]) -> dict[str, float]:
    """Microseconds per chunk of each call, on the index as it is now (one pack inserted)."""
    n = min(PROBES, len(stored))
    hits = [stored[int(i)] for i in rng.choice(len(stored), size=n, replace=False)]
    misses = chunk_ids(rng, n)
    out: dict[str, float] = {}
    for label, keys in (("has, stored", hits), ("has, new", misses)):
        t0 = time.perf_counter()
        found = sum(index.has(k) for k in keys)
        out[label] = per_chunk_us(time.perf_counter() - t0, len(keys))
        if found != (len(keys) if keys is hits else 0):
            raise common.BenchError(f"{label}: {found} of {len(keys)} found")
    t0 = time.perf_counter()
    known = sum(len(index.known(hits[i : i + BATCH])) for i in range(0, n, BATCH))
    out["known, batch"] = per_chunk_us(time.perf_counter() - t0, n)
    t0 = time.perf_counter()
    placed = sum(len(index.places(hits[i : i + BATCH])) for i in range(0, n, BATCH))
    out["places, batch"] = per_chunk_us(time.perf_counter() - t0, n)
    if known != n or placed != n:
        raise common.BenchError(f"batched lookups found {known} / {placed} of {n}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Chunk index cost per chunk, up to 10 M chunks.")
    p.add_argument("--quick", action="store_true", help="checkpoints up to 1 M chunks")
    p.add_argument("--work", type=Path, default=common.WORK, help="where the index is built")
    p.add_argument("--keep", action="store_true", help="keep the index file")
    args = p.parse_args(argv)
    checkpoints = QUICK_CHECKPOINTS if args.quick else CHECKPOINTS
    work: Path = args.work.absolute() / "index-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t_start = time.perf_counter()
    rng = np.random.default_rng(20_261_206)
    index = Index(work / "index.sqlite")
    rows: list[list[str]] = []
    problems: list[str] = []
    cps: list[dict[str, float]] = []
    sample: list[bytes] = []
    count = pack = 0
    try:
        for n in checkpoints:
            log(f"growing the index to {n:,} chunks (load {common.load_avg()})")
            t0 = time.perf_counter()
            insert_s = _grow_to(index, rng, sample, count, n, pack)
            grow_s = time.perf_counter() - t0
            pack += -(-(n - count) // CHUNKS_PER_PACK)
            count = n
            costs = measure(index, rng, sample)
            size = sum(f.stat().st_size for f in work.iterdir())
            costs["add_pack"] = insert_s
            cps.append({"chunks": n, "bytes": size, "grow_s": grow_s, **costs})
            keys = ("add_pack", "has, stored", "has, new", "known, batch", "places, batch")
            cells = [f"{costs[k]:.2f}" for k in keys]
            rows.append([f"{n:,}", *cells, f"{size / (1 << 20):,.0f}", f"{grow_s:.0f}"])
    except common.BenchError as exc:
        problems.append(str(exc))
    finally:
        index.close()
    verdict = []
    if len(cps) >= 2:
        first, last = cps[0], cps[-1]
        for key in ("add_pack", "has, stored", "has, new", "known, batch", "places, batch"):
            growth = last[key] / first[key]
            ok = "yes" if growth <= TARGET_GROWTH else "**NO**"
            verdict.append([key, f"{growth:.2f}×", f"≤ {TARGET_GROWTH:g}×", ok])
    head = ["chunks indexed", "insert (add_pack) µs/chunk", "has, stored µs", "has, new µs"]
    head += ["known, batch µs/chunk", "places, batch µs/chunk", "index MiB", "grow s"]
    lines = [
        "## modelkeep chunk index at scale",
        "",
        f"* machine: {common.machine()}",
        f"* {CHUNKS_PER_PACK:,} chunks per pack (`add_pack`, one transaction each, as `add` "
        f"seals a pack); up to {PROBES:,} probes per lookup and checkpoint; "
        f"batches of {BATCH:,} ids",
        "",
        *common.md_table(head, rows),
        "",
        f"Cost per chunk at {cps[-1]['chunks']:,} vs {cps[0]['chunks']:,} chunks:"
        if len(cps) >= 2
        else "",
        "",
        *(common.md_table(["call", "growth", "target", "met?"], verdict) if verdict else []),
        "",
        "insert: mean over the last tenth of the packs inserted before each checkpoint, "
        "with the index's settings (the packs before them were inserted without fsync). "
        "Lookups: wall time per chunk, page cache warm (the index was just written).",
        *(["", "Problems:", "", *(f"* {x}" for x in problems)] if problems else []),
        "",
        f"Total benchmark wall time: {time.perf_counter() - t_start:.0f} s.",
    ]
    common.save(args.work.absolute(), "index", lines, {"checkpoints": cps})
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


def _grow_to(
    index: Index, rng: np.random.Generator, sample: list[bytes], have: int, to: int, pack: int
) -> float:
    """Insert packs until the index holds `to` chunks; seconds per chunk over the last tenth,
    keeping a sample of the inserted ids (one in 16) to probe."""
    t_tail, n_tail, tail_from = 0.0, 0, have + (to - have) * 9 // 10
    # Until the measured tail, the index's own connection skips fsync (PRAGMA synchronous
    # OFF), so building 10 M chunks costs the B-tree work, not tens of thousands of syncs;
    # the tail runs as `add` runs (synchronous NORMAL).
    index._db.execute("PRAGMA synchronous=OFF")
    try:
        while have < to:
            if have >= tail_from:
                index._db.execute("PRAGMA synchronous=NORMAL")
            ids = chunk_ids(rng, min(CHUNKS_PER_PACK, to - have))
            t0 = time.perf_counter()
            index.add_pack(f"pack-{pack:08d}", 64 << 20, entries(ids))
            dt = time.perf_counter() - t0
            if have >= tail_from:
                t_tail, n_tail = t_tail + dt, n_tail + len(ids)
            sample += ids[::16]
            have, pack = have + len(ids), pack + 1
    finally:
        index._db.execute("PRAGMA synchronous=NORMAL")
    return per_chunk_us(t_tail, max(1, n_tail))


if __name__ == "__main__":
    sys.exit(main())
