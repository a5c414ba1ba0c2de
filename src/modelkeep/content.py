"""A version's content: adding it, finding it in the store, restoring it, explaining what
is missing. The one place that joins a version row to the objects it names; below `Repo`,
on `Parts`, so sync, the work tree, model packaging and runs share it."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from modelkeep import checkouts, meta, ownership, store
from modelkeep.errors import (
    ControlPath,
    DigestNotFound,
    InvalidArgument,
    MissingObject,
    MissingObjects,
    ModelkeepError,
    NotPushed,
    ObjectError,
    PathNotFound,
    PushedElsewhere,
    TypeMismatch,
)
from modelkeep.formats.spec import MODEL_KEY
from modelkeep.lockfile import control_folder
from modelkeep.meta import NewVersion, Version
from modelkeep.meta.records import check_paths
from modelkeep.parts import Parts
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.refs import content_bytes, content_hex, content_id, validate_name
from modelkeep.results import AddResult
from modelkeep.store import Kind, Root
from modelkeep.store.diff import root_entry
from modelkeep.store.packs import KIND_TREE
from modelkeep.store.trees import TreeEntry

KIND_NAMES = {Kind.FILE: "file", Kind.DIR: "dir", Kind.LINK: "link"}
_KINDS = {v: k for k, v in KIND_NAMES.items()}


def root_of(version: Version) -> Root:
    """The object a version points at."""
    return Root(_KINDS[version.kind], content_bytes(version.digest))


def roots(db: meta.Database) -> dict[str, Root]:
    """Every live version's root, by ref."""
    return {v.ref: root_of(v) for v in meta.all_versions(db)}


# -- adding ----------------------------------------------------------------------------


def add(
    parts: Parts,
    source: Path,
    name: str,
    *,
    type: str | None,
    message: str,
    metadata: Mapping[str, Any] | None,
    run_id: str | None,
    progress: Progress = NULL_PROGRESS,
    model_spec: Mapping[str, Any] | None = None,
) -> AddResult:
    """Store source (made absolute by `addable`) as the next version of name, unless it
    equals the latest. model_spec is log_model's alone: it says how to load the model."""
    validate_name(name)
    _check_type(parts, name, type)  # before any byte is stored
    fields = _fields(metadata, model_spec)
    ownership.require_own(parts.store, parts.db)  # never mix two databases' objects
    with parts.store.writing():
        exclude = placed(parts.settings.control_dir)
        put = store.put(parts.store, source, progress, exclude=exclude)
        sizes = (put.size, put.file_count, put.mode)
        added = _record(parts, name, type, put.root, sizes, source.name, message, fields, run_id)
    return AddResult(
        added.version,
        added.created,
        new_bytes=put.new_bytes,
        reused_bytes=max(put.size - put.new_bytes, 0),
        stored_bytes=put.stored_bytes,
        same_as=added.same_as,
    )


def commit(
    parts: Parts,
    name: str,
    digest: str,
    kind: str,
    *,
    source_name: str,
    type: str | None,
    message: str,
    metadata: Mapping[str, Any] | None,
    run_id: str | None,
    model_spec: Mapping[str, Any] | None = None,
) -> AddResult:
    """Record content a client uploaded (`modelkeep serve`) as the next version of name.

    Nothing the client says about the content is believed: every object it needs must be
    in the store (else MissingObjects naming them), every file is read back against its id
    (a forged manifest fails here, not on a later reader), and size, file count and mode
    come from the stored objects."""
    validate_name(name)
    hexid = content_hex(digest)
    if kind not in _KINDS or len(hexid) != 64:
        raise InvalidArgument(f"commit needs a full content id and a kind ({', '.join(_KINDS)})")
    root = Root(_KINDS[kind], content_bytes(digest))
    missing = _missing(parts, root)
    if missing:
        raise MissingObjects(content_id(root.id), missing)
    ownership.require_own(parts.store, parts.db)
    with explained(parts):
        size, count, mode = _checked(parts, root)
    _check_type(parts, name, type)
    fields = _fields(metadata, model_spec)
    added = _record(
        parts, name, type, root, (size, count, mode), source_name, message, fields, run_id
    )
    return AddResult(added.version, added.created, 0, size, 0, same_as=added.same_as)


