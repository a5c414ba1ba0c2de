"""Bytes and ids: chunks, blobs, trees, packs. Never names or versions.

Names are imported on first use, so reading one pack does not pay for adding, checking
or collecting garbage.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelkeep.store.add import PutResult, put
    from modelkeep.store.fsck import FsckReport, Problem, fsck, needed_by
    from modelkeep.store.gc import GcReport, gc, walk_here
    from modelkeep.store.objects import NULL_FETCHER, BlobReader, Fetcher, ObjectStore, Root
    from modelkeep.store.prune import PruneReport
    from modelkeep.store.restore import restore
    from modelkeep.store.trees import Kind

__all__ = [
    "NULL_FETCHER",
    "BlobReader",
    "Fetcher",
    "FsckReport",
    "GcReport",
    "Kind",
    "ObjectStore",
    "Problem",
    "PruneReport",
    "PutResult",
    "Root",
    "fsck",
    "gc",
    "needed_by",
    "put",
    "restore",
    "walk_here",
]

_WHERE = {
    "PutResult": "add",
    "put": "add",
    "FsckReport": "fsck",
    "Problem": "fsck",
    "fsck": "fsck",
    "needed_by": "fsck",
    "GcReport": "gc",
    "gc": "gc",
    "walk_here": "gc",
    "NULL_FETCHER": "objects",
    "BlobReader": "objects",
    "Fetcher": "objects",
    "ObjectStore": "objects",
    "Root": "objects",
    "PruneReport": "prune",
    "restore": "restore",
    "Kind": "trees",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
