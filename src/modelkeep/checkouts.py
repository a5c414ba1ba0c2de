"""Shared checkout copies under `.modelkeep/checkouts/`: read-only, and verified before reuse.

`run.use()` and `load_model` (for file-format models) hand scripts a path under the control
folder, restored once per content id and shared by every later reader. A script that wrote
into it would poison them all (and have its edited bytes recorded as the version), so:

- after a restore the copy is made read-only (files 0444 or 0555, folders 0555), which stops
  every user but root;
- a sidecar records the stat stamp of every entry of the copy (kind, mode, size, inode,
  mtime and ctime) at that moment;
- before reuse the copy is stamped again and compared. Any difference (a write, a chmod, a
  file replaced, even content edited with its mtime put back by `os.utime`, which changes
  the ctime) makes every file be hashed (BLAKE3) and compared with the ids of the tree. A
  copy that still matches is sealed again; one that does not is discarded and restored
  afresh, with a CheckoutCopyWarning.

What this does not stop: a process that rewrites the copy and its sidecar together (it can
write the control folder, so it could edit the store's packs too; those are verified on
read, the copy is only verified against them when its stamps differ).

This module sits below Repo: it takes the store and the entry to restore, never a Repo.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path

import blake3

from modelkeep.errors import CheckoutCopyWarning, DestinationExists
from modelkeep.store import Kind, ObjectStore, Root
from modelkeep.store.chunking import digest
from modelkeep.store.trees import TreeEntry

STAMPS_DIR = ".stamps"  # beside the copies' folders, under checkouts/
_READ = 1 << 20

Stamps = dict[str, list[int]]  # relative path ('' for the copy itself) -> stat stamp


def ensure(
    store: ObjectStore, entry: TreeEntry, target: Path, restore: Callable[[bool], None]
) -> None:
    """Make target a sealed copy of entry: reuse a verified one, else restore (force or not)
    through restore, then make it read-only and record its stamps."""
    sidecar = _sidecar(target, entry)
    if os.path.lexists(target):
        if _recorded(sidecar, entry) == stamp(target):
            return
        if matches(store, entry, target):
            _seal(target, sidecar, entry)
            return
        warnings.warn(
            f"{target} was changed after it was restored (a script wrote into a shared "
            "checkout copy); discarding it and restoring a fresh copy. Write into a copy of "
            "your own: run.use(ref, dest=...) or `modelkeep get`",
            CheckoutCopyWarning,
            stacklevel=4,
        )
        _writable(target)
        restore(True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(DestinationExists):  # another process restored it first
            restore(False)
    _seal(target, sidecar, entry)


def stamp(target: Path) -> Stamps:
    """The stat stamp of every entry under target (not following links); {} if absent."""
    found: Stamps = {}
    try:
        found[""] = _stamp(os.lstat(target))
    except FileNotFoundError:
        return {}
    if stat.S_ISDIR(found[""][0]):
        for folder, dirs, files in os.walk(target):
            for name in sorted(dirs + files):
                path = os.path.join(folder, name)
                found[os.path.relpath(path, target)] = _stamp(os.lstat(path))
    return found


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def matches(store: ObjectStore, entry: TreeEntry, target: Path) -> bool:
    """Whether target holds exactly entry: kinds, executable bits, link targets, and every
    file's bytes hashed and compared with its id; nothing more and nothing less."""
    expected: dict[bytes, tuple[Kind, int, int, bytes]] = {
        b"": (entry.kind, entry.mode, entry.size, entry.id)
    }
    for path, kind, mode, size, oid in store.walk(Root(entry.kind, entry.id)):
        expected[path] = (kind, mode, size, oid)
    top = os.fsencode(target)
    present: list[bytes] = [b""]
    if os.path.isdir(top) and not os.path.islink(top):
        for folder, dirs, files in os.walk(top):
            for name in dirs + files:
                present.append(os.path.relpath(os.path.join(folder, name), top))
    if sorted(present) != sorted(expected):
        return False
    return all(_same(os.path.join(top, rel) if rel else top, *expected[rel]) for rel in expected)


def _same(path: bytes, kind: Kind, mode: int, size: int, oid: bytes) -> bool:
    try:
        st = os.lstat(path)
        if kind == Kind.DIR:
            return stat.S_ISDIR(st.st_mode)
        if kind == Kind.LINK:
            return stat.S_ISLNK(st.st_mode) and digest(os.readlink(path)) == oid
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        if bool(st.st_mode & stat.S_IXUSR) != (mode == 0o755):
            return False
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        with open(path, "rb") as f:
            while block := f.read(_READ):
                hasher.update(block)
        return hasher.digest() == oid
    except OSError:
        return False


def _sidecar(target: Path, entry: TreeEntry) -> Path:
    """Per copy: copies of one content id under different names share a folder."""
    key = digest(os.fsencode(target.name)).hex()[:16]
    return target.parent.parent / STAMPS_DIR / f"{target.parent.name}-{key}.json"


def _recorded(sidecar: Path, entry: TreeEntry) -> Stamps | None:
    try:
        data = json.loads(sidecar.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("id") != entry.id.hex():
        return None
    stamps = data.get("stamps")
    return stamps if isinstance(stamps, dict) else None


def _seal(target: Path, sidecar: Path, entry: TreeEntry) -> None:
    """Make the copy read-only (changing only what differs), then record its stamps."""
    for path, st in _entries(target):
        if stat.S_ISLNK(st.st_mode):
            continue
        executable = stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR
        wanted = 0o555 if executable else 0o444
        if stat.S_IMODE(st.st_mode) != wanted:
            os.chmod(path, wanted)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"id": entry.id.hex(), "stamps": stamp(target)}), "utf-8")
    os.replace(tmp, sidecar)


def _writable(target: Path) -> None:
    """Let the copy be renamed away and removed (folders need write permission for that)."""
    for path, st in _entries(target):
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IWUSR:
            os.chmod(path, 0o755)


def _entries(target: Path) -> list[tuple[str, os.stat_result]]:
    """target and everything under it, deepest first, with their lstat."""
    found = [(str(target), os.lstat(target))]
    if stat.S_ISDIR(found[0][1].st_mode):
        for folder, dirs, files in os.walk(target):
            for name in dirs + files:
                path = os.path.join(folder, name)
                found.append((path, os.lstat(path)))
    return found[::-1]
