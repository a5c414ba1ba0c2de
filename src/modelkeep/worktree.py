"""A Git commit pins code, data and model: tracked paths, `modelkeep.lock`, checkout, hooks.

Adding a path inside a Git work tree records `PATH -> NAME:vN (digest)` in the lock file
at the work tree's top and makes Git ignore the path, so the commit holds the small lock
line and modelkeep holds the bytes. `checkout` brings the work tree back in line with the
lock: after `git checkout <old commit>`, the data and models of that commit return.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep import content, lockfile, meta
from modelkeep.capture import git
from modelkeep.config import REPO_DIR
from modelkeep.errors import (
    InvalidArgument,
    ModelkeepError,
    NotInStore,
    UncommittedChanges,
)
from modelkeep.lockfile import LockEntry
from modelkeep.meta import Version
from modelkeep.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from modelkeep.parts import Parts

HOOK_MARK = "# installed by `modelkeep install-hooks`"
OK, MODIFIED, MISSING, NOT_IN_STORE = "ok", "modified", "missing", "not-in-store"


@dataclass(frozen=True, slots=True)
class PathStatus:
    path: str
    ref: str
    digest: str  # what the lock says
    state: str  # ok, modified, missing or not-in-store
    current: str | None = None  # the digest the path has now, when it differs
    holds: str | None = None  # the version of the same name whose content it has, if any

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ref": self.ref,
            "digest": self.digest,
            "state": self.state,
            "current": self.current,
            "holds": self.holds,
        }


def _cwd_top() -> Path | None:
    """The working directory's Git work tree; None outside one, or when the working
    directory was deleted under us."""
    try:
        return git.work_tree(Path.cwd())
    except OSError:
        return None


def _top(parts: Parts) -> Path:
    """The Git work tree holding the lock: the working directory's, else the repository's."""
    top = _cwd_top() or git.work_tree(parts.root)
    if top is None:
        raise InvalidArgument(
            "neither the working directory nor the repository is inside a Git work tree; "
            "modelkeep.lock pins versions to Git commits: run `git init` first"
        )
    return top


def _place(path: str | os.PathLike[str]) -> Path:
    """path as Git names it: absolute, its folders resolved, a final symlink kept as itself.

    Git gives the top of a work tree as a real path, so a path reached through a symlinked
    folder (or written with '..') is resolved alike before the two are compared.
    """
    absolute = Path(os.path.abspath(path))
    return Path(os.path.realpath(absolute.parent)) / absolute.name


def _relative(top: Path, path: str | os.PathLike[str]) -> str | None:
    """path relative to the work tree top, '/'-separated; '' for the top, None outside it."""
    place = _place(path)
    if place == top:
        return ""
    return place.relative_to(top).as_posix() if place.is_relative_to(top) else None


def _in_git_dir(rel: str) -> bool:
    """Inside '.git' or '.modelkeep' (any case), where no tracked path may be."""
    return lockfile.control_folder(rel.split("/")) is not None


def ignore_control_dir(root: Path) -> None:
    """Keep `.modelkeep/` (the store and the database) out of Git; the lock file is enough."""
    top = git.work_tree(root)
    rel = None if top is None else _relative(top, root / REPO_DIR)
    if top is not None and rel:
        git.ignore(top, rel)


def _guard(parts: Parts) -> Path:
    return parts.settings.control_dir / "lockfile.flock"


def place(parts: Parts, source: Path) -> tuple[Path, str] | None:
    """Where source would be tracked: (work tree top, relative path), or None when Git
    does not apply (outside a work tree), already tracks it, or the work tree is another
    project's: only the working directory's or the repository's own work tree gets a lock
    entry, never one this repository merely reads a file from. The lock file is read
    here, so a broken one is reported before any byte is stored."""
    path = _place(source)
    top = git.work_tree(path)
    rel = None if top is None else _relative(top, path)
    if top is None or not rel or _in_git_dir(rel) or "\n" in rel:
        return None
    if top != _cwd_top() and top != git.work_tree(parts.root):
        return None
    if rel in (lockfile.NAME, ".gitignore") or git.is_tracked(top, path):
        return None  # pinned by Git itself
    lockfile.read(top)
    return top, rel


def track(parts: Parts, where: tuple[Path, str], version: Version) -> LockEntry:
    """Record the version at its place in the lock file, and make Git ignore the path."""
    top, rel = where
    entry = LockEntry(rel, version.ref, version.digest)
    with lockfile.locked(_guard(parts)):  # .gitignore too: concurrent adds append to it
        lockfile.update(top, entry)
        git.ignore(top, rel)
    return entry


def follow(parts: Parts, target: Path, version: Version) -> LockEntry | None:
    """After a version was restored to target: if the lock tracks that path, point it at
    the version (`get NAME@production -o data` then commits as that version)."""
    path = _place(target)
    top = git.work_tree(path.parent)
    rel = None if top is None else _relative(top, path)
    if top is None or not rel or rel not in lockfile.read(top):
        return None
    return track(parts, (top, rel), version)


Versions = Callable[[str], list[Version]]  # a name's versions (a server's client asks it)


def _state(parts: Parts, top: Path, entry: LockEntry, versions: Versions) -> PathStatus:
    target = top / entry.path
    if not os.path.lexists(target):
        state, current = MISSING, None
    else:
        current, _mode = content.digest_of(parts, target)
        state = OK if current == entry.digest else MODIFIED
    if state != OK and not content.holds(parts, entry.digest):  # checkout needs its bytes
        state = NOT_IN_STORE
    if state == OK:
        return PathStatus(entry.path, entry.ref, entry.digest, state)
    return PathStatus(
        entry.path, entry.ref, entry.digest, state, current, _held(entry, current, versions)
    )


def _held(entry: LockEntry, current: str | None, versions: Versions) -> str | None:
    """The version of the lock entry's name whose content the path has now (after a
    `git checkout` of another commit, the one the other lock named), if any."""
    if current is None:
        return None
    name = entry.ref.rpartition(":")[0]
    try:
        return next(v.ref for v in versions(name) if v.digest == current)
    except (ModelkeepError, StopIteration):
        return None


def status(parts: Parts, versions: Versions | None = None) -> list[PathStatus]:
    top = _top(parts)
    entries = lockfile.read(top).values()
    for e in entries:
        _check_target(parts, top, e)  # nothing is hashed through a link that leads away
    found = versions or functools.partial(meta.versions, parts.db)
    return [_state(parts, top, e, found) for e in entries]


def checkout(
    parts: Parts,
    paths: Sequence[str],
    *,
    force: bool,
    progress: Progress = NULL_PROGRESS,
    versions: Versions | None = None,
) -> list[PathStatus]:
    """Restore every tracked path (or those named) that differs from the lock.

    Everything is checked first: if any path cannot be restored, or holds changes that no
    version has, nothing is touched.
    """
    top = _top(parts)
    entries = lockfile.read(top)
    chosen = _choose(top, entries, paths) if paths else list(entries.values())
    lines = {e.path: e.line for e in chosen}
    for e in chosen:
        _check_target(parts, top, e)  # before anything is read through a link
    found = versions or functools.partial(meta.versions, parts.db)
    todo = [s for s in (_state(parts, top, e, found) for e in chosen) if s.state != OK]
    for s in todo:
        if s.state == NOT_IN_STORE:
            raise NotInStore(s.path, s.ref, s.digest)
    unsaved = [
        s.path for s in todo if s.current is not None and not content.holds(parts, s.current)
    ]
    if unsaved and not force:
        raise UncommittedChanges(unsaved)
    for s in todo:
        # again: a folder restored just before may have brought a link on this path's way
        _check_target(parts, top, LockEntry(s.path, s.ref, s.digest, lines[s.path]))
        content.restore_content(parts, s.digest, top / s.path, force=True, progress=progress)
    return todo


def _check_target(parts: Parts, top: Path, entry: LockEntry) -> None:
    """Refuse a lock entry that, through a symbolic link on its way, leads outside the work
    tree, into '.git' or '.modelkeep' (any case), or into this repository's control folder;
    or that no file system can hold. The entry itself may be a link: a restore replaces it.
    """
    where = f"{top / lockfile.NAME}, line {entry.line}: {entry.path!r}"
    if "\0" in entry.path:
        raise InvalidArgument(f"{where} holds a NUL character; nothing was restored: fix that line")
    rel = _relative(top, top / entry.path)
    control = Path(os.path.realpath(parts.settings.control_dir))
    place = _place(top / entry.path)
    if rel is None:
        leads = "outside the work tree"
    elif _in_git_dir(rel):
        leads = f"into {lockfile.control_folder(rel.split('/'))}"
    elif place == control or control in place.parents:
        leads = f"into {parts.settings.control_dir}"
    else:
        return
    raise InvalidArgument(
        f"{where} leads {leads} through a symbolic link; nothing was restored: remove the "
        "link or that line"
    )


def _choose(top: Path, entries: Mapping[str, LockEntry], paths: Sequence[str]) -> list[LockEntry]:
    """The entries paths name: each path itself, or the tracked paths inside a folder."""
    chosen: dict[str, LockEntry] = {}
    for p in paths:
        key = _relative(top, p)
        if key is None and not os.path.isabs(p):  # from outside the tree: relative to its top
            key = _relative(top, top / p)
        found = [e for k, e in entries.items() if key == "" or k == key or k.startswith(f"{key}/")]
        if key is None or not found:
            raise InvalidArgument(
                f"{p!r} is not tracked: {top / lockfile.NAME} lists no such path; "
                "`modelkeep status` lists the tracked paths, `modelkeep add PATH --name NAME` "
                "tracks one"
            )
        chosen.update((e.path, e) for e in found)
    return list(chosen.values())


_HOOK = """#!/bin/sh
{mark}
# After a branch checkout (or a clone), make tracked data and models match modelkeep.lock.
[ "$3" = "1" ] || exit 0
{python} -m modelkeep --repo {root} checkout && exit 0
echo "modelkeep: Git has switched commits, but the tracked data above was left as it was." \
  "Keep its changes with \\`modelkeep add PATH --name NAME\\`, or drop them with" \
  "\\`modelkeep checkout --force\\`; then \\`modelkeep checkout\\` finishes the switch." >&2
exit 1
"""


def install_hooks(parts: Parts, *, force: bool) -> Path:
    top = _top(parts)
    hook = git.hooks_dir(top) / "post-checkout"
    if hook.exists() and HOOK_MARK not in hook.read_text("utf-8", "replace") and not force:
        raise InvalidArgument(
            f"{hook} already exists and was not written by modelkeep; add the line "
            f"`modelkeep checkout` to it yourself, or pass --force to replace it"
        )
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(
        _HOOK.format(mark=HOOK_MARK, python=_quote(sys.executable), root=_quote(str(parts.root))),
        "utf-8",
    )
    hook.chmod(0o755)
    return hook


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
