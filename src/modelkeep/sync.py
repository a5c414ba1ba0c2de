"""Push, pull and cache prune: the store's objects to and from a remote, composed here.

A remote holds immutable packs and their indexes (the store's own format). What a remote
holds is learnt from its indexes, cached locally per remote URL: the remote only grows,
so a refresh lists it and downloads only the indexes not seen before.

Push uploads the objects the versions need that the remote lacks, in new packs (never
one request per chunk), several at a time; each pack's index goes up after the pack, so
an interrupted push leaves only complete packs visible and a second push uploads the
rest. A version is recorded as pushed (in the shared metadata) only once all its
objects are on the remote.

Fetching reads only the objects asked for, with range requests (neighbours coalesced),
verifies each against its id, and only then stores it here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep import config, content, meta
from modelkeep.errors import (
    CorruptObject,
    CorruptRemoteIndex,
    CorruptRemoteObject,
    MissingObject,
    ModelkeepError,
    RemoteAccessDenied,
    RemoteError,
    RemoteNotFound,
    RemoteSkipped,
    RemoteUnavailable,
)
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.remotes import Remote
from modelkeep.store import Kind, ObjectStore, Root
from modelkeep.store.chunking import digest
from modelkeep.store.export import ExportedPack, Exporter
from modelkeep.store.index import Index, Located
from modelkeep.store.packs import (
    KIND_BLOB,
    KIND_CHUNK,
    PACK_TARGET,
    CorruptIndex,
    PackEntry,
    decode_index,
)
from modelkeep.store.prune import PruneReport, RemoteCopies
from modelkeep.store.prune import prune as prune_store

if TYPE_CHECKING:
    from modelkeep.meta import Version
    from modelkeep.parts import Parts

REMOTE_PACK_TARGET = PACK_TARGET
TRANSFERS = 4  # packs uploaded, or indexes downloaded, at once
GAP = 64 * 1024  # neighbouring objects closer than this are read in one range request
MAX_RANGE = 16 * 1024 * 1024
FETCH_ROUND = 64 * 1024 * 1024  # bytes fetched and verified before they are stored
VERIFIERS = 2  # ranges of a round verified at once


@dataclass(frozen=True, slots=True)
class PushResult:
    remote: str
    versions: tuple[str, ...]  # refs now recorded as on the remote
    objects: int  # objects uploaded
    bytes: int  # bytes uploaded: packs and their indexes
    packs: int

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "versions": list(self.versions),
            "objects": self.objects,
            "bytes": self.bytes,
            "packs": self.packs,
        }


@dataclass(frozen=True, slots=True)
class PullResult:
    remote: str
    versions: tuple[str, ...]
    objects: int  # objects fetched
    bytes: int  # bytes downloaded: ranges of packs, and new indexes
    imported: tuple[str, ...] = ()  # versions whose records came from the remote
    renumbered: tuple[tuple[str, str], ...] = ()  # this store's unpushed (was, now)

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "versions": list(self.versions),
            "objects": self.objects,
            "bytes": self.bytes,
            "imported": list(self.imported),
            "renumbered": [{"was": a, "now": b} for a, b in self.renumbered],
        }


def remote_config(settings: config.Settings, name: str | None) -> config.RemoteConfig:
    found = settings.remote(name)
    if found is None:
        raise RemoteNotFound(name, [r.name for r in settings.remotes])
    return found


def open_remote(cfg: config.RemoteConfig) -> Remote:
    return Remote(cfg.url, dict(cfg.options))


# -- what a remote holds ----------------------------------------------------------------


class RemoteIndex:
    """A remote's pack indexes, cached in a local SQLite index like the store's own."""

    def __init__(self, remote: Remote, cache_dir: Path) -> None:
        self.remote = remote
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.index = Index(cache_dir / f"{digest(remote.url.encode()).hex()[:24]}.sqlite")

    def close(self) -> None:
        self.index.close()

    def refresh(self) -> None:
        """List the remote; forget packs gone from it, read the indexes of new ones.

        A malformed index (garbage, truncated, a pack shorter than it says, gone between
        the listing and the read) is skipped with a warning naming it: its objects are
        simply not on this remote, and every other pack stays usable. It is read again
        on the next refresh, so a repaired one is picked up.
        """
        listing = self.remote.list_packs()
        cached = self.index.pack_sizes()
        gone = [name for name, size in cached.items() if listing.get(name) != size]
        if gone:  # a key a gone pack held first may be in a kept one: index them all again
            gone = list(cached)
        if gone:
            self.index.drop_packs(gone)
        new = sorted(name for name in listing if name not in cached or name in gone)
        with ThreadPoolExecutor(TRANSFERS, thread_name_prefix="modelkeep-index") as pool:
            for name, data in zip(new, pool.map(self._read_index, new), strict=True):
                if isinstance(data, RemoteError):
                    _skip(data)
                    continue
                try:
                    entries = decode_index(data)
                except CorruptIndex as exc:
                    _skip(CorruptRemoteIndex(self.remote.url, name, str(exc)))
                    continue
                if any(e.offset + e.length > listing[name] for e in entries):
                    _skip(
                        CorruptRemoteIndex(
                            self.remote.url, name, "its pack is shorter than the index says"
                        )
                    )
                    continue
                self.index.add_pack(name, listing[name], entries)

    def _read_index(self, name: str) -> bytes | RemoteError:
        """An index's bytes, or why this one index cannot be read (the remote itself being
        unreachable or refusing access still fails the command)."""
        try:
            return self.remote.read_index(name)
        except (RemoteUnavailable, RemoteAccessDenied):
            raise
        except RemoteError as exc:
            return exc

    def known(self, keys: list[bytes]) -> set[bytes]:
        return self.index.known(keys)

    def locate_many(self, keys: list[bytes]) -> dict[bytes, Located]:
        return self.index.locate_many(keys)


def _skip(problem: RemoteError) -> None:
    warnings.warn(f"skipped: {problem}", RemoteSkipped, stacklevel=3)


def cache_dir(settings: config.Settings) -> Path:
    return settings.control_dir / "remotes"


# -- push -------------------------------------------------------------------------------


def push(
    parts: Parts,
    versions: list[Version] | None,
    remote_name: str | None,
    progress: Progress = NULL_PROGRESS,
    publish: Callable[[Remote, list[Version]], None] | None = None,
) -> PushResult:
    """Upload what the remote lacks for versions (None: every version whose content is
    here and that was not pushed to it yet), then record them as pushed; publish (the
    version records, see sharing.py) runs between the two, once the packs are up."""
    cfg = remote_config(parts.settings, remote_name)
    remote = open_remote(cfg)
    store = parts.store
    if versions is None:
        done = meta.pushed(parts.db, remote.url)
        versions = [
            v
            for v in meta.all_versions(parts.db)
            if (v.name, v.number) not in done and store.has(content.root_of(v).id)
        ]
    rindex = RemoteIndex(remote, cache_dir(parts.settings))
    try:
        with store.writing(), store.offline():
            need: dict[bytes, None] = {}
            for v in versions:
                with content.explained(parts, v):
                    need.update(dict.fromkeys(store.closure(content.root_of(v))))
            rindex.refresh()
            keys = list(need)
            on_remote = rindex.known(keys)
            missing = [k for k in keys if k not in on_remote]
            objects, packs = _upload(store, remote, rindex, missing, progress)
    finally:
        rindex.close()
    if publish is not None:
        publish(remote, versions)
    refs_done = [(v.name, v.number) for v in versions]
    meta.mark_pushed(parts.db, refs_done, remote.url, parts.settings.host)
    return PushResult(remote.url, tuple(v.ref for v in versions), objects, remote.bytes_sent, packs)


def publish_objects(parts: Parts, cfg: config.RemoteConfig, keys: list[bytes]) -> int:
    """Upload these objects (which the remote is known to lack) to a remote, in packs;
    what `modelkeep serve` does with an upload when a default remote holds its objects.
    Returns the number of packs published."""
    remote = open_remote(cfg)
    rindex = RemoteIndex(remote, cache_dir(parts.settings))
    try:
        with parts.store.offline():
            return _upload(parts.store, remote, rindex, keys, NULL_PROGRESS)[1]
    finally:
        rindex.close()


def _upload(
    store: ObjectStore,
    remote: Remote,
    rindex: RemoteIndex,
    keys: list[bytes],
    progress: Progress,
) -> tuple[int, int]:
    """Pack keys into new packs and publish them, TRANSFERS at a time: (objects, packs)."""
    if not keys:
        return 0, 0
    total = sum(loc.entry.length for loc in store.index.locate_many(keys).values())
    exporter = Exporter(store, REMOTE_PACK_TARGET)

    def send(pack: ExportedPack) -> ExportedPack:
        remote.publish(pack.name, pack.path, pack.index)
        exporter.discard(pack)
        return pack

    def done(future: Future[ExportedPack]) -> None:
        """On the calling thread: SQLite connections and progress bars are not shared."""
        pack = future.result()
        rindex.index.add_pack(pack.name, pack.size, pack.entries)
        sent.append(pack)
        progress.advance(pack.size)

    pool = ThreadPoolExecutor(TRANSFERS, thread_name_prefix="modelkeep-upload")
    sent: list[ExportedPack] = []
    progress.start(total, "pushing")
    try:
        inflight: deque[Future[ExportedPack]] = deque()
        for pack in exporter.packs(keys):
            inflight.append(pool.submit(send, pack))
            while len(inflight) > TRANSFERS:  # bound the staging packs on disk
                done(inflight.popleft())
        while inflight:
            done(inflight.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        exporter.close()
        progress.finish()
    return sum(len(p.entries) for p in sent), len(sent)


# -- fetch and pull ---------------------------------------------------------------------


class RemoteFetcher:
    """The store's fetcher for one remote: verified objects, by range requests."""

    active = True

    def __init__(
        self, store: ObjectStore, cfg: config.RemoteConfig, cache: Path, progress: Progress
    ) -> None:
        self.store = store
        self.cfg = cfg
        self._cache = cache
        self.progress = progress
        self._remote: Remote | None = None
        self._rindex: RemoteIndex | None = None
        self._listed = False  # the remote is listed once per fetcher: packs may be gone
        self.objects = 0
        self.manifests: set[bytes] = set()  # file ids whose manifest this fetcher brought

    @property
    def remote(self) -> Remote:
        if self._remote is None:
            self._remote = open_remote(self.cfg)
        return self._remote

    def _index(self) -> RemoteIndex:
        if self._rindex is None:
            self._rindex = RemoteIndex(self.remote, self._cache)
        return self._rindex

    def close(self) -> None:
        if self._rindex is not None:
            self._rindex.close()
            self._rindex = None

    def fetch(self, keys: list[bytes]) -> None:
        rindex = self._index()
        located = rindex.locate_many(keys)
        if len(located) < len(keys) or not self._listed:
            located = self._relist(keys)
        try:
            self._fetch_located(keys, located)
        except RemoteError as exc:
            if type(exc) is not RemoteError:  # unreachable, denied: not a pack gone
                raise
            # A pack listed before is gone (a forged one removed, say): list again, and
            # fetch what is still missing from the packs that are there.
            keys = [k for k in keys if not self.store.has(k)]
            self._fetch_located(keys, self._relist(keys))

    def _relist(self, keys: list[bytes]) -> dict[bytes, Located]:
        rindex = self._index()
        rindex.refresh()
        self._listed = True
        return rindex.locate_many(keys)

    def _fetch_located(self, keys: list[bytes], located: dict[bytes, Located]) -> None:
        absent = [k for k in keys if k not in located]
        if absent:
            raise MissingObject(absent[0].hex())
        for loc in located.values():  # before any range is read: a lying index allocates nothing
            try:
                self.store.check_lengths(loc.entry)
            except CorruptObject as exc:
                raise CorruptRemoteObject(loc.entry.key.hex(), self.remote.url, exc.where) from None
        for batch in fetch_rounds(group_ranges(list(located.values()))):
            self._fetch_round(batch)

    def _fetch_round(self, ranges: list[Range]) -> None:
        datas = self.remote.read_ranges([(r.pack, r.start, r.end) for r in ranges])
        items = store_ranges(self.store, ranges, datas, self.remote.url)
        self.objects += len(items)
        self.manifests.update(e.key for e, _ in items if e.kind == KIND_BLOB)
        self.progress.advance(sum(len(d) for d in datas))