def _record(
    parts: Parts,
    name: str,
    type: str | None,
    root: Root,
    sizes: tuple[int, int, int],
    source_name: str,
    message: str,
    fields: dict[str, Any],
    run_id: str | None,
) -> meta.Added:
    """The version row for stored content: sizes are (size, file count, mode)."""
    new = NewVersion(
        kind=KIND_NAMES[root.kind],
        digest=root.id.hex(),
        size=sizes[0],
        file_count=sizes[1],
        mode=sizes[2],
        source_name=source_name or "root",
        user=parts.user,
        message=message,
        metadata=fields,
        run_id=run_id,
        host=parts.settings.host,
        store_id=parts.store_id,
    )
    return meta.existing(parts.db, name, new) or meta.add_version(parts.db, name, type, new)


# -- run attachments: a file's content, with no version naming it ---------------------------


def put_file(parts: Parts, path: str | os.PathLike[str]) -> tuple[str, int]:
    """Store one regular file (a symlink is followed) for a run attachment: (its content id
    in hex, its size). Caller holds `parts.store.writing()` until the row is written, so gc
    never sees the content without the row that keeps it."""
    if not os.path.lexists(path):
        raise PathNotFound(str(path))
    real = Path(os.path.realpath(path))
    if not real.is_file():
        raise InvalidArgument(
            f"{os.fspath(path)!r} is not a file; attach files one by one, or add a folder "
            "as a version with `modelkeep add`"
        )
    source = addable(parts, real)
    ownership.require_own(parts.store, parts.db)
    put = store.put(parts.store, source, exclude=placed(parts.settings.control_dir))
    return put.root.id.hex(), put.size


def put_received(parts: Parts, path: Path) -> tuple[str, int]:
    """Store a file the server received into the store's own temp folder (MLflow's
    artifact proxy), which `put_file` refuses as modelkeep's own data: (content id, size).
    Caller holds `parts.store.writing()` until the row that keeps it is written."""
    ownership.require_own(parts.store, parts.db)
    put = store.put(parts.store, path)
    return put.root.id.hex(), put.size


def stored_file_size(parts: Parts, digest: str) -> int:
    """The size of a file a client uploaded for an attachment, read back against its id:
    nothing the client says about it is believed (as `commit` does for a version)."""
    hexid = content_hex(digest)
    if len(hexid) != 64:
        raise InvalidArgument(f"an attachment needs a full content id, not {digest!r}")
    root = Root(Kind.FILE, bytes.fromhex(hexid))
    if _is_tree(parts, root.id):
        raise InvalidArgument(f"{content_id(root.id)} is a folder's content, not a file's")
    missing = _missing(parts, root)
    if missing:
        raise MissingObjects(content_id(root.id), missing)
    with explained(parts):
        return _checked(parts, root)[0]


def _is_tree(parts: Parts, oid: bytes) -> bool:
    located = parts.store.index.locate(oid)
    return located is not None and located.entry.kind == KIND_TREE


def _check_type(parts: Parts, name: str, type: str | None) -> None:
    if type is not None:
        meta.check_type(type)
        existing = meta.artifact_type(parts.db, name)
        if existing is not None and existing != type:
            raise TypeMismatch(name, existing, type)


