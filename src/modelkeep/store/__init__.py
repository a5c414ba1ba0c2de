"""Bytes and ids: chunks, blobs, trees, packs. Never names or versions.

Imported on first use (PEP 562): a command that only lists metadata, or reads the store's
binding, does not import chunking, compression and the pack writer with it. `fsck`, `gc`
and `restore` name submodules too; the names stay the functions (`lazy.package`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelkeep import lazy

if TYPE_CHECKING:
    from modelkeep.store.add import PutResult, put, put_tree
    from modelkeep.store.fsck import FsckReport, Problem, fsck, needed_by
    from modelkeep.store.gc import GcReport, gc, walk_here
    from modelkeep.store.objects import NULL_FETCHER, BlobReader, Fetcher, ObjectStore, Root
    from modelkeep.store.prune import PruneReport
    from modelkeep.store.restore import restore
    from modelkeep.store.trees import Kind

_WHERE: dict[str, str] = {  # name -> the module of modelkeep.store that defines it
    "NULL_FETCHER": "objects",
    "BlobReader": "objects",
    "Fetcher": "objects",
    "FsckReport": "fsck",
    "GcReport": "gc",
    "Kind": "trees",
    "ObjectStore": "objects",
    "Problem": "fsck",
    "PruneReport": "prune",
    "PutResult": "add",
    "Root": "objects",
    "needed_by": "fsck",
    "put": "add",
    "put_tree": "add",
    "walk_here": "gc",
    "fsck": "fsck",
    "gc": "gc",
    "restore": "restore",
}
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
    "put_tree",
    "restore",
    "walk_here",
]


lazy.package(__name__, {name: (module, name) for name, module in _WHERE.items()})
