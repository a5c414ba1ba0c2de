"""Bytes and ids: chunks, blobs, trees, packs. Never names or versions."""

from modelkeep.store.add import PutResult, put
from modelkeep.store.fsck import FsckReport, Problem, fsck, needed_by
from modelkeep.store.gc import GcReport, gc
from modelkeep.store.objects import BlobReader, ObjectStore, Root
from modelkeep.store.restore import restore
from modelkeep.store.trees import Kind

__all__ = [
    "BlobReader",
    "FsckReport",
    "GcReport",
    "Kind",
    "ObjectStore",
    "Problem",
    "PutResult",
    "Root",
    "fsck",
    "gc",
    "needed_by",
    "put",
    "restore",
]
