"""Comparing two roots file by file, skipping folders whose tree ids are equal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from modelkeep.store.objects import ObjectStore, Root
from modelkeep.store.trees import Kind, TreeEntry


@dataclass(frozen=True, slots=True)
class Change:
    path: bytes
    status: str  # "added", "removed" or "modified"
    old: TreeEntry | None
    new: TreeEntry | None


def _files(store: ObjectStore, entry: TreeEntry, path: bytes) -> Iterator[tuple[bytes, TreeEntry]]:
    if entry.kind != Kind.DIR:
        yield path, entry
        return
    for child in store.tree(entry.id).entries:
        yield from _files(store, child, path + b"/" + child.name if path else child.name)


def _diff(
    store: ObjectStore, old: TreeEntry | None, new: TreeEntry | None, path: bytes
) -> Iterator[Change]:
    if old is not None and new is not None:
        if (old.kind, old.id, old.mode) == (new.kind, new.id, new.mode):
            return
        if old.kind == Kind.DIR and new.kind == Kind.DIR:
            a = {e.name: e for e in store.tree(old.id).entries}
            b = {e.name: e for e in store.tree(new.id).entries}
            for name in sorted(a.keys() | b.keys()):
                sub = path + b"/" + name if path else name
                yield from _diff(store, a.get(name), b.get(name), sub)
            return
        if old.kind != Kind.DIR and new.kind != Kind.DIR:
            yield Change(path, "modified", old, new)
            return
    if old is not None:
        for p, e in _files(store, old, path):
            yield Change(p, "removed", e, None)
    if new is not None:
        for p, e in _files(store, new, path):
            yield Change(p, "added", None, e)


def diff(store: ObjectStore, old: TreeEntry, new: TreeEntry) -> list[Change]:
    """Changes from old to new. Paths are relative to a folder root; a lone file's path
    is the name it was added under."""
    if old.kind == Kind.DIR and new.kind == Kind.DIR:
        return list(_diff(store, old, new, b""))
    if old.kind != Kind.DIR and new.kind != Kind.DIR and old.name == new.name:
        return list(_diff(store, old, new, new.name))
    if (old.kind, old.id) == (new.kind, new.id):
        return []
    removed = [Change(p, "removed", e, None) for p, e in _files(store, old, _prefix(old))]
    added = [Change(p, "added", None, e) for p, e in _files(store, new, _prefix(new))]
    return removed + added


def _prefix(entry: TreeEntry) -> bytes:
    return b"" if entry.kind == Kind.DIR else entry.name


def root_entry(root: Root, name: bytes, size: int, mode: int) -> TreeEntry:
    return TreeEntry(name, root.kind, mode, size, root.id)
