"""The Python API's Repo: the one place that wires the store and the metadata together."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from modelkeep import checkouts, config, meta, ownership, registry, store, sync, worktree
from modelkeep.errors import (
    ArtifactNotFound,
    ControlPath,
    DigestNotFound,
    InvalidArgument,
    MissingObject,
    ModelkeepError,
    NotPushed,
    ObjectError,
    PathNotFound,
    PushedElsewhere,
    RemoteExists,
    RemoteNotFound,
    RepoExists,
    RunNotFound,
    TypeMismatch,
)
from modelkeep.formats.spec import MODEL_KEY
from modelkeep.lockfile import control_folder
from modelkeep.meta import Added, Artifact, Lineage, Metric, NewVersion, RunRecord, Version
from modelkeep.meta.records import check_paths
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.refs import parse_ref, validate_name
from modelkeep.store import NULL_FETCHER, FsckReport, GcReport, Kind, ObjectStore, PruneReport, Root
from modelkeep.store.diff import diff as diff_roots
from modelkeep.store.diff import root_entry
from modelkeep.store.trees import TreeEntry

if TYPE_CHECKING:
    from modelkeep.capture.environment import EnvDiff
    from modelkeep.formats import ModelSpec

_KIND_NAMES = {Kind.FILE: "file", Kind.DIR: "dir", Kind.LINK: "link"}
_KINDS = {v: k for k, v in _KIND_NAMES.items()}


@dataclass(frozen=True, slots=True)
class AddResult:
    version: Version
    created: bool  # False when the content equals the latest version (returned instead)
    new_bytes: int  # bytes of content this add stored for the first time
    reused_bytes: int  # bytes already in the store
    stored_bytes: int  # what the new content takes on disk, after compression
    same_as: Version | None = None  # an older version with identical content

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version.to_json(),
            "created": self.created,
            "new_bytes": self.new_bytes,
            "reused_bytes": self.reused_bytes,
            "stored_bytes": self.stored_bytes,
            "same_as": self.same_as.ref if self.same_as else None,
        }


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str  # relative, '/'-separated; undecodable bytes kept as surrogate escapes
    kind: str  # "file", "dir" or "link"
    size: int
    mode: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "mode": oct(self.mode) if self.mode else None,
            "digest": self.digest,
        }


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    status: str  # "added", "removed" or "modified"
    old_size: int | None
    new_size: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "old_size": self.old_size,
            "new_size": self.new_size,
        }


@dataclass(frozen=True, slots=True)
class Diff:
    old: Version
    new: Version
    changes: tuple[Change, ...]

    def to_json(self) -> dict[str, Any]:
        counts = {
            s: sum(c.status == s for c in self.changes) for s in ("added", "removed", "modified")
        }
        return {
            "old": self.old.ref,
            "new": self.new.ref,
            "counts": counts,
            "bytes_added": sum(c.new_size or 0 for c in self.changes if c.status == "added"),
            "bytes_removed": sum(c.old_size or 0 for c in self.changes if c.status == "removed"),
            "changes": [c.to_json() for c in self.changes],
        }


@dataclass(frozen=True, slots=True)
class Usage:
    artifacts: int
    versions: int
    logical_bytes: int  # every version at its full size, as plain copies would take
    unique_bytes: int  # distinct chunk content, before compression
    stored_bytes: int  # pack files on disk
    chunks: int
    packs: int

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.unique_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "artifacts": self.artifacts,
            "versions": self.versions,
            "logical_bytes": self.logical_bytes,
            "unique_bytes": self.unique_bytes,
            "stored_bytes": self.stored_bytes,
            "chunks": self.chunks,
            "packs": self.packs,
            "dedup_ratio": round(self.dedup_ratio, 3),
            "compression_ratio": round(self.compression_ratio, 3),
        }


def init(path: str | os.PathLike[str] = ".") -> Repo:
    """Create a repository in path (made if missing) and return it."""
    root = Path(path).absolute()
    control = root / config.REPO_DIR
    if control.exists():
        raise RepoExists(str(root))
    root.mkdir(parents=True, exist_ok=True)
    control.mkdir()
    try:
        (control / config.CONFIG_FILE).write_text(
            "# modelkeep repository settings\n"
            '# database_url = "postgresql+psycopg://user@host/db"  # default: meta.sqlite here\n',
            "utf-8",
        )
        repo = Repo(config.load(root))
        repo.db.migrate()
        ownership.bind(repo.store, repo.db)
        worktree.ignore_control_dir(root)
    except BaseException:
        shutil.rmtree(control, ignore_errors=True)
        raise
    return repo


def open(path: str | os.PathLike[str] = ".") -> Repo:
    """Open the repository at path or in the nearest folder above it, as Git does."""
    repo = Repo(config.load(config.find_root(Path(path))))
    repo.db.migrate()
    ownership.bind(repo.store, repo.db)
    return repo


class Repo:
    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.root = settings.root
        self.db = meta.Database(settings.database_url)
        self.store = ObjectStore(settings.store_dir)
        self._wire_fetcher()

    def _wire_fetcher(self) -> None:
        """Objects missing here come from the default remote, on their own (get, open,
        restore and everything built on them); nothing is imported or listed until then."""
        self._close_fetcher()
        default = self.settings.default_remote
        if default is not None:
            self.store.fetcher = sync.RemoteFetcher(
                self.store, default, sync.cache_dir(self.settings), NULL_PROGRESS
            )

    def _close_fetcher(self) -> None:
        if isinstance(self.store.fetcher, sync.RemoteFetcher):
            self.store.fetcher.close()
        self.store.fetcher = NULL_FETCHER

    def close(self) -> None:
        self._close_fetcher()
        self.store.close()
        self.db.close()

    @functools.cached_property
    def user(self) -> str:
        """Who acts: MODELKEEP_USER, else Git's user.name and email, else the OS user."""
        from modelkeep.capture.git import user_identity

        return self.settings.user or user_identity(self.root) or config.os_user()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------

    def add(
        self,
        path: str | os.PathLike[str],
        name: str,
        *,
        type: str | None = None,
        message: str = "",
        metadata: Mapping[str, Any] | None = None,
        progress: Progress = NULL_PROGRESS,
        run_id: str | None = None,
        track: bool = True,
        _model_spec: Mapping[str, Any] | None = None,
    ) -> AddResult:
        """Store a file or folder as the next version of name (unless it equals the latest).

        Inside a Git work tree the path is recorded in `modelkeep.lock` and ignored by Git
        (track=False leaves both alone). run_id links the new version to the run that made
        it; by default, the run active in this process (or the `modelkeep run` around it).
        """
        run_id = run_id if run_id is not None else config.active_run(self.root)
        validate_name(name)
        if type is not None:
            meta.check_type(type)
            existing = meta.artifact_type(self.db, name)
            if existing is not None and existing != type:
                raise TypeMismatch(name, existing, type)  # before any byte is stored
        fields = dict(metadata or {})
        if MODEL_KEY in fields:  # load_model trusts it to say how to load: log_model's alone
            raise InvalidArgument(f"metadata key {MODEL_KEY!r} is modelkeep's own; use another")
        if _model_spec is not None:  # internal: only log_model passes it
            fields[MODEL_KEY] = dict(_model_spec)
        try:
            json.dumps(fields)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"metadata must be JSON values (numbers, text, lists): {exc}"
            ) from exc
        source = Path(path)
        if not os.path.lexists(source):
            raise PathNotFound(str(path))
        source = self._addable(path)
        where = worktree.place(source) if track else None
        ownership.require_own(self.store, self.db)  # never mix two databases' objects
        with self.store.writing():
            exclude = _placed(self.settings.control_dir)
            put = store.put(self.store, source, progress, exclude=exclude)
            new = NewVersion(
                kind=_KIND_NAMES[put.root.kind],
                digest=put.root.id.hex(),
                size=put.size,
                file_count=put.file_count,
                mode=put.mode,
                source_name=source.name or "root",
                user=self.user,
                message=message,
                metadata=fields,
                run_id=run_id,
                host=self.settings.host,
            )
            added: Added = meta.add_version(self.db, name, type, new)
        if where is not None:
            worktree.track(self, where, added.version)
        return AddResult(
            added.version,
            added.created,
            new_bytes=put.new_bytes,
            reused_bytes=max(put.size - put.new_bytes, 0),
            stored_bytes=put.stored_bytes,
            same_as=added.same_as,
        )

    # -- reading ----------------------------------------------------------------

    def artifacts(self) -> list[Artifact]:
        return meta.artifacts(self.db)

    def versions(self, name: str) -> list[Version]:
        validate_name(name)
        return meta.versions(self.db, name)

    def show(self, ref: str, *, at: datetime | None = None) -> Version:
        """The version ref names, or named at a past moment (from the registry's event log)."""
        if at is not None:
            return meta.resolve_at(self.db, parse_ref(ref), at)
        return meta.resolve(self.db, parse_ref(ref))

    def files(self, ref: str) -> list[FileInfo]:
        """Every entry of a version, folders first then their contents, sorted by path."""
        version = self.show(ref)
        root = _root(version)
        with self.explained(version):
            if root.kind != Kind.DIR:
                return [
                    FileInfo(
                        version.source_name,
                        version.kind,
                        version.size,
                        version.mode,
                        version.digest,
                    )
                ]
            return [
                FileInfo(os.fsdecode(path), _KIND_NAMES[kind], size, mode, f"b3:{oid.hex()}")
                for path, kind, mode, size, oid in self.store.walk(root)
            ]

    def get(
        self,
        ref: str,
        dest: str | os.PathLike[str] | None = None,
        *,
        path: str | None = None,
        force: bool = False,
        progress: Progress = NULL_PROGRESS,
        run_id: str | None = None,
        at: datetime | None = None,
    ) -> Path:
        """Restore a version (or one path inside it) to dest; returns where it was written.

        dest defaults to the name it was added under, in the working directory. A dest
        that is an existing folder, or ends with '/', receives a file under its own name.
        run_id records the version as an input of that run (by default, the run active in
        this process or the `modelkeep run` around it); at resolves ref as it was then.
        """
        run_id = run_id if run_id is not None else config.active_run(self.root)
        version = self.show(ref, at=at)
        with self.explained(version):
            entry = self._restorable(version, path)
        name = os.fsdecode(entry.name)
        if dest is None:
            target = Path.cwd() / name
        else:
            target = Path(dest)
            into = str(dest).endswith(("/", os.sep)) or target.is_dir()
            if entry.kind != Kind.DIR and into and not target.is_symlink():
                target = target / name
        self._restore_entry(version, entry, target.absolute(), force, progress)
        if run_id is not None:
            meta.add_input(self.db, run_id, version.name, version.number)
        return target

    def restore(
        self,
        ref: str,
        target: str | os.PathLike[str],
        *,
        path: str | None = None,
        force: bool = False,
        progress: Progress = NULL_PROGRESS,
    ) -> Path:
        """Restore a version (or one path in it) to exactly target, which it becomes."""
        version = self.show(ref)
        with self.explained(version):
            entry = self._restorable(version, path)
        target = Path(target).absolute()
        self._restore_entry(version, entry, target, force, progress)
        return target

    def local_copy(self, ref: str, path: str | None = None, *, run_id: str | None = None) -> Path:
        """A path holding a version (or one path in it): a copy under `.modelkeep/checkouts`,
        restored once per content id and shared by every reader. It is read-only, and
        verified before each reuse: a copy someone changed is restored afresh (see
        modelkeep.checkouts)."""
        run_id = run_id if run_id is not None else config.active_run(self.root)
        version = self.show(ref)
        with self.explained(version):
            entry = self._restorable(version, path)
        folder = self.settings.control_dir / "checkouts" / entry.id.hex()[:16]
        target = folder / (os.fsdecode(entry.name) or "content")
        with self.explained(version):
            checkouts.ensure(
                self.store,
                entry,
                target,
                lambda force: self._restore_entry(version, entry, target, force, NULL_PROGRESS),
            )
        if run_id is not None:
            meta.add_input(self.db, run_id, version.name, version.number)
        return target

    def _restorable(self, version: Version, path: str | None) -> TreeEntry:
        """The entry to restore, once the version's record is known to be safe to follow:
        its source name becomes a path and its mode a file's mode (UnsafeRecord if not)."""
        check_paths(version)
        return self._entry(version, path)

    def _addable(self, path: str | os.PathLike[str]) -> Path:
        """The path add stores: absolute, '..' and symlinked folders resolved (a final
        symlink is stored as itself). Refused (ControlPath) when it, or what it leads to, is
        the control folder or inside it, or inside any '.git' or '.modelkeep' folder, so the
        store never stores itself and Git's or modelkeep's files are never versioned."""
        placed = _placed(Path(path))
        real = Path(os.path.realpath(placed))
        control = Path(os.path.realpath(self.settings.control_dir))
        if real == control or control in real.parents:
            raise ControlPath(str(path), str(self.settings.control_dir))
        for candidate in (placed, real):
            folder = control_folder(list(candidate.parts))
            if folder is not None:
                inside = candidate.parts[: candidate.parts.index(folder) + 1]
                raise ControlPath(str(path), str(Path(*inside)))
        return placed

    def _restore_entry(
        self, version: Version, entry: TreeEntry, target: Path, force: bool, progress: Progress
    ) -> None:
        with self.explained(version):
            store.restore(
                self.store,
                Root(entry.kind, entry.id),
                target,
                size=entry.size,
                mode=entry.mode,
                force=force,
                progress=progress,
            )

    def open(self, ref: str, path: str | None = None) -> BinaryIO:
        """A read-only binary file object over one file of a version, streamed and verified."""
        version = self.show(ref)
        with self.explained(version):
            entry = self._entry(version, path)
            if entry.kind != Kind.FILE:
                where = f"{version.ref} {path}" if path else version.ref
                raise InvalidArgument(
                    f"{where} is a {_KIND_NAMES[entry.kind]}, not a file; give --path"
                )
            explain = functools.partial(self._explain, version=version)
            reader = self.store.open_blob(entry.id, explain, entry.size)
        return io.BufferedReader(reader, buffer_size=1 << 20)

    def diff(self, old_ref: str, new_ref: str) -> Diff:
        old, new = self.show(old_ref), self.show(new_ref)
        with self.explained():
            changes = diff_roots(self.store, self._entry(old, None), self._entry(new, None))
        return Diff(
            old,
            new,
            tuple(
                Change(
                    os.fsdecode(c.path),
                    c.status,
                    c.old.size if c.old else None,
                    c.new.size if c.new else None,
                )
                for c in changes
            ),
        )

    def du(self) -> Usage:
        every = meta.all_versions(self.db)
        chunks, unique, _ = self.store.index.totals()
        sizes = self.store.index.pack_sizes()
        return Usage(
            artifacts=len({v.name for v in every}),
            versions=len(every),
            logical_bytes=sum(v.size for v in every),
            unique_bytes=unique,
            stored_bytes=sum(sizes.values()),
            chunks=chunks,
            packs=len(sizes),
        )

    def fsck(self, progress: Progress = NULL_PROGRESS) -> FsckReport:
        """Objects that cache prune dropped, and a remote holds, are not problems; nor are
        those of versions added on another machine or pushed, when a remote holds them."""
        ownership.require_own(self.store, self.db)
        elsewhere = functools.partial(sync.known_on_remotes, self.settings, refresh=True)
        # writing() keeps gc from moving objects while they are checked
        with self.store.writing(), self.store.offline():
            roots = self._roots()
            theirs = self._not_only_here(roots)
            away: dict[str, set[bytes]] = {}
            for label in theirs:
                missing = store.walk_here(self.store, roots[label])[1]
                if missing:  # not walkable here: checked against the remotes instead
                    away[label] = missing
                    del roots[label]
            report = store.fsck(self.store, roots, progress, elsewhere=elsewhere)
            absent = set().union(*away.values()) if away else set()
            nowhere = absent - elsewhere(sorted(absent)) if absent else set()
        extra = [
            store.Problem(
                oid.hex(),
                f"object b3:{oid.hex()} is missing",
                tuple(label for label, ids in away.items() if oid in ids),
            )
            for oid in sorted(nowhere)
        ]
        if not extra:
            return report
        merged = {p.object: p for p in (*extra, *report.problems)}
        return dataclasses.replace(report, problems=tuple(merged[k] for k in sorted(merged)))

    def gc(self, *, dry_run: bool = False) -> GcReport:
        """Versions added on another machine or pushed to a remote are not only this
        store's: what of them is here is kept, and what is not is not gc's concern."""
        ownership.require_own(self.store, self.db)
        # exclusive() waits for adds in flight to commit their versions
        with self.store.exclusive(), self.store.offline():
            roots = self._roots()
            theirs = self._not_only_here(roots)
            return store.gc(
                self.store,
                [r for label, r in roots.items() if label not in theirs],
                dry_run=dry_run,
                partial=[roots[label] for label in theirs],
            )

    def _not_only_here(self, roots: Mapping[str, Root]) -> set[str]:
        """Refs of versions whose content another machine or a remote is responsible for:
        pushed somewhere, or added on another host (in team mode)."""
        pushed = {f"{name}:v{number}" for name, number in meta.pushed_anywhere(self.db)}
        other = {
            v.ref
            for v in meta.all_versions(self.db)
            if v.host is not None and v.host != self.settings.host
        }
        return (pushed | other) & set(roots)

    # -- remotes ------------------------------------------------------------------

    def remotes(self) -> list[config.RemoteConfig]:
        return list(self.settings.remotes)

    def add_remote(
        self,
        name: str,
        url: str,
        *,
        default: bool = False,
        options: Mapping[str, str] | None = None,
    ) -> config.RemoteConfig:
        """Remember a remote (checked, not contacted). The default remote (`default=True`;
        at most one) is where push goes and missing objects come from on their own."""
        from modelkeep.remotes import parse_url, require_backend

        if not config.REMOTE_NAME.match(name):
            raise InvalidArgument(
                f"invalid remote name {name!r}: use letters, digits, '-', '_' and '.', "
                "up to 64 characters"
            )
        existing = self.settings.remote(name)
        if existing is not None:
            raise RemoteExists(name, existing.shown().url)
        spec = parse_url(url, options)
        require_backend(spec)
        made = config.RemoteConfig(name, spec.url, tuple(sorted(spec.options.items())), default)
        others = tuple(
            dataclasses.replace(r, default=False) if default else r for r in self.settings.remotes
        )
        self._save_remotes((*others, made))
        return made

    def remove_remote(self, name: str) -> config.RemoteConfig:
        found = self.settings.remote(name)
        if found is None:
            raise RemoteNotFound(name, [r.name for r in self.settings.remotes])
        self._save_remotes(tuple(r for r in self.settings.remotes if r.name != name))
        return found.shown()  # what went, fit to print: a hand-edited URL may hold a token

    def _save_remotes(self, remotes: tuple[config.RemoteConfig, ...]) -> None:
        config.save_remotes(self.root, remotes)
        self.settings = dataclasses.replace(self.settings, remotes=remotes)
        self._wire_fetcher()

    def push(
        self,
        refs: Sequence[str] = (),
        *,
        remote: str | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> sync.PushResult:
        """Upload what the remote lacks for refs (default: every version here not yet
        pushed to it); the versions are then recorded as pushed, for the whole team."""
        return sync.push(self, list(refs), remote, progress)

    def pull(
        self,
        refs: Sequence[str],
        *,
        remote: str | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> sync.PullResult:
        """Fetch (verified) what refs need and this store lacks."""
        return sync.pull(self, list(refs), remote, progress)

    def pushed_to(self, ref: str) -> tuple[str, ...]:
        """The remotes (URLs) every object of a version is on, as recorded when pushed."""
        v = self.show(ref)
        return meta.push_state(self.db, v.name, v.number).remotes

    def prune_cache(self, max_size: int, *, dry_run: bool = False) -> PruneReport:
        """Shrink the local store towards max_size bytes by dropping, least recently used
        first, chunks a remote holds (read back and verified); never the only copy."""
        ownership.require_own(self.store, self.db)
        return sync.prune_cache(self, max_size, dry_run=dry_run)

    def digest_of(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """The content id a path would get if added, and its mode; stores nothing."""
        source = Path(path)
        if not os.path.lexists(source):
            raise PathNotFound(str(path))
        put = store.put(self.store, source, exclude=self.settings.control_dir, dry=True)
        return f"b3:{put.root.id.hex()}", put.mode

    def holds(self, digest: str) -> bool:
        """Whether some version has exactly this content, and the store has its root (or
        can fetch it from the default remote: a lock file committed on another machine)."""
        try:
            self.show(digest)
        except DigestNotFound:
            return False
        root = bytes.fromhex(digest.removeprefix("b3:"))
        if not self.store.has(root):
            with contextlib.suppress(MissingObject):  # on no remote either
                self.store.ensure([root])
        return self.store.has(root)

    # -- lineage and runs -------------------------------------------------------

    def lineage(self, ref: str, *, upstream: bool = True, downstream: bool = True) -> Lineage:
        """The runs and versions upstream (what made it) and downstream (what used it)."""
        v = self.show(ref)
        return meta.lineage(self.db, v.name, v.number, upstream=upstream, downstream=downstream)

    def runs(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        where: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first; where holds conditions like "metrics.auc > 0.9"."""
        from modelkeep import run as runs_mod

        runs_mod.reap(self)
        if status is not None and status not in meta.RUN_STATUSES:
            raise InvalidArgument(
                f"unknown run status {status!r}; use one of {', '.join(meta.RUN_STATUSES)}"
            )
        tests = [runs_mod.parse_condition(c) for c in where]
        if not tests:
            return meta.runs(self.db, name=name, status=status, limit=limit)
        found: list[RunRecord] = []
        page, offset = 500, 0
        while limit is None or len(found) < limit:  # newest first, a page at a time
            batch = meta.runs(self.db, name=name, status=status, limit=page, offset=offset)
            found += [r for r in batch if all(t(r) for t in tests)]
            if len(batch) < page:
                break
            offset += page
        return found[:limit] if limit is not None else found

    def run(self, ref: str) -> RunRecord:
        """One run by its id or a unique prefix of it (at least 4 hex digits)."""
        from modelkeep import run as runs_mod

        runs_mod.reap(self)
        return meta.runs(self.db, ids=[meta.resolve_run(self.db, ref)])[0]

    def metric_history(self, ref: str) -> list[Metric]:
        return meta.metric_history(self.db, self.run(ref).id)

    def environment(self, ref: str) -> dict[str, Any]:
        """The environment of a run, or of the run that produced a version."""
        run = self._run_or_producer(ref)
        if run.env_id is None:
            raise InvalidArgument(f"run {run.short_id} recorded no environment")
        return meta.run_environment(self.db, run.env_id)

    def env_diff(self, a: str, b: str) -> EnvDiff:
        from modelkeep.capture.environment import diff_environments

        return diff_environments(self.environment(a), self.environment(b))

    def compare_runs(self, refs: Sequence[str]) -> meta.Comparison:
        """Params and latest metrics of several runs side by side; each ref is a run id (or
        prefix) or a version ref, which stands for the run that made that version."""
        return meta.compare([self._run_or_producer(ref) for ref in refs])

    def _run_or_producer(self, ref: str) -> RunRecord:
        """A run by id (or prefix), else the run that made the version ref names."""
        no_run: RunNotFound | None = None
        if ":" not in ref and "@" not in ref:
            try:
                return self.run(ref)
            except RunNotFound as exc:
                if exc.matches:  # an ambiguous run id prefix: say so, do not try a version
                    raise
                no_run = exc
        try:
            v = self.show(ref)
        except ArtifactNotFound:
            if no_run is not None and re.fullmatch(r"[0-9a-f]{4,}", ref):
                raise no_run from None  # it reads as a run id: say that no run has it
            raise
        if v.run_id is None:
            raise InvalidArgument(
                f"{v.ref} was not produced by a run, so no run records are there for it"
            )
        return self.run(v.run_id)

    # -- model objects ----------------------------------------------------------

    def log_model(
        self,
        obj: Any,
        name: str,
        *,
        format: str | None = None,
        input_example: Any = None,
        init_kwargs: Mapping[str, Any] | None = None,
        message: str = "",
        metadata: Mapping[str, Any] | None = None,
        register: bool = False,
        run_id: str | None = None,
    ) -> Version:
        """Save a trained object as the next version of model name; see docs/models.md.

        format defaults to the object's own (skops for scikit-learn, safetensors for torch
        and arrays, …); input_example records the signature; init_kwargs rebuild a torch
        module; register makes the version a registry candidate at once.
        """
        from modelkeep import model

        version = model.log(
            self,
            obj,
            name,
            format=format,
            input_example=input_example,
            init_kwargs=init_kwargs,
            message=message,
            metadata=metadata,
            run_id=run_id if run_id is not None else config.active_run(self.root),
        )
        return self.register(version.ref, name) if register else version

    def load_model(self, ref: str, *, trust: bool | Sequence[str] = False) -> Any:
        """The object a model version holds, ready to use; never unpickles unless trusted.

        trust=True allows pickle-based formats and every skops type; a list of type names
        allows just those. `.modelkeep/config.toml` can set trust_pickle and trusted_types.
        """
        from modelkeep import model

        return model.load(self, ref, trust=trust)

    def model_spec(self, ref: str) -> ModelSpec:
        """What a model version records: format, libraries, requirements, signature."""
        from modelkeep import model

        return model.spec_of(self.show(ref))

    def input_example(self, ref: str) -> Any:
        from modelkeep import model

        return model.input_example(self, ref)

    def card(self, ref: str) -> str:
        """The Markdown model card of a model version, from what was recorded."""
        from modelkeep.card import card

        return card(self, ref)

    # -- model registry ---------------------------------------------------------

    def register(self, source_ref: str, name: str, *, reason: str = "") -> Version:
        """Make the version source_ref names the next version of model name (no bytes copied)."""
        return registry.register(self, source_ref, name, reason)[0]

    def promote(
        self, ref: str, stage: str, *, reason: str = "", force: bool = False
    ) -> registry.Promotion:
        """Move a registered version to staging, production or archived, through the policy."""
        return registry.promote(self, ref, stage, reason=reason, force=force)

    def archive(self, ref: str, *, reason: str = "") -> Version:
        return registry.archive(self, ref, reason)

    def rollback(self, name: str, *, to: str | None = None, reason: str) -> registry.Promotion:
        """Put back the previous production version (or `to`); `displaced` is the one archived."""
        restored, archived = registry.rollback(self, name, to, reason)
        return registry.Promotion(restored, "production", archived, (), ())

    def approve(self, ref: str, stage: str, *, reason: str = "") -> meta.Approvals:
        return registry.approve(self, ref, stage, reason)

    def set_alias(self, alias: str, target: str, *, reason: str = "") -> Version:
        """Point NAME@ALIAS at a version of NAME."""
        return registry.set_alias(self, alias, target, reason)

    def remove_alias(self, alias: str, *, reason: str = "") -> None:
        registry.remove_alias(self, alias, reason)

    def delete(self, ref: str, *, reason: str) -> Version:
        """Tombstone a version (never one in staging or production); gc frees its bytes."""
        return registry.delete(self, ref, reason)

    def models(self) -> list[meta.Model]:
        return meta.models(self.db)

    def history(self, name: str, *, at: datetime | None = None) -> list[meta.Event]:
        """Every registry event of model name (up to at)."""
        validate_name(name)
        return meta.events(self.db, name, until=at)

    def audit(self, name: str | None = None, *, since: datetime | None = None) -> list[meta.Event]:
        if name is not None:
            validate_name(name)
        return meta.events(self.db, name, since=since)

    def verify_audit(self) -> meta.Verification:
        """Recompute the event chain; name every event edited, removed or reordered."""
        return meta.verify(self.db)

    # -- Git work tree ----------------------------------------------------------

    def status(self) -> list[worktree.PathStatus]:
        """Tracked paths of the Git work tree and how they compare with modelkeep.lock."""
        return worktree.status(self)

    def checkout(
        self, paths: Sequence[str] = (), *, force: bool = False, progress: Progress = NULL_PROGRESS
    ) -> list[worktree.PathStatus]:
        """Make tracked paths match modelkeep.lock; returns the paths that were restored."""
        return worktree.checkout(self, paths, force=force, progress=progress)

    def install_hooks(self, *, force: bool = False) -> Path:
        """A Git post-checkout hook that runs `modelkeep checkout`; returns its path."""
        return worktree.install_hooks(self, force=force)

    # -- helpers ----------------------------------------------------------------

    def _roots(self) -> dict[str, Root]:
        return {v.ref: _root(v) for v in meta.all_versions(self.db)}

    def _entry(self, version: Version, path: str | None) -> TreeEntry:
        top = root_entry(
            _root(version), os.fsencode(version.source_name), version.size, version.mode
        )
        if not path:
            return top
        try:
            return self.store.find(top, os.fsencode(path))
        except KeyError:
            raise PathNotFound(path, version.ref) from None

    def root_of(self, version: Version) -> Root:
        return _root(version)

    def _explain(self, exc: ModelkeepError, version: Version | None = None) -> ModelkeepError:
        """Name the versions that need a damaged or missing object; for a version whose
        content was never here, say where it was added and whether it was pushed."""
        if isinstance(exc, MissingObject) and version is not None:
            state = meta.push_state(self.db, version.name, version.number)
            default = self.settings.default_remote
            if not state.remotes and state.host != self.settings.host:
                url = default.url if default is not None else None
                return NotPushed(version.ref, state.host, state.user, url)
            if state.remotes and (default is None or default.url not in state.remotes):
                return PushedElsewhere(version.ref, state.remotes)
        if isinstance(exc, ObjectError):
            oid = bytes.fromhex(exc.object_id)
            with self.store.offline():
                holders = store.needed_by(self.store, self._roots(), [oid]).get(oid, [])
            return exc.with_versions(holders)
        return exc

    @contextmanager
    def explained(self, version: Version | None = None) -> Iterator[None]:
        try:
            yield
        except ObjectError as exc:
            raise self._explain(exc, version) from None


def _placed(path: Path) -> Path:
    """path absolute, its folders' symlinks and '..' resolved as the system does (a '..'
    after a symlink leaves the link's target); a final symlink is kept as itself."""
    absolute = path.absolute()  # drops '.' segments, keeps '..'
    if absolute.name == "..":
        return Path(os.path.realpath(absolute))
    return Path(os.path.realpath(absolute.parent)) / absolute.name


def _root(version: Version) -> Root:
    return Root(_KINDS[version.kind], bytes.fromhex(version.digest.removeprefix("b3:")))
