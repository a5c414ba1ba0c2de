"""Restoring a root to a path: exact bytes, executable bits and links, or nothing at all.

Everything is written under a temporary sibling of the destination and renamed into place
at the end, so a failure (a damaged chunk, a full disk, a file whose bytes do not hash to
its id, a size that disagrees with its tree) leaves the destination as it was and nothing
else behind.
Entry names were checked when the tree was parsed, and files are created with O_EXCL and
O_NOFOLLOW, so a restore never writes outside its destination.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from modelkeep.errors import DestinationExists
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.store.objects import ObjectStore, Root, remove_tree
from modelkeep.store.packs import write_all
from modelkeep.store.trees import Kind

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


def _write_file(
    store: ObjectStore, blob_id: bytes, path: bytes, mode: int, size: int, progress: Progress
) -> None:
    fd = os.open(path, _CREATE, mode)  # the kernel applies the umask, as for any new file
    try:
        if size > 1 << 20:
            with contextlib.suppress(OSError):  # allocating up front makes writes cheaper
                os.posix_fallocate(fd, 0, size)
        for data in store.iter_blob(blob_id, size):  # runs of a few MiB: one write each
            write_all(fd, [data])
            progress.advance(len(data))
    finally:
        os.close(fd)


def _write(
    store: ObjectStore, root: Root, path: bytes, mode: int, size: int, progress: Progress
) -> None:
    if root.kind == Kind.FILE:
        _write_file(store, root.id, path, mode or 0o644, size, progress)
    elif root.kind == Kind.LINK:
        os.symlink(store.link_target(root.id, size), path)
    else:
        os.mkdir(path, 0o755)
        for e in store.tree(root.id, size).entries:
            _write(store, Root(e.kind, e.id), os.path.join(path, e.name), e.mode, e.size, progress)


def restore(
    store: ObjectStore,
    root: Root,
    dest: Path,
    *,
    size: int,
    mode: int = 0o644,
    force: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> None:
    if os.path.lexists(dest) and not force:
        raise DestinationExists(str(dest))
    store.prefetch(root)  # what is on a remote only, in a few batches rather than one by one
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.modelkeep-{uuid.uuid4().hex[:12]}"
    progress.start(size, "restoring")
    try:
        _write(store, root, os.fsencode(tmp), mode, size, progress)
        if os.path.lexists(dest):
            old = dest.parent / f".{dest.name}.modelkeep-old-{uuid.uuid4().hex[:12]}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            remove_tree(old)
        else:
            os.rename(tmp, dest)
    except BaseException:
        if os.path.lexists(tmp):
            remove_tree(tmp)
        raise
    finally:
        progress.finish()