def store_ranges(
    store: ObjectStore, ranges: list[Range], datas: list[bytes], source: str
) -> list[tuple[PackEntry, bytes]]:
    """Keep the objects read from ranges of another place's packs, each verified against
    its id first (VERIFIERS ranges at a time: decoding and hashing release the GIL); one
    that does not match is CorruptRemoteObject and nothing is kept."""

    def verified(pair: tuple[Range, bytes]) -> list[tuple[PackEntry, bytes]]:
        r, data = pair
        items = []
        for e in r.entries:
            piece = data[e.offset - r.start : e.offset - r.start + e.length]
            where = f"{r.pack}.pack offset {e.offset}"
            if len(piece) != e.length:
                raise CorruptRemoteObject(e.key.hex(), source, f"{where}: truncated")
            try:
                store.verify(e, piece, where)
            except CorruptObject as exc:
                raise CorruptRemoteObject(e.key.hex(), source, exc.where) from None
            items.append((e, piece))
        return items

    with ThreadPoolExecutor(VERIFIERS, thread_name_prefix="modelkeep-verify") as pool:
        pairs = list(zip(ranges, datas, strict=True))
        items = [item for part in pool.map(verified, pairs) for item in part]
    with store.writing():
        store.add_stored(items)
    return items


@dataclass(slots=True)
class Range:
    pack: str
    start: int
    end: int
    entries: list[PackEntry]


