"""The object store: bytes in by content, bytes out verified. It never hears of a name.

Objects are chunks (keyed by the BLAKE3 of their bytes), blob manifests (keyed by the
BLAKE3 of the whole file) and trees (keyed by the BLAKE3 of their serialisation). A file
that is a single chunk has no manifest: its id is its chunk's id.

What an object is comes from the tree that names it (a file: one chunk or a manifest; a
folder: a tree; a link: a chunk), never from a pack index, which is only a hint of where
to look: whatever an index says, a chunk, tree or link is returned only if its bytes hash
to its id, and a file read whole is returned only if all its bytes hash to the file's id
(a manifest's own checksum proves it intact, not that it belongs to its key). A manifest
that fails that check is dropped from the index, so a good copy can be fetched again.

An object that is not here may be somewhere else: the store asks its `fetcher` (a remote,
wired in by the repository; by default one that has nothing) for what it is missing, in
batches, and reads on once the fetched objects are verified and indexed here.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import fcntl
import io
import os
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import blake3

from modelkeep.errors import CorruptObject, MissingObject, ModelkeepError, ObjectError, UnsafeEntry
from modelkeep.store import codec
from modelkeep.store.chunking import MIN_SIZE, digest
from modelkeep.store.heap import keep_freed_memory
from modelkeep.store.index import Index, Located, Place
from modelkeep.store.limits import (
    MAX_CHUNK,
    MAX_MANIFEST_BYTES,
    MAX_TREE_BYTES,
    manifest_bytes,
)
from modelkeep.store.packs import (
    CODEC_RAW,
    KIND_BLOB,
    KIND_CHUNK,
    KIND_TREE,
    PACK_TARGET,
    CorruptIndex,
    PackEntry,
    PackWriter,
    read_index,
)
from modelkeep.store.trees import (
    BadTree,
    Chunks,
    Kind,
    Manifest,
    Tree,
    TreeEntry,
    decode_manifest,
    decode_tree,
)

READERS = 2
_reader = threading.local()  # each reading thread's buffer for stored bytes, see _scratch
RUN_BYTES = 4 << 20  # at most this much (stored) is read at once: about 64 chunks
RUN_CHUNKS = RUN_BYTES // MIN_SIZE  # and at most this many chunks (a manifest may list tiny ones)
READ_AHEAD = 4  # runs read ahead of the writer
FETCH_WINDOW = 64  # chunks a file reader fetches at once when it finds one missing: 4 MiB
WINDOW = 4096  # chunks of a file read whole that are looked up (and fetched) at once: 256 MiB
PREFETCH_BATCH = 1 << 16  # chunk ids a prefetch gathers before it fetches them: 4 GiB

# What a reader expects an object to be (from the tree that names it, never the index).
AS_CHUNK = 0  # bytes that hash to the id: a chunk, a one-chunk file, a link target
AS_TREE = 1  # the same, up to a tree's size
AS_MANIFEST = 2  # a manifest, intact by its own checksum; the file's hash binds it
AS_PART = 3  # a chunk of a file read whole: the whole file's hash verifies it
_CAPS = {AS_CHUNK: MAX_CHUNK, AS_TREE: MAX_TREE_BYTES, AS_MANIFEST: MAX_MANIFEST_BYTES}
_CAPS[AS_PART] = MAX_CHUNK
_KIND_AS = {KIND_CHUNK: AS_CHUNK, KIND_TREE: AS_TREE, KIND_BLOB: AS_MANIFEST}

Explain = Callable[[ModelkeepError], ModelkeepError]
_Placed = tuple[bytes, int, Place | None]  # a chunk of a file: id, length, where it is


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

    def prefetch(self, *roots: Root) -> None:
        """Fetch everything roots need that is not here, a few batches per folder level
        (for all of them at once: a pull of many versions writes a few packs, not many)."""
        if not self.fetcher.active:
            return
        level = list(roots)
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
                        for cid, _ in self.manifest(r.id).chunks:
                            chunks.append(cid)
                            if len(chunks) >= PREFETCH_BATCH:  # a huge file: a few batches
                                self.ensure(chunks)
                                chunks = []
            self.ensure(chunks)
            level = below

    def check_lengths(self, entry: PackEntry, want: int | None = None) -> None:
        """Refuse an entry whose lengths exceed what its kind can hold, before reading it.

        want is what the reader expects; None (a stored-object check: fsck, gc, push, a
        fetch) takes the index's word for the kind, which only picks the bound."""
        cap = _CAPS[_KIND_AS.get(entry.kind, AS_CHUNK) if want is None else want]
        raw, stored = entry.raw_length, entry.length
        if raw > cap:
            raise CorruptObject(entry.key.hex(), f"claims {raw:,} bytes, over the {cap:,} limit")
        limit = codec.stored_limit(entry.codec, raw)
        if limit is None:
            raise CorruptObject(entry.key.hex(), f"unknown codec {entry.codec}")
        if stored > limit:
            raise CorruptObject(entry.key.hex(), f"stored as {stored:,} bytes for {raw:,}")

    def _decode(self, entry: PackEntry, data: bytes, where: str) -> bytes:
        """The raw bytes of a stored object, exactly raw_length of them: nothing inflates
        past raw_length (checked against the limits before), whatever its payload claims."""
        return codec.decode(entry, data, where)

    def verify(self, entry: PackEntry, data: bytes, where: str, want: int | None = None) -> bytes:
        """The raw bytes of an object as stored (data), after checking them against its id.

        want is what the reader expects (AS_*); None checks an object as the index labels
        it (a manifest by its checksum, anything else by its hash), for fsck, gc, push and
        fetch, which hold objects without knowing which tree names them."""
        self.check_lengths(entry, want)
        raw = self._decode(entry, data, where)
        as_ = _KIND_AS.get(entry.kind, AS_CHUNK) if want is None else want
        if as_ == AS_MANIFEST:
            try:
                decode_manifest(raw)
            except ValueError as exc:
                raise CorruptObject(entry.key.hex(), f"{where}: {exc}") from exc
        elif as_ != AS_PART and digest(raw) != entry.key:
            raise CorruptObject(entry.key.hex(), f"{where}: content does not match its id")
        return raw

    def drop(self, key: bytes) -> None:
        """Forget one object (a manifest its file's bytes refuted): a later fetch may bring
        a good copy. Its bytes stay in their pack until gc."""
        self.index.drop_keys([key])

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

    def _pack_fd(self, pack: str) -> int:
        """An open descriptor of a pack, opened once per store (FileNotFoundError if gone)."""
        fd = self._fds.get(pack)
        if fd is None:
            fd = os.open(self.packs_dir / f"{pack}.pack", os.O_RDONLY)
            with self._fds_lock:  # two readers may open the same pack at once
                if pack in self._fds:
                    os.close(fd)
                    fd = self._fds[pack]
                else:
                    self._fds[pack] = fd
                    self._touch(pack)
        return fd

    def _pread(self, located: Located, want: int | None = None) -> bytes:
        entry = located.entry
        self.check_lengths(entry, want)  # a sparse pack or a lying index allocates nothing
        for _attempt in range(2):
            try:
                fd = self._pack_fd(located.pack)
            except FileNotFoundError:
                # gc or cache prune may have moved it since we looked it up: look again.
                fresh = self.index.locate(entry.key)
                if fresh is None or fresh.pack == located.pack:
                    raise MissingObject(entry.key.hex()) from None
                located, entry = fresh, fresh.entry
                self.check_lengths(entry, want)
                continue
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

    def read(
        self, key: bytes, located: Located | None = None, want: int | None = AS_CHUNK
    ) -> bytes:
        """The verified bytes of one object read as want (AS_*; None: as its index labels
        it, for fsck): a mismatch raises, never returns wrong bytes (AS_PART bytes are
        verified by the caller's whole-file hash)."""
        located = located or self._locate(key)
        try:
            data = self._pread(located, want)
        except MissingObject:
            if not self.fetcher.active:
                raise
            located = self._locate(key)  # pruned since it was located: fetch it back
            data = self._pread(located, want)
        where = f"{located.pack} offset {located.entry.offset}"
        if located.entry.kind == KIND_BLOB and want in (AS_CHUNK, AS_TREE, AS_PART):
            # An index labelled a manifest what a tree names as a chunk, a tree or a link.
            # add never writes that (a file of several chunks is never one chunk of
            # another), so it is a remote's lie: forget it, so a later fetch can replace it.
            self.drop(key)
            raise CorruptObject(key.hex(), f"{where}: a manifest where a chunk or tree belongs")
        return self.verify(located.entry, data, where, want)

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

    def manifest(self, blob_id: bytes, size: int | None = None) -> Manifest:
        """A file's chunk list: one chunk (the file's id) unless a manifest is stored under
        the id. size, the file's size from the tree or version naming it, must agree."""
        located = self._locate(blob_id)
        entry = located.entry
        if entry.kind != KIND_BLOB:  # one chunk: read as AS_CHUNK, so its hash binds it
            self.check_lengths(entry, AS_CHUNK)
            found = Manifest(entry.raw_length, Chunks.of([(blob_id, entry.raw_length)]))
        else:
            if size is not None:  # the tree's size bounds the manifest before it is read
                most = manifest_bytes(size // MIN_SIZE + 2)
                if entry.raw_length > most:
                    raise CorruptObject(blob_id.hex(), f"manifest too long for {size:,} bytes")
            found = decode_manifest(self.read(blob_id, located, AS_MANIFEST))
            if len(found.chunks) < 2 or (size is not None and found.size != size):
                # Intact by its checksum, yet not this file's: forged. Forget it.
                self.drop(blob_id)
                raise CorruptObject(
                    blob_id.hex(),
                    f"has a manifest of {len(found.chunks)} chunk(s) and {found.size:,} bytes "
                    "that does not fit the file; it was dropped from this store",
                )
        if size is not None and found.size != size:
            raise CorruptObject(
                blob_id.hex(), f"holds {found.size:,} bytes where {size:,} were recorded"
            )
        return found

    def tree(self, tree_id: bytes, size: int | None = None) -> Tree:
        """A folder's entries; size, the folder's size from its parent, must be their sum."""
        raw = self.read(tree_id, want=AS_TREE)
        try:
            tree = decode_tree(raw)
        except BadTree as exc:
            if exc.name is not None and str(exc) == "unsafe entry name":
                raise UnsafeEntry(tree_id.hex(), os.fsdecode(exc.name)) from exc
            raise CorruptObject(tree_id.hex(), f"tree: {exc}") from exc
        except Exception as exc:  # struct.error on a truncated tree
            raise CorruptObject(tree_id.hex(), f"tree: {exc}") from exc
        if size is not None and sum(e.size for e in tree.entries) != size:
            raise CorruptObject(tree_id.hex(), "tree: entry sizes do not add up to its size")
        return tree

    def iter_blob(self, blob_id: bytes, size: int | None = None) -> Iterator[bytes | memoryview]:
        """The bytes of a file, in order, verified against the file's id.

        A multi-chunk file is read in runs: chunks that lie one after another in one pack
        (as add writes them) come in with one read of up to RUN_BYTES, not one read and one
        index lookup each. Reader threads read and decode runs ahead; the whole file is
        hashed on a thread of its own while the caller writes (BLAKE3 and file I/O release
        the GIL: the second core), instead of hashing each chunk: one pass of hashing. The
        last run is held back until the whole hash matches, so a consumer never gets a
        complete file that is not the one named; on a mismatch the chunks are checked one
        by one to name the culprit, and a manifest they all agree with is the liar: it is
        dropped and the error names the file. A piece handed out is valid until the next
        one is asked for (its buffer is then reused). A run that cannot be read in one go (a pack
        gone or short, a chunk not here) is read chunk by chunk, which fetches, looks
        again, or names the chunk at fault.

        Memory does not grow with the file: the chunk list stays the manifest's records,
        and chunks are looked up (and fetched) WINDOW at a time as the reading goes.
        """
        found = self.manifest(blob_id, size)
        if len(found.chunks) == 1 and found.chunks[0][0] == blob_id:
            yield self.read(blob_id)
            return
        chunks = found.chunks
        keep_freed_memory()

        def read_chunks(part: list[_Placed]) -> bytes:
            out = []
            for cid, n, place in part:
                located = None if place is None else Located(place[0], PackEntry(cid, *place[1:]))
                data = self.read(cid, located, AS_PART)
                if len(data) != n:
                    raise CorruptObject(cid.hex(), f"{len(data):,} bytes where the file has {n:,}")
                out.append(data)
            return out[0] if len(out) == 1 else b"".join(out)

        free: list[bytearray] = []  # buffers runs are read into, reused: no page faults

        def read_run(run: list[_Placed]) -> tuple[memoryview, bytearray | None]:
            buf = free.pop() if free else bytearray(RUN_BYTES)  # list.pop is atomic
            try:
                n = self._read_run(run, buf)
            except (ObjectError, OSError):
                n = None
            if n is None:
                free.append(buf)
                return memoryview(read_chunks(run)), None
            return memoryview(buf)[:n], buf

        whole = blake3.blake3()
        held: tuple[memoryview, bytearray | None, Future[blake3.blake3]] | None = None
        with (
            ThreadPoolExecutor(READERS, thread_name_prefix="modelkeep-read") as pool,
            ThreadPoolExecutor(1, thread_name_prefix="modelkeep-hash") as hasher,
        ):
            ahead: deque[Future[tuple[memoryview, bytearray | None]]] = deque()

            def take() -> Iterator[memoryview]:
                nonlocal held
                data, buf = ahead.popleft().result()
                hashing = hasher.submit(whole.update, data)
                if held is not None:
                    yield from hand_out(*held)
                held = (data, buf, hashing)

            def hand_out(
                data: memoryview, buf: bytearray | None, hashing: Future[blake3.blake3]
            ) -> Iterator[memoryview]:
                hashing.result()
                yield data
                data.release()
                if buf is not None:  # the caller is done with it, and so is the hasher
                    free.append(buf)

            for run in _runs(self._placed(chunks)):
                ahead.append(pool.submit(read_run, run))
                if len(ahead) > READ_AHEAD:
                    yield from take()
            while ahead:
                yield from take()
            if held is not None:
                held[2].result()
        if whole.digest() != blob_id:
            self._refute(blob_id, chunks)
        if held is not None:
            yield from hand_out(*held)

    def _placed(self, chunks: Sequence[tuple[bytes, int]]) -> Iterator[_Placed]:
        """(id, length, place or None) of each chunk in order, looked up (and first fetched
        where missing) WINDOW chunks at a time: no map of a whole file's places."""
        for start in range(0, len(chunks), WINDOW):
            part = chunks[start : start + WINDOW]
            ids = [cid for cid, _ in part]
            self.ensure(ids)
            places = self.index.places(ids)
            for cid, n in part:
                yield cid, n, places.get(cid)

    def _read_run(self, run: list[_Placed], buf: bytearray) -> int | None:
        """Read into buf the raw bytes of a run of chunks stored back to back in one pack,
        at once, and return their length (None: read it chunk by chunk). Each chunk's
        lengths are checked as before, and its raw bytes must have the length the
        manifest gives it; the caller's whole-file hash verifies the content."""
        first = run[0][2]
        if first is None or first[1] == KIND_BLOB:  # the chunk-by-chunk read fetches or refuses
            return None
        pack = first[0]
        entries = []
        for cid, n, place in run:
            if place is None:
                return None
            entry = PackEntry(cid, *place[1:])
            self.check_lengths(entry, AS_PART)
            if entry.raw_length != n:
                return None
            entries.append(entry)
        start = entries[0].offset
        stored = entries[-1].offset + entries[-1].length - start
        if sum(n for _, n, _ in run) > len(buf):
            return None
        fd = self._pack_fd(pack)
        if all(e.codec == CODEC_RAW and e.length == e.raw_length for e in entries):
            if os.preadv(fd, [memoryview(buf)[:stored]], start) != stored:
                return None  # short: the chunk-by-chunk read names the chunk past the end
            return stored
        view = memoryview(_scratch(stored))[:stored]
        if os.preadv(fd, [view], start) != stored:
            return None
        out = 0
        for entry in entries:
            at = entry.offset - start
            payload = view[at : at + entry.length]
            codec.decode_into(entry, payload, f"{pack} offset {entry.offset}", buf, out)
            out += entry.raw_length
        return out

    def _refute(self, blob_id: bytes, chunks: Sequence[tuple[bytes, int]]) -> None:
        """A file's bytes did not hash to its id: raise for the damaged chunk if one is, else
        drop the manifest (which then named chunks of other bytes) and raise for it."""
        for start in range(0, len(chunks), WINDOW):
            part = chunks[start : start + WINDOW]
            located = self.index.locate_many([cid for cid, _ in part])
            for cid, _ in part:
                self.read(cid, located.get(cid))
        self.drop(blob_id)
        raise CorruptObject(
            blob_id.hex(),
            "its chunks do not hash to the file's id: its manifest is forged or damaged and "
            "was dropped from this store",
        )

    def open_blob(
        self, blob_id: bytes, explain: Explain | None = None, size: int | None = None
    ) -> BlobReader:
        return BlobReader(self, blob_id, self.manifest(blob_id, size), explain or _same)

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

    def link_target(self, link_id: bytes, size: int | None = None) -> bytes:
        target = self.read(link_id)
        if size is not None and len(target) != size:
            raise CorruptObject(link_id.hex(), f"link target of {len(target)} bytes, not {size}")
        return target

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
    """A read-only, seekable file object over one stored file; chunks fetched on demand.

    Every chunk is verified by its own id, and each must have the length the manifest
    gives it, so a random read returns only bytes that were stored under their ids and
    lie where the manifest puts them. Only a read of the whole file can bind the manifest
    itself to the file's id: a read from the start to the end is hashed as it goes, and
    its last bytes are returned only once the whole hash matches (else the manifest is
    dropped and the read raises). A reader that seeks trusts the manifest's chunk list.
    """

    def __init__(
        self, store: ObjectStore, blob_id: bytes, manifest: Manifest, explain: Explain
    ) -> None:
        super().__init__()
        self._store = store
        self._id = blob_id
        self._explain = explain
        self._chunks = manifest.chunks
        self._starts = array.array("Q")  # 8 bytes a chunk, not an int object each
        offset = 0
        for _cid, length in self._chunks:
            self._starts.append(offset)
            offset += length
        self._size = manifest.size
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None
        # One chunk that is the file: its own hash is the file's. Else hash in order.
        single = len(self._chunks) == 1 and self._chunks[0][0] == blob_id
        self._whole: blake3.blake3 | None = None if single else blake3.blake3()
        self._hashed = 0  # bytes from the start fed to _whole

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
            chunk_id, length = self._chunks[i]
            if self._store.fetcher.active and not self._store.has(chunk_id):
                # Only this part of the file, a window at a time: a reader of a header
                # fetches the header, not the whole file.
                self._store.ensure([c for c, _ in self._chunks[i : i + FETCH_WINDOW]])
            data = self._store.read(chunk_id)
            if len(data) != length:
                raise CorruptObject(chunk_id.hex(), f"{len(data):,} bytes, not {length:,}")
            self._cached = (i, data)
        return self._starts[i], self._cached[1]

    def _hash(self, piece: bytes) -> None:
        """Feed a piece read at the hashed frontier; at the end, check the whole file."""
        assert self._whole is not None
        self._whole.update(piece)
        self._hashed += len(piece)
        if self._hashed == self._size and self._whole.digest() != self._id:
            self._store.drop(self._id)
            raise CorruptObject(
                self._id.hex(),
                "its chunks do not hash to the file's id: its manifest is forged or damaged "
                "and was dropped from this store",
            )

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self._pos >= self._size:
            return 0
        try:
            start, data = self._chunk_at(self._pos)
            piece = data[self._pos - start : self._pos - start + len(buffer)]
            if self._whole is not None and self._pos == self._hashed:
                self._hash(piece)  # before the piece is handed out: the last one waits
        except ObjectError as exc:
            raise self._explain(exc) from None
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)

    def readall(self) -> bytes:
        """Read the rest in 1 MiB steps; io's default reads 8 KiB at a time."""
        parts = []
        while chunk := self.read(1 << 20):
            parts.append(chunk)
        return b"".join(parts)


