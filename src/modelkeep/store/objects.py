"""The object store: bytes in by content, bytes out verified. It never hears of a name.

Objects are chunks (keyed by the BLAKE3 of their bytes), blob manifests (keyed by the
BLAKE3 of the whole file) and trees (keyed by the BLAKE3 of their serialisation). A file
that is a single chunk has no manifest: its id is its chunk's id.

An object that is not here may be somewhere else: the store asks its `fetcher` (a remote,
wired in by the repository; by default one that has nothing) for what it is missing, in
batches, and reads on once the fetched objects are verified and indexed here.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import io
import os
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import zstandard

from modelkeep.errors import CorruptObject, MissingObject, ModelkeepError, ObjectError, UnsafeEntry
from modelkeep.store.chunking import digest
from modelkeep.store.index import Index, Located
from modelkeep.store.packs import (
    CODEC_RAW,
    KIND_BLOB,
    KIND_CHUNK,
    PACK_TARGET,
    CorruptIndex,
    PackEntry,
    PackWriter,
    read_index,
)
from modelkeep.store.trees import (
    BadTree,
    Kind,
    Manifest,
    Tree,
    TreeEntry,
    decode_manifest,
    decode_tree,
)

READERS = 2
READ_BATCH = 16  # chunks per task: about 1 MiB
READ_AHEAD = 4  # batches verified ahead of the writer
FETCH_WINDOW = 64  # chunks a file reader fetches at once when it finds one missing: 4 MiB

Explain = Callable[[ModelkeepError], ModelkeepError]


def _same(exc: ModelkeepError) -> ModelkeepError:
    return exc


class Fetcher(Protocol):
    """Somewhere objects missing here may be found. `fetch` brings what it can into the
    store (verified) and raises for what it cannot; `active` is False for the null one."""

    active: bool

    def fetch(self, keys: list[bytes]) -> None: ...


class NullFetcher:
    active = False

    def fetch(self, keys: list[bytes]) -> None:
        pass


NULL_FETCHER: Fetcher = NullFetcher()


@dataclass(frozen=True, slots=True)
class Root:
    """What a version points at: one file (a blob) or one folder (a tree)."""

    kind: Kind
    id: bytes


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.packs_dir = root / "packs"
        self.tmp_dir = root / "tmp"
        for folder in (self.packs_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.index = Index(root / "index.sqlite")
        self._fds: dict[str, int] = {}
        self._fds_lock = threading.Lock()
        self._local = threading.local()  # zstd contexts are not shared between threads
        self._lock_path = root / "lock"
        self.fetcher: Fetcher = NULL_FETCHER
        self.reconcile()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self.index.close()

    # -- locking: writers share, gc excludes ------------------------------------

    @contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def writing(self) -> AbstractContextManager[None]:
        """Held while objects are written and until the version naming them is committed."""
        return self._flock(fcntl.LOCK_SH)

    def exclusive(self) -> AbstractContextManager[None]:
        """Held by gc: no writer is then between writing objects and committing a version."""
        return self._flock(fcntl.LOCK_EX)

    def reconcile(self) -> None:
        """Index any sealed pack the index does not know (a writer died before indexing it).

        Skipped while gc holds the lock: gc drops a pack from the index before deleting
        its files, and must not see it indexed again in between.
        """
        try:
            with self._flock(fcntl.LOCK_SH | fcntl.LOCK_NB):
                self.reconcile_locked()
        except BlockingIOError:
            pass  # gc is running; it reconciles itself

    def reconcile_locked(self) -> None:
        """reconcile, for a caller that holds the store lock (gc, exclusively)."""
        known = self.index.pack_names()
        for idx in self.packs_dir.glob("pack-*.idx"):
            name = idx.stem
            if name in known:
                continue
            try:
                entries = read_index(idx)
                size = idx.with_suffix(".pack").stat().st_size
            except (OSError, CorruptIndex):
                continue  # fsck reports it; gc removes it
            self.index.add_pack(name, size, entries)

    # -- objects from elsewhere ----------------------------------------------------

    @contextmanager
    def fetching(self, fetcher: Fetcher) -> Iterator[None]:
        """Use fetcher for missing objects for a while (a pull from a named remote)."""
        previous, self.fetcher = self.fetcher, fetcher
        try:
            yield
        finally:
            self.fetcher = previous

    def offline(self) -> AbstractContextManager[None]:
        """Read only what is here (gc, fsck and error explanations must not download)."""
        return self.fetching(NULL_FETCHER)

    def ensure(self, keys: list[bytes]) -> None:
        """Fetch, in one batch, those of keys that are not here."""
        if not self.fetcher.active or not keys:
            return
        known = self.index.known(keys)
        missing = list(dict.fromkeys(k for k in keys if k not in known))
        if missing:
            self.fetcher.fetch(missing)

    def prefetch(self, root: Root) -> None:
        """Fetch everything root needs that is not here, a few batches per folder level."""
        if not self.fetcher.active:
            return
        level = [root]
        while level:
            self.ensure([r.id for r in level])
            chunks: list[bytes] = []
            below: list[Root] = []
            for r in level:
                if r.kind == Kind.DIR:
                    below.extend(Root(e.kind, e.id) for e in self.tree(r.id).entries)
                elif r.kind == Kind.FILE:
                    located = self.index.locate(r.id)
                    if located is not None and located.entry.kind == KIND_BLOB:
                        chunks.extend(cid for cid, _ in self.manifest(r.id).chunks)
            self.ensure(chunks)
            level = below

    def verify(self, entry: PackEntry, data: bytes, where: str) -> bytes:
        """The raw bytes of an object as stored (data), after checking them against its id."""
        key = entry.key
        if entry.codec == CODEC_RAW:
            raw = data
        else:
            dctx = getattr(self._local, "dctx", None)
            if dctx is None:
                dctx = self._local.dctx = zstandard.ZstdDecompressor()
            try:
                raw = dctx.decompress(data, max_output_size=entry.raw_length)
            except zstandard.ZstdError as exc:
                raise CorruptObject(key.hex(), f"{where}: {exc}") from exc
        if entry.kind == KIND_BLOB:
            try:
                decode_manifest(raw)
            except ValueError as exc:
                raise CorruptObject(key.hex(), f"{where}: {exc}") from exc
        elif len(raw) != entry.raw_length or digest(raw) != key:
            raise CorruptObject(key.hex(), f"{where}: content does not match its id")
        return raw

    def add_stored(self, items: list[tuple[PackEntry, bytes]]) -> None:
        """Store objects given as stored (already verified by the caller) in new packs here."""
        writer: PackWriter | None = None
        try:
            for entry, data in items:
                if writer is None:
                    writer = PackWriter(self.packs_dir, self.tmp_dir)
                writer.append([(entry.key, entry.kind, entry.codec, data, entry.raw_length)])
                if writer.size >= PACK_TARGET:
                    writer.seal()
                    self.index.add_pack(writer.name, writer.size, writer.entries)
                    writer = None
            if writer is not None:
                writer.seal()
                self.index.add_pack(writer.name, writer.size, writer.entries)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

    # -- reading ----------------------------------------------------------------

    def _pread(self, located: Located) -> bytes:
        entry = located.entry
        for _attempt in range(2):
            fd = self._fds.get(located.pack)
            if fd is None:
                try:
                    fd = os.open(self.packs_dir / f"{located.pack}.pack", os.O_RDONLY)
                except FileNotFoundError:
                    # gc or cache prune may have moved it since we looked it up: look again.
                    fresh = self.index.locate(entry.key)
                    if fresh is None or fresh.pack == located.pack:
                        raise MissingObject(entry.key.hex()) from None
                    located, entry = fresh, fresh.entry
                    continue
                with self._fds_lock:  # two readers may open the same pack at once
                    if located.pack in self._fds:
                        os.close(fd)
                        fd = self._fds[located.pack]
                    else:
                        self._fds[located.pack] = fd
                        self._touch(located.pack)
            data = os.pread(fd, entry.length, entry.offset)
            if len(data) != entry.length:
                raise CorruptObject(entry.key.hex(), f"{located.pack} is truncated")
            return data
        raise MissingObject(entry.key.hex())

    def _touch(self, pack: str) -> None:
        """Mark a pack used (its index's mtime), once per process: cache prune drops the
        least recently used first."""
        with contextlib.suppress(OSError):
            os.utime(self.packs_dir / f"{pack}.idx")

    def _locate(self, key: bytes) -> Located:
        located = self.index.locate(key)
        if located is None and self.fetcher.active:
            self.fetcher.fetch([key])
            located = self.index.locate(key)
        if located is None:
            raise MissingObject(key.hex())
        return located

    def read(self, key: bytes, located: Located | None = None) -> bytes:
        """The verified bytes of one object; a mismatch raises, never returns wrong bytes."""
        located = located or self._locate(key)
        try:
            data = self._pread(located)
        except MissingObject:
            if not self.fetcher.active:
                raise
            located = self._locate(key)  # pruned since it was located: fetch it back
            data = self._pread(located)
        where = f"{located.pack} offset {located.entry.offset}"
        return self.verify(located.entry, data, where)

    def read_stored(self, pack: str, entry: PackEntry) -> bytes:
        """An object's bytes as stored (compressed or not), after verifying them."""
        data = self._pread(Located(pack, entry))
        self.verify(entry, data, f"{pack} offset {entry.offset}")
        return data

    def forget_fd(self, pack: str) -> None:
        fd = self._fds.pop(pack, None)
        if fd is not None:
            os.close(fd)

    def has(self, key: bytes) -> bool:
        return self.index.has(key)

    def manifest(self, blob_id: bytes) -> Manifest:
        located = self._locate(blob_id)
        if located.entry.kind == KIND_CHUNK:
            return Manifest(located.entry.raw_length, ((blob_id, located.entry.raw_length),))
        return decode_manifest(self.read(blob_id, located))

    def tree(self, tree_id: bytes) -> Tree:
        raw = self.read(tree_id)
        try:
            return decode_tree(raw)
        except BadTree as exc:
            if exc.name is not None and str(exc) == "unsafe entry name":
                raise UnsafeEntry(tree_id.hex(), os.fsdecode(exc.name)) from exc
            raise CorruptObject(tree_id.hex(), f"tree: {exc}") from exc
        except Exception as exc:  # struct.error on a truncated tree
            raise CorruptObject(tree_id.hex(), f"tree: {exc}") from exc

    def iter_blob(self, blob_id: bytes) -> Iterator[bytes]:
        """The verified chunks of a file, in order; large files are read ahead on threads."""
        chunks = [cid for cid, _ in self.manifest(blob_id).chunks]
        self.ensure(chunks)
        if len(chunks) < 4:
            for chunk_id in chunks:
                yield self.read(chunk_id)
            return
        located = self.index.locate_many(chunks)

        def read_batch(ids: list[bytes]) -> list[bytes]:
            return [self.read(i, located.get(i)) for i in ids]

        batches = [chunks[i : i + READ_BATCH] for i in range(0, len(chunks), READ_BATCH)]
        with ThreadPoolExecutor(READERS, thread_name_prefix="modelkeep-read") as pool:
            ahead: deque[Future[list[bytes]]] = deque()
            for batch in batches:
                ahead.append(pool.submit(read_batch, batch))
                if len(ahead) > READ_AHEAD:
                    yield from ahead.popleft().result()
            while ahead:
                yield from ahead.popleft().result()

    def open_blob(self, blob_id: bytes, explain: Explain | None = None) -> BlobReader:
        return BlobReader(self, self.manifest(blob_id), explain or _same)

    def walk(
        self, root: Root, prefix: bytes = b""
    ) -> Iterator[tuple[bytes, Kind, int, int, bytes]]:
        """(path, kind, mode, size, id) of every entry under root, folders before contents."""
        if root.kind != Kind.DIR:
            return
        for e in self.tree(root.id).entries:
            path = prefix + e.name
            yield path, e.kind, e.mode, e.size, e.id
            if e.kind == Kind.DIR:
                yield from self.walk(Root(Kind.DIR, e.id), path + b"/")

    def find(self, top: TreeEntry, path: bytes) -> TreeEntry:
        """The entry at a relative path under top; KeyError if there is none."""
        current = top
        for part in [p for p in path.split(b"/") if p and p != b"."]:
            if current.kind != Kind.DIR:
                raise KeyError(path)
            entry = self.tree(current.id).get(part)
            if entry is None:
                raise KeyError(path)
            current = entry
        return current

    def link_target(self, link_id: bytes) -> bytes:
        return self.read(link_id)

    # -- what a version needs ---------------------------------------------------

    def closure(self, root: Root) -> Iterator[bytes]:
        """Every object id a root needs (may repeat); raises if a needed object is unreadable."""
        yield root.id
        if root.kind == Kind.DIR:
            for e in self.tree(root.id).entries:
                yield from self.closure(Root(e.kind, e.id))
        elif root.kind == Kind.FILE:
            located = self.index.locate(root.id)
            if located is not None and located.entry.kind == KIND_BLOB:
                for chunk_id, _ in self.manifest(root.id).chunks:
                    yield chunk_id


class BlobReader(io.RawIOBase):
    """A read-only, seekable file object over one stored file; chunks fetched on demand."""

    def __init__(self, store: ObjectStore, manifest: Manifest, explain: Explain) -> None:
        super().__init__()
        self._store = store
        self._explain = explain
        self._chunks = manifest.chunks
        self._starts: list[int] = []
        offset = 0
        for _cid, length in self._chunks:
            self._starts.append(offset)
            offset += length
        self._size = manifest.size
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def _chunk_at(self, pos: int) -> tuple[int, bytes]:
        i = bisect.bisect_right(self._starts, pos) - 1
        if self._cached is None or self._cached[0] != i:
            chunk_id = self._chunks[i][0]
            if self._store.fetcher.active and not self._store.has(chunk_id):
                # Only this part of the file, a window at a time: a reader of a header
                # fetches the header, not the whole file.
                self._store.ensure([c for c, _ in self._chunks[i : i + FETCH_WINDOW]])
            self._cached = (i, self._store.read(chunk_id))
        return self._starts[i], self._cached[1]

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self._pos >= self._size:
            return 0
        try:
            start, data = self._chunk_at(self._pos)
        except ObjectError as exc:
            raise self._explain(exc) from None
        piece = data[self._pos - start : self._pos - start + len(buffer)]
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)

    def readall(self) -> bytes:
        """Read the rest in 1 MiB steps; io's default reads 8 KiB at a time."""
        parts = []
        while chunk := self.read(1 << 20):
            parts.append(chunk)
        return b"".join(parts)


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