def group_ranges(located: list[Located]) -> list[Range]:
    """Objects grouped into range requests: neighbours in a pack are read together."""
    out: list[Range] = []
    for loc in sorted(located, key=lambda loc: (loc.pack, loc.entry.offset)):
        e = loc.entry
        last = out[-1] if out else None
        if (
            last is not None
            and last.pack == loc.pack
            and e.offset - last.end <= GAP
            and e.offset + e.length - last.start <= MAX_RANGE
        ):
            last.end = max(last.end, e.offset + e.length)
            last.entries.append(e)
        else:
            out.append(Range(loc.pack, e.offset, e.offset + e.length, [e]))
    return out


def fetch_rounds(ranges: list[Range]) -> Iterator[list[Range]]:
    batch: list[Range] = []
    size = 0
    for r in ranges:
        batch.append(r)
        size += r.end - r.start
        if size >= FETCH_ROUND:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def pull(
    parts: Parts,
    versions: list[Version],
    remote_name: str | None,
    progress: Progress = NULL_PROGRESS,
    digests: Sequence[str] = (),
) -> PullResult:
    """Fetch (verified) what versions need and this store lacks; digests are full content
    ids no version here records (a lock file from another clone), fetched by id alone."""
    cfg = remote_config(parts.settings, remote_name)
    fetcher = RemoteFetcher(parts.store, cfg, cache_dir(parts.settings), progress)
    progress.start(None, "pulling")
    try:
        with parts.store.fetching(fetcher):
            with contextlib.suppress(ModelkeepError):  # the pass below names what failed
                parts.store.prefetch(*(content.root_of(v) for v in versions))
            for v in versions:
                root = content.root_of(v)
                with content.explained(parts, v):
                    parts.store.prefetch(root)  # nothing left to fetch, unless the batch failed
                    _check_fetched_files(parts.store, root, v.size, fetcher.manifests)
            for digest in digests:
                found = content.unrecorded(parts, digest, "content")
                root = Root(found.kind, found.id)
                with content.explained(parts):
                    parts.store.prefetch(root)
                    _check_fetched_files(parts.store, root, found.size, fetcher.manifests)
    finally:
        progress.finish()
        fetcher.close()
    received = fetcher.remote.bytes_received if fetcher.objects else 0
    refs = (*(v.ref for v in versions), *digests)
    return PullResult(fetcher.cfg.url, refs, fetcher.objects, received)


