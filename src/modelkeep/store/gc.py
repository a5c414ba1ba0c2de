"""Removing what no root needs: whole packs when nothing in them is live, else a repack.

The caller holds the store's exclusive lock, so no writer is between writing objects and
committing the version that names them; everything in tmp/ is then an abandoned write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from modelkeep.store.objects import ObjectStore, Root, remove_tree
from modelkeep.store.packs import PackEntry, PackWriter, read_index


@dataclass(frozen=True, slots=True)
class GcReport:
    dry_run: bool
    objects_removed: int
    bytes_freed: int
    packs_removed: int
    packs_rewritten: int


def reachable(store: ObjectStore, roots: Iterable[Root]) -> set[bytes]:
    live: set[bytes] = set()
    for root in roots:
        live.update(store.closure(root))
    return live


def repack(store: ObjectStore, name: str, keep: list[PackEntry]) -> None:
    """Replace a pack with a new one holding only keep (with nothing to keep, remove it)."""
    if keep:
        writer = PackWriter(store.packs_dir, store.tmp_dir)
        for e in keep:
            data = store.read_stored(name, e)
            writer.append([(e.key, e.kind, e.codec, data, e.raw_length)])
        writer.seal()
        store.index.add_pack(writer.name, writer.size, writer.entries, replace=True)
    store.index.drop_packs([name])
    store.forget_fd(name)
    (store.packs_dir / f"{name}.idx").unlink()
    (store.packs_dir / f"{name}.pack").unlink()


def gc(store: ObjectStore, roots: Iterable[Root], *, dry_run: bool) -> GcReport:
    store.reconcile_locked()
    live = reachable(store, roots)
    freed = removed = packs_removed = rewritten = 0
    for path in store.tmp_dir.iterdir():
        freed += path.stat().st_size if path.is_file() else 0
        if not dry_run:
            remove_tree(path)
    for pack in store.packs_dir.glob("pack-*.pack"):
        if not pack.with_suffix(".idx").exists():  # a writer died between the two renames
            freed += pack.stat().st_size
            if not dry_run:
                pack.unlink()
    sizes = store.index.pack_sizes()
    by_pack: dict[str, list[bytes]] = {}
    for located in store.index.entries():
        by_pack.setdefault(located.pack, []).append(located.entry.key)
    for name, size in sorted(sizes.items()):
        entries = read_index(store.packs_dir / f"{name}.idx")
        indexed_here = set(by_pack.get(name, ()))
        keep = [e for e in entries if e.key in live and e.key in indexed_here]
        if len(keep) == len(entries):
            continue
        dead = len(entries) - len(keep)
        kept_bytes = sum(e.length for e in keep)
        freed += size - kept_bytes
        removed += dead
        if dry_run:
            continue
        repack(store, name, keep)
        rewritten += bool(keep)
        packs_removed += not keep
    if not dry_run:
        store.index.forget_blobs_not_in_store()
    return GcReport(dry_run, removed, freed, packs_removed, rewritten)
