"""The Python API's Repo: the one place that composes the parts and the operations on them.

Everything below `Repo` (content, sync, the registry rules, the work tree, model packaging,
cards) takes a `Parts` and resolved versions; `Repo` resolves a ref once, then hands the
`Version` down. Every method that takes a ref also takes a `Version` (from `show`, say).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from modelkeep import config, meta, ownership
from modelkeep.errors import (
    ArtifactNotFound,
    AttachmentNotFound,
    DigestNotFound,
    InvalidArgument,
    RemoteExists,
    RemoteNotFound,
    RepoExists,
    RunDeleted,
    RunNotFound,
)
from modelkeep.meta import reads, run_reads
from modelkeep.meta.records import Version
from modelkeep.parts import Parts
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.refs import content_hex, content_id, is_full_id, parse_ref, validate_name
from modelkeep.results import AddResult, Change, Diff, FileInfo, Usage

if TYPE_CHECKING:
    # Imported on first use (see modelkeep.lazy): a read command pays for none of these.
    from modelkeep import card as cards
    from modelkeep import content, migrate, model, registry, sharing, store, sync, worktree
    from modelkeep.capture import process
    from modelkeep.capture.environment import EnvDiff
    from modelkeep.formats import ModelSpec
    from modelkeep.meta import (
        Artifact,
        Attachment,
        Lineage,
        Metric,
        RunRecord,
        attachments,
        mlflow_artifacts,
        model_tags,
    )
    from modelkeep.meta import housekeeping as run_housekeeping
    from modelkeep.migrate import Moved
    from modelkeep.remotes import Remote
    from modelkeep.store import FsckReport, GcReport, PruneReport
    from modelkeep.store import diff as store_diff
    from modelkeep.store.objects import ObjectStore, Root
else:
    from modelkeep.lazy import LazyModule

    attachments = LazyModule("modelkeep.meta.attachments")
    cards = LazyModule("modelkeep.card")
    content = LazyModule("modelkeep.content")
    migrate = LazyModule("modelkeep.migrate")
    mlflow_artifacts = LazyModule("modelkeep.meta.mlflow_artifacts")
    model = LazyModule("modelkeep.model")
    model_tags = LazyModule("modelkeep.meta.model_tags")
    process = LazyModule("modelkeep.capture.process")
    registry = LazyModule("modelkeep.registry")
    run_housekeeping = LazyModule("modelkeep.meta.housekeeping")
    sharing = LazyModule("modelkeep.sharing")
    store = LazyModule("modelkeep.store")
    store_diff = LazyModule("modelkeep.store.diff")
    sync = LazyModule("modelkeep.sync")
    worktree = LazyModule("modelkeep.worktree")

__all__ = ["AddResult", "Change", "Diff", "FileInfo", "Repo", "Usage", "init", "open"]

Target = Version | str  # a ref in any form, or a version already resolved


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
        repo.db.create()
        ownership.bind(repo.settings.store_dir, repo.db, lambda: repo.store)
        worktree.ignore_control_dir(root)
    except BaseException:
        shutil.rmtree(control, ignore_errors=True)
        raise
    return repo


def open(path: str | os.PathLike[str] = ".") -> Repo:
    """Open the repository at path or in the nearest folder above it, as Git does."""
    repo = Repo(config.load(config.find_root(Path(path))))
    repo.db.migrate()
    ownership.bind(repo.settings.store_dir, repo.db, lambda: repo.store)
    return repo


class Repo:
    def __init__(self, settings: config.Settings) -> None:
        self.parts = Parts(settings, meta.Database(settings.database_url))
        self._wire_fetcher()

    # -- the parts --------------------------------------------------------------------

    @property
    def settings(self) -> config.Settings:
        return self.parts.settings

    @property
    def root(self) -> Path:
        return self.parts.root

    @property
    def db(self) -> meta.Database:
        return self.parts.db

    @property
    def store(self) -> ObjectStore:
        return self.parts.store

    @property
    def user(self) -> str:
        """Who acts: MODELKEEP_USER, else Git's user.name and email, else the OS user."""
        return self.parts.user

    def acting_as(self, actor: str) -> Repo:
        """This repository (the same database, store and fetcher) acting as actor: what
        `modelkeep serve` runs each request with, so every event names the authenticated
        account and never a name the client chose."""
        repo = Repo.__new__(Repo)
        repo.parts = dataclasses.replace(self.parts, actor=actor, opened_store=self.store)
        return repo

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
        if self.parts.opened_store is None:
            return  # never opened: no fetcher to close
        fetcher = self.store.fetcher  # only sync wires another one: do not import it to look
        if fetcher is not store.NULL_FETCHER and isinstance(fetcher, sync.RemoteFetcher):
            fetcher.close()
        self.store.fetcher = store.NULL_FETCHER

    def close(self) -> None:
        self._close_fetcher()
        if self.parts.opened_store is not None:
            self.store.close()
        self.db.close()

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
    ) -> AddResult:
        """Store a file or folder as the next version of name (unless it equals the latest).

        Inside a Git work tree the path is recorded in `modelkeep.lock` and ignored by Git
        (track=False leaves both alone). run_id links the new version to the run that made
        it; by default, the run active in this process (or the `modelkeep run` around it).
        """
        validate_name(name)
        source = content.addable(self.parts, path)
        where = worktree.place(self.parts, source) if track else None
        result = self.add_content(
            source,
            name,
            type=type,
            message=message,
            metadata=metadata,
            run_id=self.parts.active_run(run_id),
            progress=progress,
        )
        if where is not None:
            worktree.track(self.parts, where, result.version)
        return result

    def add_content(
        self,
        source: Path,
        name: str,
        *,
        type: str | None,
        message: str,
        metadata: Mapping[str, Any] | None,
        run_id: str | None,
        model_spec: Mapping[str, Any] | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> AddResult:
        """Store source (an absolute path) as the next version of name; what `add` and
        `log_model` share, and what a server's client does by uploading instead."""
        return content.add(
            self.parts,
            source,
            name,
            type=type,
            message=message,
            metadata=metadata,
            run_id=run_id,
            progress=progress,
            model_spec=model_spec,
        )

    # -- reading ----------------------------------------------------------------

    def artifacts(self) -> list[Artifact]:
        return meta.artifacts(self.db)

    def versions(self, name: str) -> list[Version]:
        validate_name(name)
        return meta.versions(self.db, name)

    def show(self, ref: Target, *, at: datetime | None = None) -> Version:
        """The version ref names, or named at a past moment (from the registry's event log)."""
        if isinstance(ref, Version):
            return ref if at is None else meta.resolve(self.db, ref.ref, at=at)
        return meta.resolve(self.db, ref, at=at)

    def files(self, ref: Target) -> list[FileInfo]:
        """Every entry of a version, folders first then their contents, sorted by path."""
        version = self.show(ref)
        root = content.root_of(version)
        with content.explained(self.parts, version):
            if root.kind != store.Kind.DIR:
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
                FileInfo(os.fsdecode(path), content.KIND_NAMES[kind], size, mode, content_id(oid))
                for path, kind, mode, size, oid in self.store.walk(root)
            ]

    def get(
        self,
        ref: Target,
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
        run_id = self.parts.active_run(run_id)
        try:
            version = self.show(ref, at=at)
        except DigestNotFound:
            if not is_full_id(ref) or path or at is not None:
                raise
            # No version here records it: a lock file's id, fetched from the default remote.
            target = Path(dest) if dest is not None else Path.cwd() / content_hex(str(ref))[:16]
            return content.restore_content(
                self.parts, str(ref), target, force=force, progress=progress
            )
        found = content.restorable(self.parts, version, path)
        name = os.fsdecode(found.name)
        if dest is None:
            target = Path.cwd() / name
        else:
            target = Path(dest)
            into = str(dest).endswith(("/", os.sep)) or target.is_dir()
            if found.kind != store.Kind.DIR and into and not target.is_symlink():
                target = target / name
        content.restore_entry(
            self.parts, version, found, target.absolute(), force=force, progress=progress
        )
        if not path:  # a whole version on a tracked path: the lock now names it
            worktree.follow(self.parts, target.absolute(), version)
        self._record_input(run_id, version)
        return target

    def restore(
        self,
        ref: Target,
        target: str | os.PathLike[str],
        *,
        path: str | None = None,
        force: bool = False,
        progress: Progress = NULL_PROGRESS,
    ) -> Path:
        """Restore a version (or one path in it) to exactly target, which it becomes."""
        return content.restore(
            self.parts, self.show(ref), Path(target), path=path, force=force, progress=progress
        )

    def local_copy(
        self, ref: Target, path: str | None = None, *, run_id: str | None = None
    ) -> Path:
        """A path holding a version (or one path in it): a copy under `.modelkeep/checkouts`,
        restored once per content id and shared by every reader. It is read-only, and
        verified before each reuse: a copy someone changed is restored afresh."""
        run_id = self.parts.active_run(run_id)
        version = self.show(ref)
        copy = content.local_copy(self.parts, version, path)
        self._record_input(run_id, version)
        return copy

    def _record_input(self, run_id: str | None, version: Version) -> None:
        if run_id is not None:
            self.add_input(run_id, version)

    def open(self, ref: Target, path: str | None = None) -> BinaryIO:
        """A read-only binary file object over one file of a version, streamed and verified."""
        return content.open_file(self.parts, self.show(ref), path)

    def diff(self, old_ref: Target, new_ref: Target) -> Diff:
        old, new = self.show(old_ref), self.show(new_ref)
        with content.explained(self.parts):
            changes = store_diff.diff(
                self.store,
                content.entry(self.parts, old, None),
                content.entry(self.parts, new, None),
            )
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
        those of versions added on another machine or pushed, when a remote holds them.
        This store's run attachments are checked as its versions are."""
        ownership.require_own(self.store, self.db)

        def elsewhere(keys: list[bytes]) -> set[bytes]:
            return sync.known_on_remotes(self.settings, keys, refresh=True)

        # writing() keeps gc from moving objects while they are checked
        with self.store.writing(), self.store.offline():
            roots = content.roots(self.db)
            theirs = self._not_only_here(roots)
            away: dict[str, set[bytes]] = {}
            for label in theirs:
                missing = store.walk_here(self.store, roots[label])[1]
                if missing:  # not walkable here: checked against the remotes instead
                    away[label] = missing
                    del roots[label]
            for module in (attachments, mlflow_artifacts):
                for label, digest in module.stored_here(self.db, self.parts.store_id).items():
                    roots[label] = store.Root(store.Kind.FILE, bytes.fromhex(digest))
            report = store.fsck(self.store, roots, progress, elsewhere=elsewhere)
            absent = set().union(*away.values()) if away else set()
            nowhere = absent - elsewhere(sorted(absent)) if absent else set()
        extra = [
            store.Problem(
                oid.hex(),
                f"object {content_id(oid)} is missing",
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
        store's: what of them is here is kept, and what is not is not gc's concern.
        Run attachments and MLflow artifacts are kept too, as far as they are here (one
        attached on another machine of a team is in that machine's store)."""
        ownership.require_own(self.store, self.db)
        # exclusive() waits for adds (and attachments) in flight to commit their rows
        with self.store.exclusive(), self.store.offline():
            roots = content.roots(self.db)
            theirs = self._not_only_here(roots)
            files = attachments.all_digests(self.db) | mlflow_artifacts.all_digests(self.db)
            attached = [store.Root(store.Kind.FILE, bytes.fromhex(d)) for d in sorted(files)]
            return store.gc(
                self.store,
                [r for label, r in roots.items() if label not in theirs],
                dry_run=dry_run,
                partial=[*(roots[label] for label in theirs), *attached],
            )

    def _not_only_here(self, roots: Mapping[str, Root]) -> set[str]:
        """Refs of versions whose content another machine or a remote is responsible for:
        pushed somewhere, or added on another host (in team mode)."""
        pushed = {f"{name}:v{number}" for name, number in meta.pushed_anywhere(self.db)}
        mine = self.parts.store_id
        other = {
            v.ref
            for v in meta.all_versions(self.db)
            if (v.host is not None and v.host != self.settings.host)
            or (v.store_id is not None and v.store_id != mine)
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
        project: bool = False,
    ) -> config.RemoteConfig:
        """Remember a remote (checked, not contacted). The default remote (`default=True`;
        at most one) is where push goes and missing objects come from on their own.

        project=True writes it to the committed modelkeep.toml, so every clone has it;
        otherwise it is this repository's own (`.modelkeep/remotes.toml`), and overrides a
        project remote of the same name. Credentials go in neither: they are refused."""
        from modelkeep.remotes import parse_url, require_backend

        if not config.REMOTE_NAME.match(name):
            raise InvalidArgument(
                f"invalid remote name {name!r}: use letters, digits, '-', '_' and '.', "
                "up to 64 characters"
            )
        scope = "project" if project else "local"
        existing = self._remote_in(scope, name)
        if existing is not None:
            raise RemoteExists(name, existing.shown().url)
        spec = parse_url(url, options)
        require_backend(spec)
        options_ = tuple(sorted(spec.options.items()))
        made = config.RemoteConfig(name, spec.url, options_, default, scope)
        if project:
            config.save_project_remote(self.root, made, name)
        else:
            mine = [r for r in self.settings.remotes if r.scope == "local"]
            if default:
                mine = [dataclasses.replace(r, default=False) for r in mine]
            config.save_remotes(self.root, (*mine, made))
        self._reload_remotes()
        return made

    def remove_remote(self, name: str, *, project: bool = False) -> config.RemoteConfig:
        """Forget a remote: this repository's own of that name (then a project remote of the
        same name shows again), or with project=True the one in modelkeep.toml."""
        found = self._remote_in("project" if project else "local", name)
        if found is None and not project:
            found = self._remote_in("project", name)
        if found is None:
            raise RemoteNotFound(name, [r.name for r in self.settings.remotes])
        if found.scope == "project":
            config.save_project_remote(self.root, None, name)
        else:
            mine = (r for r in self.settings.remotes if r.scope == "local" and r.name != name)
            config.save_remotes(self.root, tuple(mine))
        self._reload_remotes()
        return found.shown()  # what went, fit to print: a hand-edited URL may hold a token

    def _remote_in(self, scope: str, name: str) -> config.RemoteConfig | None:
        if scope == "project":
            path = config.project_root(self.root) / config.PROJECT_FILE
            found = config.load_remotes(path, project=True)
        else:
            found = tuple(r for r in self.settings.remotes if r.scope == "local")
        return next((r for r in found if r.name == name), None)

    def _reload_remotes(self) -> None:
        self.parts.settings = dataclasses.replace(
            self.settings, remotes=config.remotes_of(self.root)
        )
        self._wire_fetcher()

    def push(
        self,
        refs: Sequence[Target] = (),
        *,
        remote: str | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> sync.PushResult:
        """Upload what the remote lacks for refs (default: every version here not yet
        pushed to it); the versions are then recorded as pushed, for the whole team."""
        versions = [self.show(r) for r in refs] if refs else None
        if versions:  # a number another store published is refused before any upload
            to = sync.open_remote(sync.remote_config(self.settings, remote))
            sharing.check(self.parts, to, versions)

        def publish(to: Remote, pushed: list[Version]) -> None:
            sharing.publish(self.parts, to, pushed)

        return sync.push(self.parts, versions, remote, progress, publish)

    def pull(
        self,
        refs: Sequence[Target] = (),
        *,
        remote: str | None = None,
        all: bool = False,
        progress: Progress = NULL_PROGRESS,
    ) -> sync.PullResult:
        """Bring refs' versions from the remote with their records (runs, registry
        events), even where this store has no row for them yet, and fetch (verified) what
        they need; with all, every version the remote holds records of. A full content id
        that no version records (`b3:` and 64 hex digits, from a lock file) is fetched by id."""
        texts = [r.ref if isinstance(r, Version) else r for r in refs]
        imported = sharing.pull_records(self.parts, texts, remote, everything=all)
        targets = sharing.on_remote(self.parts, remote) if all else list(refs)
        versions, digests = [], []
        for r in targets:
            try:
                versions.append(self.show(r))
            except DigestNotFound:
                if not is_full_id(r):
                    raise
                digests.append(str(r))
        result = sync.pull(self.parts, versions, remote, progress, digests)
        return sharing.with_records(result, imported)

    def pushed_to(self, ref: Target) -> tuple[str, ...]:
        """The remotes (URLs) every object of a version is on, as recorded when pushed."""
        v = self.show(ref)
        return meta.push_state(self.db, v.name, v.number).remotes

    def prune_cache(self, max_size: int, *, dry_run: bool = False) -> PruneReport:
        """Shrink the local store towards max_size bytes by dropping, least recently used
        first, chunks a remote holds (read back and verified); never the only copy."""
        ownership.require_own(self.store, self.db)
        return sync.prune_cache(self.parts, max_size, dry_run=dry_run)

    def digest_of(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """The content id a path would get if added, and its mode; stores nothing."""
        return content.digest_of(self.parts, path)

    # -- lineage and runs -------------------------------------------------------

    def lineage(self, ref: Target, *, upstream: bool = True, downstream: bool = True) -> Lineage:
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
        sort: str | None = None,
        descending: bool = False,
        deleted: Literal["hide", "only", "all"] = "hide",
        offset: int = 0,
    ) -> list[RunRecord]:
        """Runs, newest first; where holds conditions like "metrics.auc > 0.9" or
        "tags.team = fraud"; sort is a key like "metrics.auc" (runs without it last);
        deleted runs are hidden unless deleted is "only" or "all". offset skips that many
        of the runs (with limit: one page, as the web UI shows them)."""
        self._reap()
        return meta.find_runs(
            self.db,
            name=name,
            status=status,
            where=where,
            limit=limit,
            offset=offset,
            sort=sort,
            descending=descending,
            deleted={"hide": False, "only": True, "all": None}[deleted],
        )

    def _reap(self) -> None:
        """Runs whose process died are marked killed before runs are shown; the writer (and
        SQLAlchemy with it) is loaded only when there is one."""
        if run_reads.dead_runs(self.db, process.alive):
            meta.reap(self.db, process.alive)

    def run(self, ref: str) -> RunRecord:
        """One run by its id or a unique prefix of it (at least 4 hex digits)."""
        self._reap()
        return run_reads.runs(self.db, ids=[meta.resolve_run(self.db, ref)])[0]

    # -- writing runs (what a Run calls; the server's clients call them over HTTP) ------

    def create_run(self, new: meta.NewRun, params: Mapping[str, str]) -> None:
        """Record a new running run; it is this repository's user's, whatever new says,
        and its environment is stored under the id its JSON hashes to, or refused."""
        import blake3

        if blake3.blake3(new.env_json.encode()).hexdigest() != new.env_id:
            raise InvalidArgument("the run's environment does not hash to its env_id")
        if new.parent_id is not None:
            parent = self.run(new.parent_id)
            if parent.user != self.user:
                raise InvalidArgument(
                    f"run {parent.short_id} is {parent.user}'s; start a nested run only "
                    "inside a run of your own"
                )
            new = dataclasses.replace(new, parent_id=parent.id)
        meta.create_run(self.db, dataclasses.replace(new, user=self.user), params)

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        meta.log_params(self.db, run_id, params)

    def log_metrics(self, run_id: str, items: Sequence[tuple[str, float, int]]) -> None:
        meta.log_metrics(self.db, run_id, items)

    def add_input(self, run_id: str, ref: Target) -> None:
        """Record a version as an input of a running run."""
        version = self.show(ref)
        meta.add_input(self.db, run_id, version.name, version.number)

    def heartbeat(self, run_id: str) -> None:
        meta.heartbeat(self.db, run_id)

    def end_run(
        self, run_id: str, status: str, *, exit_code: int | None = None, error: str = ""
    ) -> None:
        meta.finish_run(self.db, run_id, status, exit_code=exit_code, error=error)

    def set_run_error(self, run_id: str, error: str) -> None:
        meta.set_error(self.db, run_id, error)

    # -- run housekeeping: what is said about a run, at any time, by its owner -------------

    def tag_run(
        self, run_id: str, tags: Mapping[str, str], *, remove: Sequence[str] = ()
    ) -> RunRecord:
        """Set tags on a run (replacing a key's value) and remove the keys in remove."""
        found = self.run(run_id).id
        run_housekeeping.set_tags(self.db, found, tags, remove)
        return self.run(found)

    def set_run_note(self, run_id: str, note: str) -> RunRecord:
        """Replace the run's note (free text; empty removes it)."""
        found = self.run(run_id).id
        run_housekeeping.set_note(self.db, found, note)
        return self.run(found)

    def rename_run(self, run_id: str, name: str) -> RunRecord:
        found = self.run(run_id).id
        run_housekeeping.rename(self.db, found, name)
        return self.run(found)

    def delete_run(self, run_id: str, *, reason: str = "") -> run_housekeeping.RunDeletion:
        """Hide an ended run from listings and comparisons; its records and attachments
        stay (gc keeps them), lineage still shows it, and restore_run brings it back."""
        found = self.run(run_id).id  # reaps first: a run whose process died can go
        kept = run_housekeeping.delete_run(self.db, found, self.user, reason)
        return run_housekeeping.RunDeletion(self.run(found), kept)

    def restore_run(self, run_id: str) -> RunRecord:
        found = self.run(run_id).id
        run_housekeeping.restore_run(self.db, found)
        return self.run(found)

    # -- run attachments: files that belong to a run, not versions ------------------------

    def attach(
        self,
        run_ref: str,
        source: str | os.PathLike[str] | bytes,
        name: str | None = None,
    ) -> Attachment:
        """Store a file (or bytes) as an attachment of a run: deduplicated in the store,
        with no artifact name, lock entry or `.gitignore` line. name defaults to the
        file's name (bytes need one); a name keeps its content once attached."""
        run_id = self.run(run_ref).id
        with _attachable(source, name) as (path, chosen):
            attachments.check_name(chosen)
            return self._attach_file(run_id, path, chosen)

    def _attach_file(self, run_id: str, path: Path, name: str) -> Attachment:
        with self.store.writing():  # gc waits until the row keeps the content
            digest, size = content.put_file(self.parts, path)
            return attachments.add(self.db, run_id, name, digest, size, self.parts.store_id)

    def add_attachment(self, run_id: str, name: str, digest: str) -> Attachment:
        """Record content already in the store (a server's client uploaded it) as an
        attachment of a run; its size comes from the stored bytes, read back."""
        run_id = self.run(run_id).id
        attachments.check_name(name)
        size = content.stored_file_size(self.parts, digest)
        return attachments.add(
            self.db, run_id, name, content_hex(digest), size, self.parts.store_id
        )

    def attachments(self, ref: str) -> list[Attachment]:
        """A run's attachments, by name."""
        return attachments.of_run(self.db, self.run(ref).id)

    def get_attachment(
        self,
        ref: str,
        name: str,
        dest: str | os.PathLike[str] | None = None,
        *,
        force: bool = False,
    ) -> Path:
        """Restore one attachment of a run to dest (default: its name's last part in the
        working directory; into dest if dest is a folder or ends with '/'), verified."""
        found = {a.name: a for a in self.attachments(ref)}
        if name not in found:
            raise AttachmentNotFound(self.run(ref).id, name, sorted(found))
        att = found[name]
        base = name.rsplit("/", 1)[-1]
        target = Path(dest) if dest is not None else Path.cwd() / base
        if dest is not None and (str(dest).endswith(("/", os.sep)) or target.is_dir()):
            target = target / base
        return content.restore_content(self.parts, att.content_id, target.absolute(), force=force)

    def run_files(self, ref: str) -> list[mlflow_artifacts.ArtifactFile]:
        """The files the MLflow client logged for a run through `modelkeep serve`."""
        return mlflow_artifacts.of_run(self.db, self.run(ref).id)

    def metric_history(self, ref: str) -> list[Metric]:
        return meta.metric_history(self.db, self.run(ref).id)

    def environment(self, ref: Target) -> dict[str, Any]:
        """The environment of a run, or of the run that produced a version."""
        run = self.run_or_producer(ref)
        if run.env_id is None:
            raise InvalidArgument(f"run {run.short_id} recorded no environment")
        return meta.run_environment(self.db, run.env_id)

    def env_diff(self, a: Target, b: Target) -> EnvDiff:
        """How the environments of two runs differ (a version stands for its run)."""
        from modelkeep.capture.environment import diff_environments

        return diff_environments(self.environment(a), self.environment(b))

    def compare_runs(self, refs: Sequence[Target], *, deleted: bool = False) -> meta.Comparison:
        """Params and latest metrics of several runs side by side; each ref is a run id (or
        prefix) or a version ref, which stands for the run that made that version. A
        deleted run is refused unless deleted is true."""
        found = [self.run_or_producer(ref) for ref in refs]
        hidden = [r for r in found if r.deleted]
        if hidden and not deleted:
            raise RunDeleted(hidden[0].id)
        return meta.compare(found)

    def run_or_producer(self, ref: Target) -> RunRecord:
        """A run by id (or prefix), else the run that made the version ref names."""
        no_run: RunNotFound | None = None
        if isinstance(ref, str) and ":" not in ref and "@" not in ref:
            try:
                return self.run(ref)
            except RunNotFound as exc:
                if exc.matches:  # an ambiguous run id prefix: say so, do not try a version
                    raise
                no_run = exc
        try:
            v = self.show(ref)
        except ArtifactNotFound:
            if no_run is not None and re.fullmatch(r"[0-9a-f]{4,}", str(ref)):
                raise no_run from None  # it reads as a run id: say that no run has it
            raise
        if v.run_id is None:
            raise InvalidArgument(
                f"{v.ref} was not produced by a run, so no run records are there for it"
            )
        return self.run(v.run_id)

    # -- evaluations: metrics measured on a version after it was made ----------------

    def evaluate(
        self,
        ref: Target,
        metrics: Mapping[str, float],
        *,
        dataset: Target | None = None,
        run_id: str | None = None,
    ) -> list[meta.Evaluation]:
        """Record metrics measured on a version (on dataset, a version of the data it was
        measured on); gates can name them (`eval[holdout].auc >= 0.9`, see policy.py).

        They are the acting user's, and belong to run_id: by default the run active in
        this process (or the `modelkeep run` around it), which gets dataset as an input.
        NaN is kept as a run's metrics keep it; infinity is refused."""
        from modelkeep.errors import DatasetNotFound, ModelkeepError, NothingToEvaluate
        from modelkeep.meta import evaluations

        version = self.show(ref)
        items = evaluations.check(list(metrics.items()))
        if not items:
            raise NothingToEvaluate(version.ref)
        measured_on = None
        if dataset is not None:
            try:
                measured_on = self.show(dataset)
            except ModelkeepError as exc:
                shown = dataset.ref if isinstance(dataset, Version) else dataset
                raise DatasetNotFound(shown, str(exc)) from exc
        # A server acts for a client, which names its run itself.
        run_id = run_id if self.parts.actor is not None else self.parts.active_run(run_id)
        if run_id is not None:
            run_id = self.run(run_id).id
        return evaluations.record(
            self.db,
            (version.name, version.number),
            items,
            dataset=(measured_on.name, measured_on.number) if measured_on else None,
            run_id=run_id,
            user=self.user,
        )

    def evaluations(self, ref: Target) -> list[meta.Evaluation]:
        """The evaluations recorded on a version, oldest first."""
        from modelkeep.meta import evaluation_reads

        v = self.show(ref)
        return evaluation_reads.of_versions(self.db, [(v.name, v.number)])[v.ref]

    def version_metrics(
        self, name: str, metrics: Sequence[str], *, numbers: Sequence[int] = ()
    ) -> list[dict[str, float | None]]:
        """For each version of name (as `versions` lists them, or those numbered numbers,
        in that order: one page of them), the value each of metrics names: a run metric or
        evaluation (`auc`), or `eval[DATASET].KEY`; None if absent."""
        if numbers:
            validate_name(name)
            versions = pages.numbered(self.db, name, numbers)
        else:
            versions = self.versions(name)
        return registry.metric_columns(self.parts, versions, metrics)

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
        version = model.log(
            self.parts,
            obj,
            name,
            format=format,
            input_example=input_example,
            init_kwargs=init_kwargs,
            message=message,
            metadata=metadata,
            run_id=self.parts.active_run(run_id),
            add=self.add_content,
        )
        return self.register(version, name) if register else version

    def load_model(
        self, ref: Target, *, trust: bool | Sequence[str] = False, checked: bool = True
    ) -> Any:
        """The object a model version holds, ready to use; never unpickles unless trusted.

        trust=True allows pickle-based formats and every skops type; a list of type names
        allows just those. `.modelkeep/config.toml` can set trust_pickle and trusted_types.
        The version is recorded as an input of the active run, if any.

        A model with a signature and a `predict` comes back wrapped so that predict (and
        predict_proba, …) check their input against the signature first; `.native` is the
        model itself, and checked=False returns it unwrapped. See docs/models.md.
        """
        version = self.show(ref)
        loaded = model.load(self.parts, version, trust=trust)
        self._record_input(self.parts.active_run(None), version)
        return model.checked(loaded, version) if checked else loaded

    def model_spec(self, ref: Target) -> ModelSpec:
        """What a model version records: format, libraries, requirements, signature."""
        return model.spec_of(self.show(ref))

    def input_example(self, ref: Target) -> Any:
        """The stored input example as the type it was logged as: a DataFrame with its
        columns, dtypes and simple index, an array with its dtype and shape, a dict of
        arrays, a list, text. Decoded here from `input_example_doc`, never unpickled."""
        version = self.show(ref)
        return model.decode_example(version, self.input_example_doc(version))

    def input_example_doc(self, ref: Target) -> dict[str, Any] | None:
        """The stored input example as its JSON document (values under "data")."""
        return model.example_doc(self.parts, self.show(ref))

    def card(self, ref: Target) -> str:
        """The Markdown model card of a model version, from what was recorded."""
        version = self.show(ref)
        self._reap()
        return cards.card(self.parts, version)

    # -- model registry ---------------------------------------------------------

    def register(self, source_ref: Target, name: str, *, reason: str = "") -> Version:
        """Make the version source_ref names the next version of model name (no bytes copied)."""
        validate_name(name)
        # A ref is resolved inside the registering transaction, not read once more before it.
        source = source_ref if isinstance(source_ref, Version) else parse_ref(source_ref)
        return registry.register(self.parts, source, name, reason)[0]

    def promote(
        self, ref: Target, stage: str, *, reason: str = "", force: bool = False
    ) -> registry.Promotion:
        """Move a registered version to staging, production or archived, through the policy."""
        return registry.promote(self.parts, self.show(ref), stage, reason=reason, force=force)

    def readiness(self, ref: Target, stage: str = "production") -> registry.Readiness:
        """Whether ref could move to stage now and what stands in the way (the gates with
        their measured values, the stage order, approvals), without moving or recording."""
        return registry.readiness(self.parts, self.show(ref), stage)

    def archive(self, ref: Target, *, reason: str = "") -> Version:
        return registry.archive(self.parts, self.show(ref), reason)

    def rollback(self, name: str, *, to: str | None = None, reason: str) -> registry.Promotion:
        """Put back the previous production version (or `to`); `displaced` is the one archived."""
        restored, archived = registry.rollback(self.parts, name, to, reason)
        return registry.Promotion(restored, "production", archived, (), ())

    def approve(self, ref: Target, stage: str, *, reason: str = "") -> meta.Approvals:
        return registry.approve(self.parts, self.show(ref), stage, reason)

    def set_alias(self, alias: str, target: Target, *, reason: str = "") -> Version:
        """Point NAME@ALIAS at a version of NAME."""
        return registry.set_alias(self.parts, alias, self.show(target), reason)

    def remove_alias(self, alias: str, *, reason: str = "") -> None:
        registry.remove_alias(self.parts, alias, reason)

    def registered_model(self, name: str) -> model_tags.ModelDoc:
        """A registered model: its description, tags, aliases and versions."""
        return model_tags.one(self.db, name)

    def describe_model(self, name: str, text: str, *, reason: str = "") -> None:
        """Set a registered model's description (an audit event when it changes)."""
        model_tags.describe_model(self.db, name, text, self.parts.user, reason)

    def tag_model(self, name: str, key: str, value: str, *, reason: str = "") -> None:
        """Set tag key of a registered model (an audit event)."""
        model_tags.set_model_tag(self.db, name, key, value, self.parts.user, reason)

    def untag_model(self, name: str, key: str) -> None:
        """Remove tag key of a registered model (TagNotFound if it has none)."""
        model_tags.delete_model_tag(self.db, name, key, self.parts.user)

    def rename_model(self, name: str, new_name: str) -> None:
        """Give a registered model a new name; versions, stages, aliases and tags follow,
        and its history is kept (`history NEW_NAME`)."""
        registry.rename_model(self.parts, name, new_name)

    def delete(self, ref: Target, *, reason: str) -> Version:
        """Tombstone a version (never one in staging or production); gc frees its bytes."""
        return registry.delete(self.parts, self.show(ref), reason)

    def models(self) -> list[meta.Model]:
        return reads.models(self.db)

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

    # -- the metadata database -------------------------------------------------

    def migrate(self, to: str, *, progress: Progress = NULL_PROGRESS) -> Moved:
        """Copy every record to the empty database `to` (`postgresql://HOST/DB`, `sqlite`
        for the default file, `sqlite:///PATH`), check it, and switch this repository to
        it: the store's binding and database_url in .modelkeep/config.toml. A failure
        leaves the old database in use, untouched (see `modelkeep/migrate.py`)."""
        moved = migrate.move(self.parts, to, progress)
        self.db.close()
        settings = config.load(self.root)
        self.parts = Parts(settings, meta.Database(settings.database_url), self.store)
        self.db.migrate()
        return moved

    # -- Git work tree ----------------------------------------------------------

    def status(self) -> list[worktree.PathStatus]:
        """Tracked paths of the Git work tree and how they compare with modelkeep.lock."""
        return worktree.status(self.parts, self.versions)

    def checkout(
        self, paths: Sequence[str] = (), *, force: bool = False, progress: Progress = NULL_PROGRESS
    ) -> list[worktree.PathStatus]:
        """Make tracked paths match modelkeep.lock; returns the paths that were restored."""
        return worktree.checkout(
            self.parts, paths, force=force, progress=progress, versions=self.versions
        )

    def install_hooks(self, *, force: bool = False) -> Path:
        """A Git post-checkout hook that runs `modelkeep checkout`; returns its path."""
        return worktree.install_hooks(self.parts, force=force)

    # -- pages of the web UI: one bounded slice each, with how many there are -----------

    def version_page(
        self, name: str, *, limit: int = 50, offset: int = 0, descending: bool = True
    ) -> pages.VersionPage:
        """One page of an artifact's versions (newest first unless descending is false)."""
        validate_name(name)
        return pages.versions_page(self.db, name, limit=limit, offset=offset, descending=descending)

    def model_page(self, *, search: str = "", limit: int = 50, offset: int = 0) -> pages.ModelPage:
        """One page of the registered models whose name holds search (any case)."""
        return pages.models_page(self.db, search=search, limit=limit, offset=offset)

    def model_summary(self, name: str) -> pages.ModelSummary:
        """One registered model's stages, aliases and last change."""
        validate_name(name)
        return pages.model_summary(self.db, name)

    def audit_page(
        self,
        name: str | None = None,
        *,
        actor: str = "",
        kind: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> pages.EventPage:
        """One page of the event log, newest first, filtered on the server."""
        if name:
            validate_name(name)
        return pages.events_page(
            self.db, name or None, actor=actor, kind=kind, since=since, until=until,
            limit=limit, offset=offset,
        )  # fmt: skip

    def stages_at(self, names: Sequence[str], at: datetime) -> dict[str, dict[str, int | None]]:
        """For each model named (at most one page's worth), the version number in
        production and staging at a past moment, from the event log (None: none then)."""
        from modelkeep.errors import AliasNotFound, NothingAtTime, VersionDeleted

        pages.check_page(max(1, len(names)), 0)
        out: dict[str, dict[str, int | None]] = {}
        for name in names:
            validate_name(name)
            held: dict[str, int | None] = {}
            for stage in ("production", "staging"):
                try:
                    held[stage] = meta.resolve(self.db, f"{name}@{stage}", at=at).number
                except (AliasNotFound, NothingAtTime, VersionDeleted):
                    held[stage] = None
            out[name] = held
        return out

    def file_page(
        self, ref: Target, *, path: str = "", limit: int = 100, offset: int = 0
    ) -> FilePage:
        """One page of one folder of a version (a lone file: that file), by name."""
        from modelkeep.results import FilePage
        from modelkeep.store.trees import Kind

        pages.check_page(limit, offset)
        version = self.show(ref)
        path = path.strip("/")
        with content.explained(self.parts, version):
            top = content.entry(self.parts, version, path or None)
            if top.kind != Kind.DIR:
                if path:
                    raise InvalidArgument(f"{path!r} in {version.ref} is a file, not a folder")
                return FilePage("", self.files(version), 1, offset, limit)
            entries = self.store.tree(top.id).entries
            prefix = path + "/" if path else ""
            items = [
                FileInfo(
                    prefix + os.fsdecode(e.name),
                    content.KIND_NAMES[e.kind],
                    e.size,
                    e.mode,
                    content_id(e.id),
                )
                for e in entries[offset : offset + limit]
            ]
        return FilePage(path, items, len(entries), offset, limit)

    def diff_page(
        self, old_ref: Target, new_ref: Target, *, limit: int = 100, offset: int = 0
    ) -> DiffPage:
        """One page of diff's changes, with the counts of the whole diff."""
        from modelkeep.results import DiffPage

        pages.check_page(limit, offset)
        whole = self.diff(old_ref, new_ref)
        counts = {
            s: sum(c.status == s for c in whole.changes) for s in ("added", "removed", "modified")
        }
        items = list(whole.changes[offset : offset + limit])
        return DiffPage(whole.old, whole.new, counts, items, len(whole.changes), offset, limit)

    def lineage_neighbours(self, ref: Target, *, limit: int = 100) -> pages.Neighbours:
        """A version's lineage one step each way, at most limit of the runs that used it."""
        v = self.show(ref)
        return pages.neighbours(self.db, v.name, v.number, limit=limit)

    def metric_series(
        self, ref: str, *, keys: Sequence[str] = (), max_points: int = 1000
    ) -> list[pages.Series]:
        """A run's metrics, each thinned to at most max_points points (the last kept)."""
        return pages.metric_series(
            self.db, self.run(ref).id, keys=list(keys) or None, max_points=max_points
        )

    def dedup(self, ref: Target) -> Dedup:
        """How many of a version's bytes are in chunks the previous live version of the
        same artifact already holds (reused) and how many are not (new)."""
        from modelkeep.results import Dedup
        from modelkeep.store.dedup import shared

        version = self.show(ref)
        previous = pages.previous_version(self.db, version.name, version.number)
        with content.explained(self.parts, version):
            found = shared(
                self.store,
                content.entry(self.parts, previous, None) if previous else None,
                content.entry(self.parts, version, None),
            )
        return Dedup(
            version.ref,
            previous.ref if previous else None,
            version.size,
            found.new,
            found.reused,
            found.changed_files,
            found.complete,
        )

    # -- deprecated: helpers that served the old circle between Repo and its parts ---

    def root_of(self, version: Version) -> Root:
        """Deprecated: use `modelkeep.content.root_of`."""
        _deprecated("Repo.root_of", "modelkeep.content.root_of(version)")
        return content.root_of(version)

    def holds(self, digest: str) -> bool:
        """Deprecated: use `modelkeep.content.holds`."""
        _deprecated("Repo.holds", "modelkeep.content.holds(repo.parts, digest)")
        return content.holds(self.parts, digest)

    def explained(self, version: Version | None = None) -> AbstractContextManager[None]:
        """Deprecated: use `modelkeep.content.explained`."""
        _deprecated("Repo.explained", "modelkeep.content.explained(repo.parts, version)")
        return content.explained(self.parts, version)


@contextmanager
def _attachable(
    source: str | os.PathLike[str] | bytes, name: str | None
) -> Iterator[tuple[Path, str]]:
    """(a file holding source, the attachment's name): bytes go through a temporary file."""
    if isinstance(source, bytes | bytearray | memoryview):
        if name is None:
            raise InvalidArgument("attaching bytes needs a name, e.g. name='report.txt'")
        with tempfile.TemporaryDirectory(prefix="modelkeep-attach-") as tmp:
            path = Path(tmp) / "attachment"
            path.write_bytes(bytes(source))
            yield path, name
        return
    yield Path(source), name if name is not None else Path(source).name


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated and goes in the next release; use {new}",
        DeprecationWarning,
        stacklevel=3,
    )


# The web UI's pages (Repo.*_page and friends): imported here, apart from the imports above,
# and on first use, as those are.
if TYPE_CHECKING:
    from modelkeep.meta import pages
    from modelkeep.results import Dedup, DiffPage, FilePage
else:
    pages = LazyModule("modelkeep.meta.pages")