def _check_fetched_files(store: ObjectStore, root: Root, size: int, fetched: set[bytes]) -> None:
    """Hash whole every file of root whose manifest was just fetched: a manifest's own
    checksum does not bind it to its file, so it is kept only once the file's bytes hash to
    the file's id (a forged one is dropped and named)."""
    if not fetched:
        return
    files = [(root.id, size)] if root.kind == Kind.FILE else []
    files += [(oid, n) for _path, kind, _mode, n, oid in store.walk(root) if kind == Kind.FILE]
    for oid, n in files:
        if oid in fetched:
            for _ in store.iter_blob(oid, n):
                pass


# -- cache prune ------------------------------------------------------------------------


def prune_cache(parts: Parts, max_size: int, *, dry_run: bool = False) -> PruneReport:
    """Drop local chunks that a remote confirms it holds (listed afresh), LRU first."""
    if not parts.settings.remotes:
        raise RemoteNotFound(None)
    indexes = [
        RemoteIndex(open_remote(cfg), cache_dir(parts.settings)) for cfg in parts.settings.remotes
    ]
    try:
        for rindex in indexes:
            rindex.refresh()

        def on_remote(keys: list[bytes]) -> RemoteCopies:
            return verified_on_remotes(parts.store, indexes, keys)

        with parts.store.exclusive(), parts.store.offline():
            return prune_store(parts.store, max_size, on_remote, dry_run=dry_run)
    finally:
        for rindex in indexes:
            rindex.close()


