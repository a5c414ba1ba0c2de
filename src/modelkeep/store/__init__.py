"""Bytes and ids: chunks, blobs, trees, packs. Never names or versions."""

from modelkeep.store.add import PutResult, put, put_tree
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
    "put_tree",
    "restore",
    "walk_here",
]