def _scratch(n: int) -> bytearray:
    """This thread's buffer of at least n bytes, for a run's stored bytes on their way to
    being decoded: reused from run to run, where a new bytes object for each read cost a
    page fault every 4 KiB."""
    buf: bytearray | None = getattr(_reader, "buf", None)
    if buf is None or len(buf) < n:
        buf = _reader.buf = bytearray(max(n, RUN_BYTES))
    return buf


def _runs(placed: Iterable[_Placed]) -> Iterator[list[_Placed]]:
    """Chunks grouped into runs that lie back to back in one pack, up to RUN_BYTES and
    RUN_CHUNKS each; a chunk not located here, or labelled a manifest, is a run of its own
    (read alone, it is fetched, or refused as the chunk-by-chunk read refuses it)."""
    run: list[_Placed] = []
    pack, end, total = "", -1, 0
    for item in placed:
        place = item[2]
        if place is None or place[1] == KIND_BLOB:
            if run:
                yield run
                run, total = [], 0
            yield [item]
            continue
        where, _kind, _codec, offset, length, raw_length = place
        span = max(length, raw_length)
        if run and (
            where != pack or offset != end or total + span > RUN_BYTES or len(run) >= RUN_CHUNKS
        ):
            yield run
            run, total = [], 0
        run.append(item)
        pack, end = where, offset + length
        total += span
    if run:
        yield run


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
