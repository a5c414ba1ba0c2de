"""Removing what no root needs: whole packs when nothing in them is live, else a repack.

The caller holds the store's exclusive lock, so no writer is between writing objects and
committing the version that names them; everything in tmp/ is then an abandoned write.

Some roots are not this store's to keep whole (in a team, versions another machine added,
or versions on a remote): gc walks what of them is here, keeps it, and does not fail on
what is not. Every other root must be whole here, as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelkeep.store.objects import ObjectStore, Root, remove_tree
from modelkeep.store.packs import KIND_BLOB, PackEntry, PackWriter, read_index
from modelkeep.store.trees import Kind


@dataclass(frozen=True, slots=True)
class GcReport:
    dry_run: bool
    objects_removed: int
    bytes_freed: int
    packs_removed: int
    packs_rewritten: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def reachable(store: ObjectStore, roots: Iterable[Root]) -> set[bytes]:
    live: set[bytes] = set()
    for root in roots:
        live.update(store.closure(root))
    return live


def walk_here(store: ObjectStore, root: Root) -> tuple[set[bytes], set[bytes]]:
    """(what root needs, as far as the objects here tell; which of those are not here).

    Unlike `closure`, a missing tree or manifest is noted and skipped, not raised: what
    is under it is unknown here, and nothing here can be under it only.
    """
    needed: set[bytes] = set()
    missing: set[bytes] = set()
    stack = [root]
    while stack:
        r = stack.pop()
        needed.add(r.id)
        if not store.has(r.id):
            missing.add(r.id)
            continue
        if r.kind == Kind.DIR:
            stack.extend(Root(e.kind, e.id) for e in store.tree(r.id).entries)
        elif r.kind == Kind.FILE:
            located = store.index.locate(r.id)
            if located is not None and located.entry.kind == KIND_BLOB:
                chunks = [cid for cid, _ in store.manifest(r.id).chunks]
                needed.update(chunks)
                known = store.index.known(chunks)
                missing.update(c for c in chunks if c not in known)
    return needed, missing


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


def gc(
    store: ObjectStore, roots: Iterable[Root], *, dry_run: bool, partial: Iterable[Root] = ()
) -> GcReport:
    """roots must be whole here; of partial roots, what is here is kept (see walk_here)."""
    store.reconcile_locked()
    live = reachable(store, roots)
    for root in partial:
        live |= walk_here(store, root)[0]
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
