"""The store's local index: where each object lives, and the stat cache.

It is a cache of what the pack index files say (`ObjectStore.reconcile` fills in packs it
is missing from them), kept in
SQLite so that lookups are fast and several processes can update it in transactions.
Because it is a cache, a damaged file (not a database, a malformed image) is set aside
with a warning and rebuilt from the packs' `.idx` files; only the stat cache is lost, so
the next `add` rereads unchanged files once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from modelkeep.errors import IndexRebuilt, IndexUnreadable
from modelkeep.store.packs import PackEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packs (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    key BLOB PRIMARY KEY, kind INTEGER NOT NULL, pack INTEGER NOT NULL,
    offset INTEGER NOT NULL, length INTEGER NOT NULL, raw_length INTEGER NOT NULL,
    codec INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_pack ON entries(pack);
CREATE TABLE IF NOT EXISTS statcache (
    path BLOB PRIMARY KEY, dev INTEGER, ino INTEGER, mtime_ns INTEGER, ctime_ns INTEGER,
    size INTEGER, blob BLOB NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Located:
    pack: str
    entry: PackEntry


# (pack name, kind, codec, offset, length, raw_length): a PackEntry's fields without its key
Place = tuple[str, int, int, int, int, int]


class FileStamp(NamedTuple):
    """What the stat cache compares: any change to the file changes one of these. A tuple:
    a no-op `add` of 200,000 files makes and compares one per file."""

    dev: int
    ino: int
    mtime_ns: int
    ctime_ns: int
    size: int


def _connect(path: Path) -> sqlite3.Connection:
    # Restores read objects on a helper thread; SQLite serialises use of the connection.
    db = sqlite3.connect(path, timeout=300, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("COMMIT")
        db.execute("SELECT count(*) FROM packs").fetchone()  # the tables are readable
    except BaseException:
        db.close()
        raise
    return db


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Damage a rebuild repairs (garbage, a malformed image), not an unusable place
    (permissions, a full disk, a lock held too long): those are OperationalErrors."""
    return not isinstance(exc, sqlite3.OperationalError)


