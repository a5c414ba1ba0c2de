"""Putting files and folders into the store: chunk, hash, deduplicate, compress, pack.

`put` returns only after every object the root needs is durable (packs fsynced, renamed
and indexed), so the caller may then commit a version that points at it.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3

from modelkeep.errors import InvalidArgument, PathNotFound, UnreadablePath, UnsupportedFileType
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.store.chunking import BLOCK, BUFFERS, digest, iter_blocks
from modelkeep.store.codec import Compressor
from modelkeep.store.heap import keep_freed_memory
from modelkeep.store.index import FileStamp
from modelkeep.store.objects import ObjectStore, Root
from modelkeep.store.packs import (
    CODEC_RAW,
    KIND_BLOB,
    KIND_CHUNK,
    KIND_TREE,
    PACK_TARGET,
    PackWriter,
)
from modelkeep.store.trees import Kind, ManifestBuilder, Tree, TreeEntry

_Item = tuple[bytes, int, int, bytes | memoryview, int]
Spans = list[tuple[int, int]]
_Encoded = tuple[int, bytes | memoryview]
SHARED = 1024 * 1024  # new bytes in a block from which its compression is shared by two threads


def _encode_all(compressor: Compressor, pieces: list[tuple[bytes, memoryview]]) -> list[_Encoded]:
    return [compressor.encode(data) for _, data in pieces]


def _nofollow(path: str | bytes, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


@dataclass(slots=True)
class PutResult:
    root: Root
    size: int = 0
    mode: int = 0  # of a lone file
    file_count: int = 0
    new_bytes: int = 0  # raw bytes of objects this put wrote
    stored_bytes: int = 0  # bytes those objects take in packs


class Writer:
    """One writing session: new objects go to this session's own packs.

    The main thread reads and chunks; a hasher thread hashes each block (chunk ids and the
    whole-file id) while the next one is read and cut; a storer thread deduplicates,
    compresses and appends hashed blocks to the pack, handing the second half of a block's
    new chunks to a compressor thread (byte-grouped compression of float weights costs
    about as much CPU as reading, cutting and hashing together, so on one thread it would
    hold the other stages back); a
    sealer thread fsyncs full packs while writing goes on. BLAKE3, the chunker, zstd and
    file I/O release the GIL, so the stages overlap on both cores.
    """

    def __init__(
        self,
        store: ObjectStore,
        progress: Progress = NULL_PROGRESS,
        exclude: bytes = b"",
        dry: bool = False,
    ) -> None:
        self.store = store
        self.dry = dry  # compute ids only: write nothing, remember no stamps
        self._exclude = exclude
        self.progress = progress
        self._pack: PackWriter | None = None
        self._seals: deque[tuple[PackWriter, Future[object]]] = deque()
        self._seen: set[bytes] = set()  # written here, in packs not indexed yet
        self._compressor = Compressor()
        self._helper = Compressor()  # the compressor thread's: a Compressor has state
        self._stamps: list[tuple[bytes, FileStamp, bytes]] = []
        self._started_ns = time.time_ns()
        self._cache: dict[bytes, tuple[FileStamp, bytes]] = {}
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="modelkeep-hash")
        self._storer = ThreadPoolExecutor(1, thread_name_prefix="modelkeep-store")
        self._compressing = ThreadPoolExecutor(1, thread_name_prefix="modelkeep-compress")
        self._sealer = ThreadPoolExecutor(1, thread_name_prefix="modelkeep-seal")
        self.new_bytes = 0
        self.stored_bytes = 0

    # -- objects ----------------------------------------------------------------

    def _put(self, key: bytes, kind: int, data: bytes | memoryview) -> None:
        if self.dry:
            return
        if key in self._seen or self.store.index.has(key):
            self._seen.add(key)
            return
        self._append([self._item(key, kind, data)])

    def _item(self, key: bytes, kind: int, data: bytes | memoryview) -> _Item:
        if kind == KIND_BLOB:  # chunk ids: nothing to gain, and no compressed copy to hold
            return self._record(key, kind, data, (CODEC_RAW, data))
        return self._record(key, kind, data, self._compressor.encode(data))

    def _record(self, key: bytes, kind: int, data: bytes | memoryview, encoded: _Encoded) -> _Item:
        codec, payload = encoded
        self._seen.add(key)
        if kind == KIND_CHUNK:
            self.new_bytes += len(data)
        self.stored_bytes += len(payload)
        return key, kind, codec, payload, len(data)

    def _append(self, items: list[_Item]) -> None:
        self._index_sealed()
        if not items:
            return
        if self._pack is None:
            self._pack = PackWriter(self.store.packs_dir, self.store.tmp_dir)
        self._pack.append(items)
        if self._pack.size >= PACK_TARGET:
            self._seal()

    def _seal(self) -> None:
        """Hand the full pack to the sealer thread, so its fsync overlaps further writes."""
        if self._pack is not None:
            pack, self._pack = self._pack, None
            self._seals.append((pack, self._sealer.submit(pack.seal)))

    def _index_sealed(self, wait: bool = False) -> None:
        """Index the packs sealed so far (all of them with wait), in order, and forget their
        entries: a file of any size then holds one pack's entries, not all of them.

        Indexed before the version naming them is committed, they are what a writer killed
        at this point leaves (reconcile indexes its sealed packs); gc, which would count
        them as garbage, waits for the lock this writer holds. Called only from the thread
        that appends (never two at once), so a chunk is always either in _seen or indexed.
        """
        while self._seals and (wait or self._seals[0][1].done()):
            pack, sealing = self._seals[0]
            sealing.result()
            self.store.index.add_pack(pack.name, pack.size, pack.entries)
            self._seals.popleft()
            self._seen.difference_update(e.key for e in pack.entries)

    def commit(self) -> None:
        """Make everything written durable and visible, and remember file stamps."""
        self._seal()
        self._index_sealed(wait=True)
        if self._stamps and not self.dry:
            self.store.index.remember(self._stamps)
            self._stamps.clear()
        self.close()

    def abort(self) -> None:
        self.close()
        if self._pack is not None:
            self._pack.abort()
            self._pack = None

    def close(self) -> None:
        for pool in (self._hasher, self._storer, self._compressing, self._sealer):
            pool.shutdown(wait=True)

    # -- files and folders ------------------------------------------------------

    def load_stat_cache(self, root: bytes) -> None:
        """Read the stat cache for everything under root in one query."""
        self._cache = self.store.index.stamps_under(root)

    def _store_block(
        self, block: memoryview, spans: Spans, ids: list[bytes], chunks: ManifestBuilder
    ) -> None:
        known = set(ids) if self.dry else self.store.index.known(ids)
        new: list[tuple[bytes, memoryview]] = []
        for cid, (start, length) in zip(ids, spans, strict=True):
            if cid not in known and cid not in self._seen:
                self._seen.add(cid)  # a chunk repeated within the block is stored once
                new.append((cid, block[start : start + length]))
        chunks.add(ids, [length for _, length in spans])
        encoded = self._encode(new)
        pairs = zip(new, encoded, strict=True)
        self._append([self._record(cid, KIND_CHUNK, data, e) for (cid, data), e in pairs])
        self.progress.advance(sum(length for _, length in spans))

    def _encode(self, new: list[tuple[bytes, memoryview]]) -> list[_Encoded]:
        """Compress a block's new chunks in order, the second half on the compressor thread
        when there is enough to share (each half keeps its own compressor's state)."""
        half = len(new) // 2
        if half == 0 or sum(len(data) for _, data in new) < SHARED:
            return _encode_all(self._compressor, new)
        later = self._compressing.submit(_encode_all, self._helper, new[half:])
        try:
            first = _encode_all(self._compressor, new[:half])
        except BaseException:
            wait([later])  # the helper never outlives this block's buffer
            raise
        return first + later.result()

    def _chunk_file(self, f: BinaryIO, size: int) -> tuple[bytes, ManifestBuilder]:
        """Chunk, hash and store one open file; return its id and chunk list (its manifest
        in the making: 36 bytes a chunk, so a file of any size costs little memory).

        Three stages run at once on a file of several blocks: this thread reads block i+2
        and cuts it into chunks, the hasher hashes block i+1 (its chunks' ids and the
        whole-file id), and the storer looks up, compresses and appends block i to the
        pack. Reading, cutting, hashing and writing release the GIL, so both cores work.
        """
        if size > BLOCK:
            keep_freed_memory()
        whole = blake3.blake3()
        chunks = ManifestBuilder()

        def hash_block(block: memoryview, spans: Spans) -> list[bytes]:
            whole.update(block)
            return [digest(block[start : start + length]) for start, length in spans]

        def store_block(block: memoryview, spans: Spans, hashing: Future[list[bytes]]) -> None:
            self._store_block(block, spans, hashing.result(), chunks)

        # A block stays valid until BUFFERS more have been read (iter_blocks), so no more
        # than BUFFERS - 1 wait to be stored while the next one is read.
        storing: deque[Future[None]] = deque()
        try:
            for block, spans, single in iter_blocks(f, size):
                if single:  # a small file: a hand-off would cost more than it saves
                    if len(spans) == 1:  # one chunk: its id is the file's id, hashed once
                        file_id = digest(block)
                        self._store_block(block, spans, [file_id], chunks)
                        return file_id, chunks
                    self._store_block(block, spans, hash_block(block, spans), chunks)
                    continue
                hashing = self._hasher.submit(hash_block, block, spans)
                storing.append(self._storer.submit(store_block, block, spans, hashing))
                while len(storing) >= BUFFERS:
                    storing.popleft().result()
            while storing:
                storing.popleft().result()
        except BaseException:
            for future in storing:
                future.cancel()
            wait(storing)  # no stage may still use a buffer or the pack after this
            raise
        return whole.digest(), chunks

    def put_file(self, path: bytes, st: os.stat_result) -> bytes:
        """Store one regular file; an unchanged one (by its stat stamp) is not read again."""
        stamp = FileStamp(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            self.progress.advance(st.st_size)
            return cached[1]
        try:
            with open(path, "rb", buffering=0, opener=_nofollow) as f:
                blob_id, chunks = self._chunk_file(f, st.st_size)
                after = os.fstat(f.fileno())
        except FileNotFoundError as exc:
            raise PathNotFound(os.fsdecode(path)) from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # the store's disk is full: not a problem of the file being read
            raise UnreadablePath(os.fsdecode(path), exc.strerror or str(exc)) from exc
        size = chunks.size
        if (after.st_mtime_ns, after.st_size) != (st.st_mtime_ns, st.st_size) or size != st.st_size:
            raise UnreadablePath(os.fsdecode(path), "it changed while being read; try again")
        if not chunks.count:
            self._put(blob_id, KIND_CHUNK, b"")
        elif chunks.count > 1:
            self._put(blob_id, KIND_BLOB, chunks.finish())
        # A file changed within the clock's resolution of our read could keep its stamp.
        if st.st_mtime_ns < self._started_ns - 10_000_000:
            self._stamps.append((path, stamp, blob_id))
        return blob_id

    def put_link(self, path: bytes) -> tuple[bytes, int]:
        target = os.readlink(path)
        key = digest(target)
        self._put(key, KIND_CHUNK, target)
        return key, len(target)

    def put_dir(self, path: bytes, result: PutResult) -> TreeEntry:
        entries: list[TreeEntry] = []
        total = 0
        try:
            with os.scandir(path) as it:
                children = [c for c in sorted(it, key=lambda d: d.name) if c.path != self._exclude]
        except OSError as exc:
            raise UnreadablePath(os.fsdecode(path), exc.strerror or str(exc)) from exc
        for child in children:
            entry = self.put_entry(child.path, result, child.name)
            entries.append(entry)
            total += entry.size
        tree = Tree(tuple(entries))
        data = tree.encode()
        key = digest(data)
        self._put(key, KIND_TREE, data)
        return TreeEntry(os.path.basename(path), Kind.DIR, 0, total, key)

    def put_entry(self, path: bytes, result: PutResult, name: bytes) -> TreeEntry:
        try:
            st = os.lstat(path)
        except FileNotFoundError as exc:
            raise PathNotFound(os.fsdecode(path)) from exc
        except OSError as exc:
            raise UnreadablePath(os.fsdecode(path), exc.strerror or str(exc)) from exc
        if stat.S_ISLNK(st.st_mode):
            key, size = self.put_link(path)
            result.file_count += 1
            return TreeEntry(name, Kind.LINK, 0, size, key)
        if stat.S_ISDIR(st.st_mode):
            entry = self.put_dir(path, result)
            return TreeEntry(name, Kind.DIR, 0, entry.size, entry.id)
        if stat.S_ISREG(st.st_mode):
            blob = self.put_file(path, st)
            result.file_count += 1
            mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
            return TreeEntry(name, Kind.FILE, mode, st.st_size, blob)
        kind = {
            stat.S_IFIFO: "named pipe",
            stat.S_IFSOCK: "socket",
            stat.S_IFCHR: "character device",
            stat.S_IFBLK: "block device",
        }.get(stat.S_IFMT(st.st_mode), "special file")
        raise UnsupportedFileType(os.fsdecode(path), kind)


def total_size(path: bytes) -> int:
    """Bytes under path, for a progress bar's total; does not follow symlinks."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def put(
    store: ObjectStore,
    path: Path,
    progress: Progress = NULL_PROGRESS,
    exclude: Path | None = None,
    dry: bool = False,
) -> PutResult:
    """Store a file, folder or symlink; durable when this returns. Caller holds `writing()`.

    exclude names a folder to leave out (the repository's own control folder). With dry,
    only the root id is computed (unchanged files by their stat stamp) and nothing is
    written, so asking "did this path change?" leaves no garbage behind.
    """
    raw = os.fsencode(path.absolute())
    if not os.path.lexists(raw):
        raise PathNotFound(str(path))
    progress.start(total_size(raw) if progress is not NULL_PROGRESS else None, "adding")
    writer = Writer(store, progress, os.fsencode(exclude) if exclude else b"", dry)
    writer.load_stat_cache(raw)
    result = PutResult(Root(Kind.FILE, b""))
    try:
        entry = writer.put_entry(raw, result, os.path.basename(raw) or b"root")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        progress.finish()
    result.root = Root(entry.kind, entry.id)
    result.size = entry.size
    result.mode = entry.mode
    result.new_bytes = writer.new_bytes
    result.stored_bytes = writer.stored_bytes
    return result


def put_tree(store: ObjectStore, files: Sequence[tuple[bytes, bytes, int]]) -> TreeEntry:
    """A folder made of files the store already holds: (relative path, blob id, size) each,
    `/` between folders. Only the folders' trees are written, no file byte is read or
    copied, so a folder assembled from objects uploaded one by one (MLflow's artifacts)
    costs a few small objects. Caller holds `writing()` and checked that the blobs exist."""
    top: dict[bytes, object] = {}
    for path, blob, size in files:
        *dirs, name = path.split(b"/")
        here = top
        for d in dirs:
            sub = here.setdefault(d, {})
            if not isinstance(sub, dict):
                raise InvalidArgument(f"{os.fsdecode(path)!r} is both a file and a folder")
            here = sub
        if name in here:
            raise InvalidArgument(f"{os.fsdecode(path)!r} is both a file and a folder")
        here[name] = TreeEntry(name, Kind.FILE, 0o644, size, blob)
    writer = Writer(store)
    try:
        root = _write_tree(writer, b"root", top)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return root


def _write_tree(writer: Writer, name: bytes, folder: dict[bytes, object]) -> TreeEntry:
    entries = []
    for child_name, child in folder.items():
        if isinstance(child, dict):
            entries.append(_write_tree(writer, child_name, child))
        else:
            assert isinstance(child, TreeEntry)
            entries.append(child)
    tree = Tree(tuple(entries))
    data = tree.encode()
    key = digest(data)
    writer._put(key, KIND_TREE, data)
    return TreeEntry(name, Kind.DIR, 0, sum(e.size for e in entries), key)
