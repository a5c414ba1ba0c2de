"""Verifying a store: every pack index, every object's bytes, every root's closure, and
every file reached from a root re-hashed whole against its id (which binds a manifest to
its file: its own checksum cannot)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelkeep.errors import ObjectError, UnsafeEntry
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.refs import content_id
from modelkeep.store.objects import ObjectStore, Root
from modelkeep.store.packs import CorruptIndex, read_index
from modelkeep.store.trees import Kind


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

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "bytes": self.bytes,
            "problems": [
                {"object": p.object, "reason": p.reason, "versions": list(p.roots)}
                for p in self.problems
            ],
        }


_Closure = set[bytes] | ObjectError | UnsafeEntry  # ids, or what stopped the walk


def _closures(store: ObjectStore, roots: Mapping[str, Root]) -> dict[str, _Closure]:
    """Each root's object ids, or the error of the object that stopped the walk."""
    out: dict[str, _Closure] = {}
    for label, root in roots.items():
        try:
            out[label] = set(store.closure(root))
        except (ObjectError, UnsafeEntry) as exc:
            out[label] = exc
    return out


def _holders(closures: Mapping[str, _Closure], ids: Iterable[bytes]) -> dict[bytes, list[str]]:
    """Which roots need each of ids; a root whose walk stopped may need any of them."""
    found: dict[bytes, list[str]] = {i: [] for i in ids}
    for label, closure in closures.items():
        for i, holders in found.items():
            if not isinstance(closure, set) or i in closure:
                holders.append(label)
    return found


def needed_by(
    store: ObjectStore, roots: Mapping[str, Root], ids: Iterable[bytes]
) -> dict[bytes, list[str]]:
    return _holders(_closures(store, roots), ids)


def _files(store: ObjectStore, roots: Mapping[str, Root]) -> dict[bytes, int]:
    """(id, size) of every file reached from roots that holds more than one chunk; a
    walk that stops is reported by the closures."""
    files: dict[bytes, int] = {}
    for root in roots.values():
        try:
            if root.kind == Kind.FILE:
                files[root.id] = -1  # its size is the version's: the manifest's is checked
            elif root.kind == Kind.DIR:
                for _path, kind, _mode, size, oid in store.walk(root):
                    if kind == Kind.FILE:
                        files[oid] = size
        except (ObjectError, UnsafeEntry):
            continue
    return files


def _whole_files(
    store: ObjectStore, roots: Mapping[str, Root], problems: dict[str, str]
) -> set[bytes]:
    """Re-hash every multi-chunk file reached from roots whose chunks are all here; the ids
    of the objects verified so (the manifests and their chunks), which the scan of every
    object then skips."""
    verified: set[bytes] = set()
    for oid, size in _files(store, roots).items():
        try:
            manifest = store.manifest(oid, None if size < 0 else size)
            if len(manifest.chunks) == 1:
                continue  # one chunk: the scan hashes it against the file's id
            ids = [cid for cid, _ in manifest.chunks]
            if len(store.index.known(ids)) < len(set(ids)):
                continue  # not all here (cache prune): the closures say where the rest is
            for _ in store.iter_blob(oid, None if size < 0 else size):
                pass
        except ObjectError as exc:
            problems.setdefault(exc.object_id, str(exc).split(";")[0])
            continue
        verified.add(oid)
        verified.update(cid for cid, _ in manifest.chunks)
    return verified


def _nowhere(keys: list[bytes]) -> set[bytes]:
    return set()


def fsck(
    store: ObjectStore,
    roots: Mapping[str, Root],
    progress: Progress = NULL_PROGRESS,
    elsewhere: Callable[[list[bytes]], set[bytes]] = _nowhere,
) -> FsckReport:
    """elsewhere says which of some ids missing here are safely on a remote (cache prune
    dropped them): those are not problems."""
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
    verified = _whole_files(store, roots, problems)
    for located in store.index.entries():
        count += 1
        total += located.entry.length
        if located.entry.key in verified:  # hashed as part of a whole file just now
            progress.advance(located.entry.length)
            continue
        try:
            store.read(located.entry.key, located, want=None)
        except ObjectError as exc:
            problems[located.entry.key.hex()] = str(exc).split(";")[0]
        progress.advance(located.entry.length)
    progress.finish()
    closures = _closures(store, roots)
    absent: set[bytes] = set()
    for closure in closures.values():
        if not isinstance(closure, set):
            problems.setdefault(closure.object_id, str(closure).split(";")[0])
            continue
        absent.update(oid for oid in closure if not store.has(oid))
    if absent:
        absent -= elsewhere(sorted(absent))
    for oid in sorted(absent):
        problems.setdefault(oid.hex(), f"object {content_id(oid)} is missing")
    ids = [bytes.fromhex(k) for k in problems if not k.startswith("pack-")]
    holders = _holders(closures, ids)
    report = tuple(
        Problem(
            k, reason, tuple(holders.get(bytes.fromhex(k), ())) if not k.startswith("pack-") else ()
        )
        for k, reason in sorted(problems.items())
    )
    return FsckReport(count, total, report)