def _open(path: Path) -> sqlite3.Connection:
    try:
        return _connect(path)
    except sqlite3.DatabaseError as exc:
        if not _damaged(exc):
            raise IndexUnreadable(str(path), str(exc)) from exc
        first = exc
    # One process sets the damaged file aside; the others wait, then open its rebuild.
    lock = os.open(f"{path}.rebuild", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _connect(path)  # another process rebuilt it meanwhile
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise IndexUnreadable(str(path), str(exc)) from exc
        aside = path.with_name(f"{path.name}.damaged")
        os.replace(path, aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        warnings.warn(
            f"{path} was damaged ({first}); moved it to {aside.name} and rebuilt it from "
            "the pack indexes",
            IndexRebuilt,
            stacklevel=4,
        )
        try:
            return _connect(path)
        except sqlite3.DatabaseError as exc:
            raise IndexUnreadable(str(path), str(exc)) from exc
    finally:
        os.close(lock)


class Index:
    def __init__(self, path: Path) -> None:
        self._db = _open(path)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- objects ---------------------------------------------------------------

    def add_pack(
        self, name: str, size: int, entries: Iterable[PackEntry], *, replace: bool = False
    ) -> None:
        """Index a sealed pack. Keys already indexed elsewhere keep their place, unless
        replace (gc's repack) points them at their copies here."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self.write() as db:
            db.execute("INSERT OR IGNORE INTO packs(name, size) VALUES (?, ?)", (name, size))
            (pack_id,) = db.execute("SELECT id FROM packs WHERE name = ?", (name,)).fetchone()
            db.executemany(
                f"{verb} INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (e.key, e.kind, pack_id, e.offset, e.length, e.raw_length, e.codec)
                    for e in entries
                ),
            )

    def pack_names(self) -> set[str]:
        return {name for (name,) in self._db.execute("SELECT name FROM packs")}

    def has(self, key: bytes) -> bool:
        row = self._db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone()
        return row is not None

    def _rows_for(self, select: str, keys: list[bytes]) -> Iterator[tuple[Any, ...]]:
        """Rows of `select ... WHERE e.key IN (keys)`, a few hundred keys per query."""
        for start in range(0, len(keys), 500):
            group = keys[start : start + 500]
            yield from self._db.execute(
                f"{select} WHERE e.key IN ({','.join('?' * len(group))})", group
            )

    def known(self, keys: list[bytes]) -> set[bytes]:
        """Which of keys are indexed."""
        return {row[0] for row in self._rows_for("SELECT e.key FROM entries e", keys)}

    def locate(self, key: bytes) -> Located | None:
        row = self._db.execute(
            "SELECT p.name, e.kind, e.codec, e.offset, e.length, e.raw_length "
            "FROM entries e JOIN packs p ON p.id = e.pack WHERE e.key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        return Located(row[0], PackEntry(key, *row[1:]))

    def locate_many(self, keys: list[bytes]) -> dict[bytes, Located]:
        rows = self._rows_for(
            "SELECT e.key, p.name, e.kind, e.codec, e.offset, e.length, e.raw_length "
            "FROM entries e JOIN packs p ON p.id = e.pack",
            keys,
        )
        return {row[0]: Located(row[1], PackEntry(row[0], *row[2:])) for row in rows}

    def places(self, keys: list[bytes]) -> dict[bytes, Place]:
        """Where each of keys is, as plain tuples: locate_many without an object per key,
        for a reader of a whole file's chunks (tens of thousands of them)."""
        rows = list(
            self._rows_for(
                "SELECT e.key, e.pack, e.kind, e.codec, e.offset, e.length, e.raw_length "
                "FROM entries e",
                keys,
            )
        )
        names = dict(self._db.execute("SELECT id, name FROM packs"))  # after: none missing
        return {row[0]: (names[row[1]], *row[2:]) for row in rows if row[1] in names}

    def entries(self) -> Iterator[Located]:
        """Every indexed object, in pack order, so a scan reads each pack sequentially."""
        rows = self._db.execute(
            "SELECT p.name, e.key, e.kind, e.codec, e.offset, e.length, e.raw_length "
            "FROM entries e JOIN packs p ON p.id = e.pack ORDER BY p.name, e.offset"
        )
        for row in rows:
            yield Located(row[0], PackEntry(*row[1:]))

    def pack_sizes(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, size FROM packs"))

    def totals(self) -> tuple[int, int, int]:
        """(objects, raw bytes, stored bytes) of the indexed chunks."""
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(raw_length), 0), coalesce(sum(length), 0) "
            "FROM entries WHERE kind = 0"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def drop_keys(self, keys: Iterable[bytes]) -> None:
        """Forget objects (their bytes stay in their packs): a reader found them false."""
        with self.write() as db:
            db.executemany("DELETE FROM entries WHERE key = ?", ((k,) for k in keys))

    def drop_packs(self, names: Iterable[str]) -> None:
        with self.write() as db:
            for name in names:
                row = db.execute("SELECT id FROM packs WHERE name = ?", (name,)).fetchone()
                if row:
                    db.execute("DELETE FROM entries WHERE pack = ?", row)
                    db.execute("DELETE FROM packs WHERE id = ?", row)

    # -- stat cache ------------------------------------------------------------

    def stamps_under(self, root: bytes) -> dict[bytes, tuple[FileStamp, bytes]]:
        """Stat-cache rows for root and everything under it whose blob is still stored."""
        rows = self._db.execute(
            "SELECT s.path, s.dev, s.ino, s.mtime_ns, s.ctime_ns, s.size, s.blob "
            "FROM statcache s JOIN entries e ON e.key = s.blob "
            "WHERE s.path = ? OR (s.path >= ? AND s.path < ?)",
            (root, root + b"/", root + b"0"),  # '0' sorts right after '/'
        )
        stamp = FileStamp._make
        return {r[0]: (stamp(r[1:6]), r[6]) for r in rows}  # BLOB columns come back as bytes

    def remember(self, items: Iterable[tuple[bytes, FileStamp, bytes]]) -> None:
        with self.write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO statcache VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((p, s.dev, s.ino, s.mtime_ns, s.ctime_ns, s.size, blob) for p, s, blob in items),
            )

    def forget_blobs_not_in_store(self) -> None:
        with self.write() as db:
            db.execute("DELETE FROM statcache WHERE blob NOT IN (SELECT key FROM entries)")
