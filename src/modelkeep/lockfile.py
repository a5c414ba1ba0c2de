"""`modelkeep.lock`: which tracked path holds which version, committed beside the code.

One line per path, sorted, readable in a diff:

    data/transactions -> transactions:v3 (b3:4f1c…64 hex digits)

A path that would not read back plainly (leading or trailing spaces, control characters,
a name that is not UTF-8, a leading '"' or '#') is written as a JSON string. The file is
rewritten whole, to a temporary name and renamed, under a lock, so concurrent adds never
lose each other's lines and a crash never leaves half a file.

A lock file comes with a commit, from anyone: a path that is absolute, holds '.' or '..'
segments, or lies inside '.git' or '.modelkeep' (any segment, any case) is refused with its
line number, and `checkout` refuses a path whose way leads out of the work tree or into
those folders through a symbolic link, before it writes anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from modelkeep.config import REPO_DIR
from modelkeep.errors import LockFileError

NAME = "modelkeep.lock"
HEADER = (
    "# modelkeep.lock: the version each tracked path holds. Commit it with your code;\n"
    "# `modelkeep checkout` makes the work tree match it. Written by modelkeep.\n"
)
_LINE = re.compile(
    r'(?P<path>"(?:[^"\\]|\\.)*"|.+?) -> (?P<ref>\S+) \((?P<digest>b3:[0-9a-f]{64})\)'
)
_REF = re.compile(r"[a-z0-9][a-z0-9._/-]*:v[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class LockEntry:
    path: str  # relative to the Git work tree, '/'-separated; undecodable bytes as escapes
    ref: str  # NAME:vN
    digest: str  # b3: and 64 hex digits
    line: int = field(default=0, compare=False)  # where it was read, for error messages

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "ref": self.ref, "digest": self.digest}


def _plain(path: str) -> bool:
    return (
        path == path.strip()
        and path.isprintable()  # False for the surrogate escapes of undecodable bytes too
        and not path.startswith(('"', "#"))
    )


def format_entry(entry: LockEntry) -> str:
    path = entry.path if _plain(entry.path) else json.dumps(entry.path)
    return f"{path} -> {entry.ref} ({entry.digest})"


def parse(text: str, where: str = NAME) -> dict[str, LockEntry]:
    entries: dict[str, LockEntry] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _LINE.fullmatch(line)
        if m is None:
            raise LockFileError(where, number, f"{line!r} is not 'PATH -> NAME:vN (b3:HEX)'")
        path = m["path"]
        if path.startswith('"'):
            try:
                path = json.loads(path)
            except ValueError as exc:
                raise LockFileError(where, number, f"bad quoted path {path}: {exc}") from exc
        if not _REF.fullmatch(m["ref"]):
            raise LockFileError(where, number, f"{m['ref']!r} is not a version like NAME:v3")
        parts = path.split("/")
        if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise LockFileError(where, number, f"{path!r} is not a relative path inside the tree")
        folder = control_folder(parts)
        if folder is not None:
            raise LockFileError(
                where, number, f"{path!r} is inside {folder}, which no entry may be"
            )
        if path in entries:
            raise LockFileError(where, number, f"{path!r} is listed twice")
        entries[path] = LockEntry(path, m["ref"], m["digest"], number)
    return entries


def control_folder(parts: list[str]) -> str | None:
    """The first segment naming Git's or modelkeep's own folder ('.git', '.modelkeep'),
    compared as a case-insensitive file system would (trailing dots and spaces dropped);
    None when there is none. A lock entry there could replace a hook or a remote."""
    for part in parts:
        if part.casefold().rstrip(". ") in (".git", REPO_DIR):
            return part
    return None


def read(root: Path) -> dict[str, LockEntry]:
    """The entries of root's lock file; none when there is no lock file."""
    path = root / NAME
    try:
        text = path.read_text("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return {}
    return parse(text, str(path))


def write(root: Path, entries: Mapping[str, LockEntry]) -> None:
    path = root / NAME
    body = HEADER + "".join(format_entry(entries[p]) + "\n" for p in sorted(entries))
    tmp = path.with_name(f".{NAME}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def locked(guard: Path) -> Iterator[None]:
    """Serialise read-modify-write of the lock file across processes."""
    with open(guard, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def update(root: Path, entry: LockEntry) -> None:
    """Set one entry; call it under `locked`, or a concurrent update may be lost."""
    entries = read(root)
    if entries.get(entry.path) != entry:
        entries[entry.path] = entry
        write(root, entries)


def record(root: Path, guard: Path, entry: LockEntry) -> None:
    with locked(guard):
        update(root, entry)