def verified_on_remotes(
    store: ObjectStore, indexes: list[RemoteIndex], keys: list[bytes]
) -> RemoteCopies:
    """Which chunks of keys a remote really holds: each is read back (range requests, as a
    fetch does) and hashed against its id; nothing is stored. A remote's index only says
    what it claims, and cache prune must never drop the last good copy on its word."""
    verified: set[bytes] = set()
    damaged: list[str] = []
    for rindex in indexes:
        wanted = [k for k in keys if k not in verified]
        if not wanted:
            break
        located = [
            loc for loc in rindex.locate_many(wanted).values() if loc.entry.kind == KIND_CHUNK
        ]
        for batch in fetch_rounds(group_ranges(located)):
            try:
                datas = rindex.remote.read_ranges([(r.pack, r.start, r.end) for r in batch])
            except (RemoteUnavailable, RemoteAccessDenied):
                raise
            except RemoteError as exc:  # a pack gone since the listing: nothing verified
                damaged.append(exc.problem)
                continue
            for r, data in zip(batch, datas, strict=True):
                for e in r.entries:
                    piece = data[e.offset - r.start : e.offset - r.start + e.length]
                    where = f"{rindex.remote.url} {r.pack}.pack offset {e.offset}"
                    try:
                        if len(piece) != e.length:
                            raise CorruptObject(e.key.hex(), f"{where}: truncated")
                        store.verify(e, piece, where)
                    except CorruptObject:
                        damaged.append(where)
                        continue
                    verified.add(e.key)
    return RemoteCopies(verified, tuple(damaged))


def known_on_remotes(
    settings: config.Settings, keys: list[bytes], *, refresh: bool = False
) -> set[bytes]:
    """Which of keys the configured remotes' indexes hold: the cached ones, and with
    refresh, listed afresh for keys the cache lacks (a machine that never pulled). A
    remote that cannot be listed is named in a warning; its objects count as absent."""
    found: set[bytes] = set()
    for cfg in settings.remotes:
        with contextlib.suppress(ModelkeepError):  # a URL edited by hand into nonsense
            rindex = RemoteIndex(open_remote(cfg), cache_dir(settings))
            try:
                found |= rindex.known(keys)
                if refresh and len(found) < len(set(keys)):
                    try:
                        rindex.refresh()
                    except RemoteError as exc:
                        _skip(exc)
                    found |= rindex.known(keys)
            finally:
                rindex.close()
    return found
