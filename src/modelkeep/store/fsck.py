"""Verifying a store: every pack index, every object's bytes, every root's closure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from modelkeep.errors import ObjectError, UnsafeEntry
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.store.objects import ObjectStore, Root
from modelkeep.store.packs import CorruptIndex, read_index


@dataclass(frozen=True, slots=True)
class Problem:
    object: str  # hex id, or a pack name
    reason: str
    roots: tuple[str, ...] = ()  # labels of the roots that need it


@dataclass(frozen=True, slots=True)
class FsckReport:
    objects: int
    bytes: int
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def needed_by(
    store: ObjectStore, roots: Mapping[str, Root], ids: Iterable[bytes]
) -> dict[bytes, list[str]]:
    """Which roots need each of ids; a root whose closure cannot be read counts as needing it."""
    wanted = set(ids)
    found: dict[bytes, list[str]] = {i: [] for i in wanted}
    for label, root in roots.items():
        try:
            closure = set(store.closure(root))
        except (ObjectError, UnsafeEntry) as exc:
            bad = bytes.fromhex(getattr(exc, "object_id", root.id.hex()))
            closure = {bad} | ({root.id} if bad != root.id else set())
            closure |= wanted  # cannot tell: it may need any of them
        for i in wanted & closure:
            found[i].append(label)
    return found


def fsck(
    store: ObjectStore, roots: Mapping[str, Root], progress: Progress = NULL_PROGRESS
) -> FsckReport:
    problems: dict[str, str] = {}
    for idx in sorted(store.packs_dir.glob("pack-*.idx")):
        pack = idx.with_suffix(".pack")
        try:
            entries = read_index(idx)
            size = pack.stat().st_size
        except (OSError, CorruptIndex) as exc:
            problems[idx.stem] = f"pack index unreadable: {exc}"
            continue
        if any(e.offset + e.length > size for e in entries):
            problems[idx.stem] = "pack is shorter than its index says"
    store.reconcile_locked()
    count = total = 0
    progress.start(sum(store.index.pack_sizes().values()), "verifying")
    for located in store.index.entries():
        count += 1
        total += located.entry.length
        try:
            store.read(located.entry.key, located)
        except ObjectError as exc:
            problems[located.entry.key.hex()] = str(exc).split(";")[0]
        progress.advance(located.entry.length)
    progress.finish()
    for label, root in roots.items():
        try:
            for oid in store.closure(root):
                if not store.has(oid):
                    problems.setdefault(oid.hex(), f"object b3:{oid.hex()} is missing")
        except (ObjectError, UnsafeEntry) as exc:
            problems.setdefault(exc.object_id, str(exc).split(";")[0])
        del label
    ids = [bytes.fromhex(k) for k in problems if not k.startswith("pack-")]
    holders = needed_by(store, roots, ids)
    report = tuple(
        Problem(
            k, reason, tuple(holders.get(bytes.fromhex(k), ())) if not k.startswith("pack-") else ()
        )
        for k, reason in sorted(problems.items())
    )
    return FsckReport(count, total, report)
