"""A Git commit pins code, data and model: tracked paths, `modelkeep.lock`, checkout, hooks.

Adding a path inside a Git work tree records `PATH -> NAME:vN (digest)` in the lock file
at the work tree's top and makes Git ignore the path, so the commit holds the small lock
line and modelkeep holds the bytes. `checkout` brings the work tree back in line with the
lock: after `git checkout <old commit>`, the data and models of that commit return.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep import lockfile
from modelkeep.capture import git
from modelkeep.config import REPO_DIR
from modelkeep.errors import (
    InvalidArgument,
    NotInStore,
    PathNotFound,
    UncommittedChanges,
)
from modelkeep.lockfile import LockEntry
from modelkeep.meta import Version
from modelkeep.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from modelkeep.repo import Repo

HOOK_MARK = "# installed by `modelkeep install-hooks`"
OK, MODIFIED, MISSING, NOT_IN_STORE = "ok", "modified", "missing", "not-in-store"


@dataclass(frozen=True, slots=True)
class PathStatus:
    path: str
    ref: str
    digest: str  # what the lock says
    state: str  # ok, modified, missing or not-in-store
    current: str | None = None  # the digest the path has now, when it differs

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ref": self.ref,
            "digest": self.digest,
            "state": self.state,
            "current": self.current,
        }


def _top(repo: Repo) -> Path:
    """The Git work tree holding the lock: the working directory's, else the repository's."""
    top = git.work_tree(Path.cwd()) or git.work_tree(repo.root)
    if top is None:
        raise InvalidArgument(
            f"neither {str(Path.cwd())!r} nor the repository is inside a Git work tree; "
            "modelkeep.lock pins versions to Git commits: run `git init` first"
        )
    return top


def ignore_control_dir(root: Path) -> None:
    """Keep `.modelkeep/` (the store and the database) out of Git; the lock file is enough."""
    top = git.work_tree(root)
    if top is not None:
        git.ignore(top, (root / REPO_DIR).relative_to(top).as_posix())


def _guard(repo: Repo) -> Path:
    return repo.settings.control_dir / "lockfile.flock"


def track(repo: Repo, source: Path, version: Version) -> LockEntry | None:
    """Record source in its work tree's lock file, unless Git itself tracks it."""
    # Git names the top by its real path; resolve the folders (not a final symlink) alike.
    absolute = Path(os.path.abspath(source))
    path = Path(os.path.realpath(absolute.parent)) / absolute.name
    top = git.work_tree(path)
    if top is None or path == top or not path.is_relative_to(top):
        return None
    if git.is_tracked(top, path):
        return None  # already pinned by Git itself
    rel = path.relative_to(top).as_posix()
    if rel.split("/")[0] == ".git" or "\n" in rel:
        return None
    entry = LockEntry(rel, version.ref, version.digest)
    lockfile.record(top, _guard(repo), entry)
    git.ignore(top, rel)
    return entry


def _state(repo: Repo, top: Path, entry: LockEntry) -> PathStatus:
    target = top / entry.path
    if not os.path.lexists(target):
        state, current = MISSING, None
    else:
        current, _mode = repo.digest_of(target)
        state = OK if current == entry.digest else MODIFIED
    if state != OK and not repo.store.has(bytes.fromhex(entry.digest.removeprefix("b3:"))):
        state = NOT_IN_STORE
    return PathStatus(entry.path, entry.ref, entry.digest, state, current if state != OK else None)


def status(repo: Repo) -> list[PathStatus]:
    top = _top(repo)
    return [_state(repo, top, e) for e in lockfile.read(top).values()]


def checkout(
    repo: Repo, paths: Sequence[str], *, force: bool, progress: Progress = NULL_PROGRESS
) -> list[PathStatus]:
    """Restore every tracked path (or those named) that differs from the lock.

    Everything is checked first: if any path cannot be restored, or holds changes that no
    version has, nothing is touched.
    """
    top = _top(repo)
    entries = lockfile.read(top)
    if paths:
        chosen = []
        for p in paths:
            rel = Path(p).absolute()
            key = rel.relative_to(top).as_posix() if rel.is_relative_to(top) else p
            if key not in entries:
                raise PathNotFound(p, lockfile.NAME)
            chosen.append(entries[key])
    else:
        chosen = list(entries.values())
    todo = [s for s in (_state(repo, top, e) for e in chosen) if s.state != OK]
    for s in todo:
        if s.state == NOT_IN_STORE:
            raise NotInStore(s.path, s.ref, s.digest)
    unsaved = [s.path for s in todo if s.current is not None and not repo.holds(s.current)]
    if unsaved and not force:
        raise UncommittedChanges(unsaved)
    for s in todo:
        repo.restore(s.digest, top / s.path, force=True, progress=progress)
    return todo


_HOOK = """#!/bin/sh
{mark}
# After a branch checkout (or a clone), make tracked data and models match modelkeep.lock.
[ "$3" = "1" ] || exit 0
exec {python} -m modelkeep --repo {root} checkout
"""


def install_hooks(repo: Repo, *, force: bool) -> Path:
    top = _top(repo)
    hook = git.hooks_dir(top) / "post-checkout"
    if hook.exists() and HOOK_MARK not in hook.read_text("utf-8", "replace") and not force:
        raise InvalidArgument(
            f"{hook} already exists and was not written by modelkeep; add the line "
            f"`modelkeep checkout` to it yourself, or pass --force to replace it"
        )
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(
        _HOOK.format(mark=HOOK_MARK, python=_quote(sys.executable), root=_quote(str(repo.root))),
        "utf-8",
    )
    hook.chmod(0o755)
    return hook


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
