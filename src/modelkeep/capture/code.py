"""The code a run executed: which source files, and the command that started it.

A snapshot copies files rather than trusting Git, because a run is often started from
a folder that is not a repository, or with changes nobody committed. It skips what is
installed rather than written (virtual environments, caches, build output), since those
are described by the environment record and would swamp the snapshot.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_GLOBS: tuple[str, ...] = ("**/*.py",)
SKIP_DIRS = frozenset(
    {
        ".git",
        ".modelkeep",
        ".venv",
        "venv",
        "env",
        "__pycache__",
        "node_modules",
        "site-packages",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "build",
        "dist",
    }
)
MAX_FILE_BYTES = 10 * 2**20


@lru_cache(maxsize=256)
def _compile(glob: str) -> re.Pattern[str]:
    """Translate one glob by hand, because fnmatch lets `*` cross '/' and has no `**`."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        if glob.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def matches(relpath: str, globs: Sequence[str]) -> bool:
    """Whether a '/'-separated path relative to the root matches any glob.

    `*` and `?` stay inside one folder, `**/` spans zero or more folders and a trailing
    `**` everything below, so `**/*.py` means every Python file and `*.py` only the top.
    """
    return any(_compile(g).fullmatch(relpath) for g in globs)


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Regular files under root, in sorted order so snapshots are reproducible."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not (here / d / "pyvenv.cfg").exists()
        )
        for name in sorted(filenames):
            try:
                st = (here / name).stat()
            except OSError:  # a dangling symlink, or a file removed while we walk
                continue
            if stat.S_ISREG(st.st_mode):
                yield (here / name).relative_to(root).as_posix(), st


def snapshot(
    root: Path,
    dest: Path,
    globs: Sequence[str] = DEFAULT_GLOBS,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> int:
    """Copy matching source files to `dest/<relpath>`; return how many were copied.

    Modes are normalised to 0o755/0o644 so two snapshots of the same code compare equal
    whatever the umask; only the executable bit carries meaning for code.
    """
    chosen = [
        (rel, st) for rel, st in _walk(root) if st.st_size <= max_file_bytes and matches(rel, globs)
    ]  # listed before copying, so a dest inside root is never copied into itself
    for rel, st in chosen:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)
        target.chmod(0o755 if st.st_mode & stat.S_IXUSR else 0o644)
    return len(chosen)


@dataclass(frozen=True, slots=True)
class Command:
    """How the process was started: enough to run it again from the same folder."""

    argv: tuple[str, ...]
    script: str | None
    cwd: str

    def to_json(self) -> dict[str, Any]:
        # entry "python": the process is `python SCRIPT ARGS` (`reproduce` runs it so).
        return {"argv": list(self.argv), "script": self.script, "cwd": self.cwd, "entry": "python"}


def command(argv: Sequence[str] | None = None) -> Command:
    args = tuple(sys.argv if argv is None else argv)
    script = None
    main_file = getattr(sys.modules.get("__main__"), "__file__", None) if argv is None else None
    if main_file and Path(main_file).is_file():  # absolute even after a chdir
        script = os.path.abspath(main_file)
    elif args and args[0] and Path(args[0]).is_file():
        script = os.path.abspath(args[0])
    return Command(argv=args, script=script, cwd=os.getcwd())
