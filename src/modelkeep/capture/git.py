"""Git state through the `git` executable rather than a library.

The real executable gives the same answers the user's own `git` would (their config,
ignore rules, hooks path, worktrees) and costs no dependency. A machine without Git is
treated as one where nothing is a Git repository, so capture degrades instead of failing.
Paths come back as bytes and are decoded with os.fsdecode, because file names need not
be UTF-8.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelkeep.capture.code import matches
from modelkeep.errors import InvalidArgument
from modelkeep.redact import strip_credentials

# Set inside Git hooks (where modelkeep may run); they would make every call below answer
# about the hook's repository instead of the one the given path is in.
_LOCATION_VARS = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)
_GLOB_CHARS = re.compile(r"([\\*?\[])")


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    """Run git in cwd; None when git is missing or cwd is unusable (so: no repository)."""
    exe = shutil.which("git")
    if exe is None:
        return None
    env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
    env |= {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        return subprocess.run(
            [exe, "--no-optional-locks", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            env=env,
        )
    except OSError:
        return None


def _checked(
    root: Path, *args: str, ok: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess[bytes]:
    """Run git in root, raising InvalidArgument with git's own reason on failure."""
    proc = _git(root, *args)
    if proc is None:
        reason = "git is not installed" if shutil.which("git") is None else "no such folder"
    elif proc.returncode not in ok:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[0] if lines else f"exit code {proc.returncode}"
    else:
        return proc
    command = next(a for a in args if not a.startswith("-"))
    raise InvalidArgument(
        f"`git {command}` failed in {str(root)!r}: {reason}; "
        "pass the top folder of a Git work tree (see `git rev-parse --show-toplevel`)"
    )


def _line(out: bytes) -> str:
    """One line of git output as a path string; only the final newline is git's."""
    return os.fsdecode(out[:-1] if out.endswith(b"\n") else out)


def _existing_dir(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path if path.is_dir() else path.parent


def work_tree(path: Path) -> Path | None:
    """The top of the work tree holding path (which need not exist yet), else None."""
    proc = _git(_existing_dir(path), "rev-parse", "--is-inside-work-tree", "--show-toplevel")
    if proc is None or proc.returncode != 0:
        return None
    inside, _, top = proc.stdout.partition(b"\n")
    if inside != b"true" or not top:
        return None
    return Path(_line(top))


@dataclass(frozen=True, slots=True)
class GitState:
    """What a run needs to name its code: the commit, and whether it was changed."""

    root: Path
    commit: str | None
    branch: str | None
    remote: str | None
    dirty: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "commit": self.commit,
            "branch": self.branch,
            "remote": self.remote,
            "dirty": self.dirty,
        }


def state(root: Path) -> GitState:
    """Commit, branch and dirtiness from one `git status`, the remote from one `git config`."""
    out = _checked(
        root, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal"
    ).stdout
    commit = branch = None
    dirty = False
    for record in out.split(b"\0"):
        if record.startswith(b"# branch.oid "):
            oid = record[len(b"# branch.oid ") :].decode("ascii", "replace")
            commit = None if oid == "(initial)" else oid
        elif record.startswith(b"# branch.head "):
            head = record[len(b"# branch.head ") :].decode("utf-8", "replace")
            branch = None if head == "(detached)" else head
        elif record and not record.startswith(b"# "):
            dirty = True  # headers come first; what follows is changes, untracked files
            break
    return GitState(root=root, commit=commit, branch=branch, remote=_remote(root), dirty=dirty)


def _remote(root: Path) -> str | None:
    proc = _git(root, "config", "-z", "--get-regexp", r"^remote\..*\.url$")
    if proc is None or proc.returncode != 0:
        return None
    urls: dict[str, str] = {}
    for record in proc.stdout.split(b"\0"):
        key, _, value = record.partition(b"\n")
        if key:
            name = key.decode("utf-8", "replace")[len("remote.") : -len(".url")]
            urls.setdefault(name, value.decode("utf-8", "replace"))
    url = urls.get("origin") or next(iter(urls.values()), None)
    # Records are shared, tokens must not be: every scheme (https, ssh, git, ftp…) loses
    # its userinfo; an scp-like `git@host:path` keeps its user, which is not a secret.
    return None if url is None else strip_credentials(url)


def _head(root: Path) -> str | None:
    proc = _git(root, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    if proc is None or proc.returncode != 0:
        return None
    return proc.stdout.decode("ascii").strip()


def write_patch(root: Path, dest: Path, globs: Sequence[str]) -> int:
    """Write what a commit alone cannot restore: `dest/patch.diff` and `dest/untracked/`.

    `git checkout COMMIT && git apply patch.diff && cp -r untracked/. .` then gives the
    exact tree. Before the first commit the diff is against the empty tree. Options that
    user config could change (colour, prefixes, external diff, textconv) are fixed so the
    patch always applies. An empty patch is not written; the count is files in dest.
    """
    base = _head(root)
    if base is None:  # hashing nothing names the empty tree, in SHA-1 and SHA-256 repos
        empty = _checked(root, "hash-object", "-t", "tree", "--stdin")
        base = empty.stdout.decode("ascii").strip()
    diff = _checked(
        root,
        "diff",
        "--binary",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-renames",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        base,
        "--",
    ).stdout
    written = 0
    if diff:
        (dest / "patch.diff").write_bytes(diff)
        written += 1
    listed = _checked(root, "ls-files", "-z", "--others", "--exclude-standard").stdout
    for raw in sorted(listed.split(b"\0")):
        rel = os.fsdecode(raw)
        if not rel or rel.endswith("/") or not matches(rel, globs):
            continue  # a trailing '/' is a nested repository, not a file
        target = dest / "untracked" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target, follow_symlinks=False)
        written += 1
    return written


