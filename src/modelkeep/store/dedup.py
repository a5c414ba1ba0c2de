"""How much of one root's bytes another root already holds, chunk by chunk.

Computed on read from trees and manifests, no table of its own: a folder or file whose id
is the same in both roots is reused whole without being opened, so the cost is the
changed files' manifests (tens of bytes per 64 KiB chunk), not the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelkeep.store.diff import diff
from modelkeep.store.objects import ObjectStore
from modelkeep.store.trees import Kind, TreeEntry

MAX_CHANGED = 10_000  # changed files whose manifests one answer reads


@dataclass(frozen=True, slots=True)
class Shared:
    """Of new's bytes (file contents and link targets), those in chunks that old also
    holds (`reused`) and the rest (`new`); reused + new is new's size."""

    new: int
    reused: int
    changed_files: int  # files added or modified from old to new
    complete: bool  # False: more than MAX_CHANGED changed files; nothing was counted


def _chunks(store: ObjectStore, entry: TreeEntry) -> Sequence[tuple[bytes, int]]:
    if entry.kind == Kind.FILE:
        return store.manifest(entry.id, entry.size).chunks
    return ((entry.id, entry.size),)  # a link: its target's bytes are one object


def shared(store: ObjectStore, old: TreeEntry | None, new: TreeEntry) -> Shared:
    """new's bytes split into those whose chunks old holds and the rest (old None: all
    new). Each chunk counts as often as new's files hold it."""
    if old is None:
        return Shared(new.size, 0, 0, True)
    changes = diff(store, old, new)
    added = [c.new for c in changes if c.new is not None]
    if len(added) > MAX_CHANGED:
        return Shared(0, 0, len(added), False)
    held = {cid for c in changes if c.old is not None for cid, _ in _chunks(store, c.old)}
    fresh = 0
    for entry in added:
        fresh += sum(n for cid, n in _chunks(store, entry) if cid not in held)
    return Shared(fresh, new.size - fresh, len(added), True)
