"""Handing objects over for a remote, as packs in the store's own format, verified first.

A local pack whose every object is wanted moves as it is (pack and index, no copy): an
`add` writes only new objects into its own packs, so a new version's objects usually fill
whole packs. The other wanted objects are read in the order they lie in the local packs
(sequential reads) and appended to staging packs in `tmp/`, each handed over once sealed,
so uploading one pack overlaps building the next.
"""

from __future__ import annotations

import shutil
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from modelkeep.errors import MissingObject
from modelkeep.store.index import Located
from modelkeep.store.objects import ObjectStore
from modelkeep.store.packs import PACK_TARGET, PackEntry, PackWriter, encode_index, read_index

VERIFIERS = 2  # local packs verified at once before they are handed over


@dataclass(frozen=True, slots=True)
class ExportedPack:
    name: str
    path: Path  # the sealed staging pack; the caller deletes it (or its folder) when done
    index: bytes  # the pack's index, in the store's format
    entries: tuple[PackEntry, ...]
    size: int
    staged: bool = True  # a copy in tmp/ (else the store's own pack, left in place)


@dataclass
class Exporter:
    """Staging packs in one folder under the store's tmp/, removed by `close`."""

    store: ObjectStore
    target: int = PACK_TARGET

    def __post_init__(self) -> None:
        self.folder = self.store.tmp_dir / f"export-{uuid.uuid4().hex}"
        self.folder.mkdir()

    def packs(self, keys: list[bytes]) -> Iterator[ExportedPack]:
        """Packs holding keys; raises MissingObject for a key that is not here."""
        located = self.store.index.locate_many(keys)
        for key in keys:
            if key not in located:
                raise MissingObject(key.hex())
        by_pack: dict[str, list[Located]] = {}
        for loc in located.values():
            by_pack.setdefault(loc.pack, []).append(loc)
        whole: list[tuple[str, list[PackEntry]]] = []
        rest: list[Located] = []
        for name, wanted in sorted(by_pack.items()):
            entries = read_index(self.store.packs_dir / f"{name}.idx")
            if len(entries) == len(wanted):  # every object of the pack: move it whole
                whole.append((name, entries))
            else:
                rest.extend(wanted)
        yield from self._whole(whole)
        yield from self._staged(rest)

    def _whole(self, packs: list[tuple[str, list[PackEntry]]]) -> Iterator[ExportedPack]:
        """Local packs handed over as they are, each once every object in it is verified
        (never upload damage): VERIFIERS packs at a time, since decoding and hashing
        release the GIL, and in order."""
        pool = ThreadPoolExecutor(VERIFIERS, thread_name_prefix="modelkeep-verify")
        ahead: deque[Future[None]] = deque()
        todo = iter(packs)
        try:
            for name, entries in packs:
                while len(ahead) <= VERIFIERS and (nxt := next(todo, None)) is not None:
                    ahead.append(pool.submit(self._verify, *nxt))
                ahead.popleft().result()
                path = self.store.packs_dir / f"{name}.pack"
                index = (self.store.packs_dir / f"{name}.idx").read_bytes()
                size = max((e.offset + e.length for e in entries), default=0)
                yield ExportedPack(name, path, index, tuple(entries), size, staged=False)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _verify(self, name: str, entries: list[PackEntry]) -> None:
        for e in entries:
            self.store.read_stored(name, e)

    def _staged(self, located: list[Located]) -> Iterator[ExportedPack]:
        order = sorted(located, key=lambda loc: (loc.pack, loc.entry.offset))
        writer: PackWriter | None = None
        try:
            for loc in order:
                if writer is None:
                    writer = PackWriter(self.folder, self.folder)
                data = self.store.read_stored(loc.pack, loc.entry)
                e = loc.entry
                writer.append([(e.key, e.kind, e.codec, data, e.raw_length)])
                if writer.size >= self.target:
                    sealed, writer = self._sealed(writer), None
                    yield sealed
            if writer is not None:
                sealed, writer = self._sealed(writer), None
                yield sealed
        finally:
            if writer is not None:
                writer.abort()

    def _sealed(self, writer: PackWriter) -> ExportedPack:
        writer.seal(durable=False)
        entries = tuple(writer.entries)
        return ExportedPack(
            writer.name,
            self.folder / f"{writer.name}.pack",
            encode_index(list(entries)),
            entries,
            writer.size,
        )

    def discard(self, pack: ExportedPack) -> None:
        if not pack.staged:
            return
        pack.path.unlink(missing_ok=True)
        pack.path.with_suffix(".idx").unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