def _relative(root: Path, path: Path) -> str | None:
    path = path if path.is_absolute() else root / path
    try:  # resolve only the parent: a tracked symlink is asked about, not its target
        rel = (path.parent.resolve() / path.name).relative_to(root.resolve())
    except ValueError:
        return None
    return rel.as_posix()


def is_tracked(root: Path, path: Path) -> bool:
    """Whether git tracks the file, or any file under the folder, at path."""
    rel = _relative(root, path)
    if rel is None:
        return False
    proc = _git(root, "--literal-pathspecs", "ls-files", "-z", "--", rel)
    return proc is not None and proc.returncode == 0 and bool(proc.stdout)


def _ignore_line(rel: str) -> str:
    """An anchored gitignore line matching exactly rel.

    Glob characters and trailing spaces are escaped so they are taken literally. The
    leading '/' means a name starting with '#' or '!' is never read as a comment or a
    negation, so those need no escape.
    """
    body = _GLOB_CHARS.sub(r"\\\1", rel)
    kept = body.rstrip(" ")
    return "/" + kept + "\\ " * (len(body) - len(kept))


def ignore(root: Path, rel: str) -> bool:
    """Make Git ignore rel ('/'-separated, relative to root); True if .gitignore changed."""
    parts = rel.split("/")
    if not rel or "\n" in rel or any(p in ("", ".", "..") for p in parts):
        raise InvalidArgument(
            f"cannot ignore {rel!r}: give a path relative to the work tree, like 'models/big'"
        )
    args = ("check-ignore", "-q", "--no-index", "--", rel)
    if _checked(root, *args, ok=(0, 1)).returncode == 0:
        return False
    gitignore = root / ".gitignore"
    existing = gitignore.read_bytes() if gitignore.exists() else b""
    with gitignore.open("ab") as f:
        if existing and not existing.endswith(b"\n"):
            f.write(b"\n")
        f.write(os.fsencode(_ignore_line(rel)) + b"\n")
    return True


def hooks_dir(root: Path) -> Path:
    """Where hooks go, asked of git because core.hooksPath and worktrees move it."""
    return root / _line(_checked(root, "rev-parse", "--git-path", "hooks").stdout)


def user_identity(cwd: Path) -> str | None:
    """The git config identity, as "Name <email>": who made a change when nobody said."""
    proc = _git(_existing_dir(cwd), "config", "-z", "--get-regexp", r"^user\.(name|email)$")
    if proc is None or proc.returncode != 0:
        return None
    found: dict[str, str] = {}
    for record in proc.stdout.split(b"\0"):
        key, _, value = record.partition(b"\n")
        found[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace").strip()
    name, email = found.get("user.name"), found.get("user.email")
    if name and email:
        return f"{name} <{email}>"
    return name or email or None


def has_commit(root: Path, commit: str) -> bool:
    proc = _git(root, "cat-file", "-e", f"{commit}^{{commit}}")
    return proc is not None and proc.returncode == 0


def _run_or_say(cwd: Path, *args: str) -> None:
    proc = _git(cwd, *args)
    if proc is None or proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines() if proc else []
        reason = lines[0] if lines else "git is not installed"
        raise InvalidArgument(f"`git {args[0]}` failed in {str(cwd)!r}: {reason}")


def copy_at(source: Path, commit: str | None, dest: Path) -> None:
    """A new work tree at dest holding source's commit (detached; no hooks of source run:
    hooks are not cloned). None: an empty repository (the run had no commit yet)."""
    if commit is None:
        _run_or_say(dest.parent, "init", "--quiet", str(dest))
        return
    _run_or_say(
        dest.parent, "clone", "--quiet", "--shared", "--no-checkout", str(source), str(dest)
    )
    _run_or_say(dest, "checkout", "--quiet", "--detach", commit)


def apply_patch(root: Path, patch: Path) -> None:
    """Apply a patch written by write_patch to the work tree at root."""
    _run_or_say(root, "apply", "--binary", "--whitespace=nowarn", str(patch))


def exclude(root: Path, pattern: str) -> None:
    """Ignore pattern in this work tree alone (.git/info/exclude, never committed)."""
    info = root / ".git" / "info"
    info.mkdir(parents=True, exist_ok=True)
    with (info / "exclude").open("a", encoding="utf-8") as f:
        f.write(f"\n/{pattern}\n")
