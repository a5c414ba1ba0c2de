"""Shrinking the local cache: drop chunks that are safely on a remote, oldest use first.

A pack is a candidate when every chunk in it is confirmed on a remote: the caller reads
the remote's copies back and hashes them against their ids, because a listing only says
what a remote claims, and the local pack may be the last good copy. A pack whose chunks
are not all verified stays; when a remote's copy was damaged, a warning names both.
Trees and manifests are small and keep every version walkable offline (gc,
fsck, diff), so they stay: a candidate pack that holds some is rewritten with only them.
The caller holds the store's exclusive lock, as for gc.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from modelkeep.errors import PackKept
from modelkeep.store.gc import repack
from modelkeep.store.objects import ObjectStore
from modelkeep.store.packs import KIND_CHUNK, read_index


@dataclass(frozen=True, slots=True)
class PruneReport:
    dry_run: bool
    size_before: int
    size_after: int
    packs_dropped: int
    chunks_dropped: int
    kept_only_copy: int  # packs over the limit left alone: something in them is on no remote


@dataclass(frozen=True, slots=True)
class RemoteCopies:
    verified: set[bytes]  # chunks read back from a remote that hash to their ids
    damaged: tuple[str, ...] = field(default=())  # where a remote copy did not verify


def prune(
    store: ObjectStore,
    max_size: int,
    on_remote: Callable[[list[bytes]], RemoteCopies],
    *,
    dry_run: bool = False,
) -> PruneReport:
    store.reconcile_locked()
    sizes = store.index.pack_sizes()
    total = before = sum(sizes.values())
    dropped = chunks = kept = 0

    def last_used(name: str) -> float:
        try:
            return (store.packs_dir / f"{name}.idx").stat().st_mtime
        except OSError:
            return 0.0

    for name in sorted(sizes, key=last_used):
        if total <= max_size:
            break
        entries = read_index(store.packs_dir / f"{name}.idx")
        indexed = store.index.locate_many([e.key for e in entries])
        mine = [e for e in entries if (loc := indexed.get(e.key)) and loc.pack == name]
        chunk_keys = [e.key for e in mine if e.kind == KIND_CHUNK]
        if not chunk_keys:
            continue
        copies = on_remote(chunk_keys)
        if not copies.verified.issuperset(chunk_keys):
            kept += 1
            if copies.damaged:
                warnings.warn(
                    f"kept local pack {name}: the remote copy of its chunks is damaged "
                    f"({copies.damaged[0]}), so this is the only good copy; delete that "
                    "remote pack, then `modelkeep push` the versions that need it",
                    PackKept,
                    stacklevel=2,
                )
            continue
        keep = [e for e in mine if e.kind != KIND_CHUNK]
        new_size = sum(e.length for e in keep)
        total -= sizes[name] - new_size
        dropped += 1
        chunks += len(chunk_keys)
        if dry_run:
            continue
        repack(store, name, keep)
    return PruneReport(dry_run, before, total, dropped, chunks, kept)