def _fields(
    metadata: Mapping[str, Any] | None, model_spec: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A version's metadata; model_spec is log_model's alone: it says how to load the model."""
    fields = dict(metadata or {})
    if MODEL_KEY in fields:  # load_model trusts it to say how to load: log_model's alone
        raise InvalidArgument(f"metadata key {MODEL_KEY!r} is modelkeep's own; use another")
    if model_spec is not None:
        fields[MODEL_KEY] = dict(model_spec)
    try:
        json.dumps(fields)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"metadata must be JSON values (numbers, text, lists): {exc}"
        ) from exc
    return fields


def _missing(parts: Parts, root: Root) -> list[str]:
    """Ids of the objects root needs that the store does not hold (nor can fetch)."""
    out: list[str] = []
    pending = [root]
    while pending:
        item = pending.pop()
        if not parts.store.has(item.id):
            with contextlib.suppress(MissingObject):
                parts.store.ensure([item.id])
        if not parts.store.has(item.id):
            out.append(item.id.hex())
            continue
        if item.kind == Kind.DIR:
            pending.extend(Root(e.kind, e.id) for e in parts.store.tree(item.id).entries)
        elif item.kind == Kind.FILE:
            chunks = [c for c, _ in parts.store.manifest(item.id).chunks if c != item.id]
            absent = [c for c in chunks if not parts.store.has(c)]
            if absent:
                with contextlib.suppress(MissingObject):
                    parts.store.ensure(absent)
            out.extend(c.hex() for c in absent if not parts.store.has(c))
    return out


def _checked(parts: Parts, root: Root) -> tuple[int, int, int]:
    """(size, file count, mode) of a stored root, every file read back against its id."""
    if root.kind == Kind.LINK:
        return len(parts.store.link_target(root.id)), 1, 0o777
    if root.kind == Kind.FILE:
        size = sum(len(b) for b in parts.store.iter_blob(root.id))
        return size, 1, 0o644
    size = count = 0
    for _path, kind, _mode, entry_size, oid in parts.store.walk(root):
        if kind == Kind.FILE:
            read = sum(len(b) for b in parts.store.iter_blob(oid, entry_size))
            size, count = size + read, count + 1
        elif kind == Kind.LINK:
            size, count = size + len(parts.store.link_target(oid, entry_size)), count + 1
    return size, count, 0


def addable(parts: Parts, path: str | os.PathLike[str]) -> Path:
    """The path add stores: absolute, '..' and symlinked folders resolved (a final
    symlink is stored as itself). Refused (ControlPath) when it, or what it leads to, is
    the control folder or inside it, or inside any '.git' or '.modelkeep' folder, so the
    store never stores itself and Git's or modelkeep's files are never versioned."""
    if not os.path.lexists(path):
        raise PathNotFound(str(path))
    where = placed(Path(path))
    real = Path(os.path.realpath(where))
    control = Path(os.path.realpath(parts.settings.control_dir))
    if real == control or control in real.parents:
        raise ControlPath(str(path), str(parts.settings.control_dir))
    for candidate in (where, real):
        folder = control_folder(list(candidate.parts))
        if folder is not None:
            inside = candidate.parts[: candidate.parts.index(folder) + 1]
            raise ControlPath(str(path), str(Path(*inside)))
    return where


def placed(path: Path) -> Path:
    """path absolute, its folders' symlinks and '..' resolved as the system does (a '..'
    after a symlink leaves the link's target); a final symlink is kept as itself."""
    absolute = path.absolute()  # drops '.' segments, keeps '..'
    if absolute.name == "..":
        return Path(os.path.realpath(absolute))
    return Path(os.path.realpath(absolute.parent)) / absolute.name


def digest_of(parts: Parts, path: str | os.PathLike[str]) -> tuple[str, int]:
    """The content id a path would get if added, and its mode; stores nothing."""
    source = Path(path)
    if not os.path.lexists(source):
        raise PathNotFound(str(path))
    put = store.put(parts.store, source, exclude=parts.settings.control_dir, dry=True)
    return content_id(put.root.id), put.mode


def holds(parts: Parts, digest: str) -> bool:
    """Whether the content can be restored here: a version records it, or its full id names
    an object the store has or can fetch from the default remote (a lock file committed on
    another machine, in a clone that never added it)."""
    try:
        meta.resolve(parts.db, digest)
    except DigestNotFound:
        if len(content_hex(digest)) != 64:
            return False
    root = content_bytes(digest)
    if not parts.store.has(root):
        with contextlib.suppress(MissingObject):  # on no remote either
            parts.store.ensure([root])
    return parts.store.has(root)


def unrecorded(parts: Parts, digest: str, name: str) -> TreeEntry:
    """The entry a full content id names when no version here records it: its object, from
    the store or fetched from the default remote. Whether it is a folder or a file comes
    from the object found, and restoring checks it against the id either way (a folder's
    listing hashes to it, or the file's bytes do); a file comes back with mode 0644."""
    hexid = content_hex(digest)
    if len(hexid) != 64:
        raise DigestNotFound(hexid)
    oid = bytes.fromhex(hexid)
    if not parts.store.has(oid):
        with contextlib.suppress(MissingObject):
            parts.store.ensure([oid])
    located = parts.store.index.locate(oid)
    if located is None:
        raise DigestNotFound(hexid)
    if located.entry.kind == KIND_TREE:
        size = sum(e.size for e in parts.store.tree(oid).entries)
        return TreeEntry(os.fsencode(name), Kind.DIR, 0, size, oid)
    return TreeEntry(os.fsencode(name), Kind.FILE, 0o644, parts.store.manifest(oid).size, oid)


def restore_content(
    parts: Parts,
    digest: str,
    target: Path,
    *,
    force: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Path:
    """Restore the content a content id names to target: through the version that records
    it, else (a full id, in a clone that never added it) from the object itself."""
    try:
        version = meta.resolve(parts.db, digest)
    except DigestNotFound:
        found = unrecorded(parts, digest, target.name)
        target = target.absolute()
        restore_entry(parts, None, found, target, force=force, progress=progress)
        return target
    return restore(parts, version, target, force=force, progress=progress)


# -- reading -----------------------------------------------------------------------------


def entry(parts: Parts, version: Version, path: str | None) -> TreeEntry:
    """The tree entry of a version, or of one path inside it."""
    top = root_entry(root_of(version), os.fsencode(version.source_name), version.size, version.mode)
    if not path:
        return top
    try:
        return parts.store.find(top, os.fsencode(path))
    except KeyError:
        raise PathNotFound(path, version.ref) from None


def restorable(parts: Parts, version: Version, path: str | None) -> TreeEntry:
    """The entry to restore, once the version's record is known to be safe to follow:
    its source name becomes a path and its mode a file's mode (UnsafeRecord if not)."""
    check_paths(version)
    with explained(parts, version):
        return entry(parts, version, path)


def restore_entry(
    parts: Parts,
    version: Version | None,
    found: TreeEntry,
    target: Path,
    *,
    force: bool,
    progress: Progress = NULL_PROGRESS,
) -> None:
    with explained(parts, version):
        store.restore(
            parts.store,
            Root(found.kind, found.id),
            target,
            size=found.size,
            mode=found.mode,
            force=force,
            progress=progress,
        )


def restore(
    parts: Parts,
    version: Version,
    target: Path,
    *,
    path: str | None = None,
    force: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Path:
    """Restore a version (or one path in it) to exactly target, which it becomes."""
    found = restorable(parts, version, path)
    target = target.absolute()
    restore_entry(parts, version, found, target, force=force, progress=progress)
    return target


def local_copy(parts: Parts, version: Version, path: str | None = None) -> Path:
    """A path holding a version (or one path in it): a copy under `.modelkeep/checkouts`,
    restored once per content id and shared by every reader. It is read-only, and
    verified before each reuse: a copy someone changed is restored afresh (see
    modelkeep.checkouts)."""
    found = restorable(parts, version, path)
    folder = parts.settings.control_dir / "checkouts" / found.id.hex()[:16]
    target = folder / (os.fsdecode(found.name) or "content")
    with explained(parts, version):
        checkouts.ensure(
            parts.store,
            found,
            target,
            lambda force: restore_entry(parts, version, found, target, force=force),
        )
    return target


def open_file(parts: Parts, version: Version, path: str | None = None) -> BinaryIO:
    """A read-only binary file object over one file of a version, streamed and verified."""
    with explained(parts, version):
        found = entry(parts, version, path)
        if found.kind != Kind.FILE:
            where = f"{version.ref} {path}" if path else version.ref
            raise InvalidArgument(f"{where} is a {KIND_NAMES[found.kind]}, not a file; give --path")
        reader = parts.store.open_blob(
            found.id, functools.partial(explain, parts, version=version), found.size
        )
    return io.BufferedReader(reader, buffer_size=1 << 20)


# -- explaining ---------------------------------------------------------------------------


def explain(parts: Parts, exc: ModelkeepError, version: Version | None = None) -> ModelkeepError:
    """Name the versions that need a damaged or missing object; for a version whose
    content was never here, say where it was added and whether it was pushed."""
    if isinstance(exc, MissingObject) and version is not None:
        state = meta.push_state(parts.db, version.name, version.number)
        default = parts.settings.default_remote
        other_store = state.store_id is not None and state.store_id != parts.store_id
        if not state.remotes and (other_store or state.host != parts.settings.host):
            url = default.url if default is not None else None
            return NotPushed(version.ref, state.host, state.user, url, state.store_id)
        if state.remotes and (default is None or default.url not in state.remotes):
            return PushedElsewhere(version.ref, state.remotes)
    if isinstance(exc, ObjectError):
        oid = bytes.fromhex(exc.object_id)
        with parts.store.offline():
            holders = store.needed_by(parts.store, roots(parts.db), [oid]).get(oid, [])
        return exc.with_versions(holders)
    return exc


@contextmanager
def explained(parts: Parts, version: Version | None = None) -> Iterator[None]:
    """Errors about objects raised inside name the versions they concern."""
    try:
        yield
    except ObjectError as exc:
        raise explain(parts, exc, version) from None
