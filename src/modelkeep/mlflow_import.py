"""`modelkeep import mlflow SOURCE`: an MLflow store's history brought into this store.

MLflow is read with its own client (`MlflowClient`, the `modelkeep[mlflow]` extra), so
every store it reads works: a tracking server (`http(s)://`), a database
(`sqlite:///mlflow.db`) or a `./mlruns` folder. What it brings is written through the
same library functions `modelkeep serve`'s MLflow API uses (meta/experiments.py,
meta/tracking.py) and through the registry library, so an imported run is a run as if
the MLflow client had logged it to `modelkeep serve`, with its own id.

**Idempotent and resumable.** Experiments are matched by name, runs by id, model
versions by the MLflow (model, version) recorded in their metadata, artifacts by path.
A run is brought in phases that leave it running until the end (created, then its
params, tags and whole metric history in one transaction, then its artifacts, then the
model versions it produced, linked to it while it runs, then its end and delete), so
an import stopped anywhere leaves runs that are still running, which the next import
completes: a run whose end matches MLflow's is complete and is not touched again, and a
metric history is written in one transaction, so it is never written twice. A run with
an artifact that could not be brought is left running, so the next import retries it.

**History is not re-decided.** Stages and aliases are what MLflow's users chose; the
policy's gates, approvals and movers decide new changes, not ones that already happened.
The import records them through the metadata layer's own moves (`meta.move`,
`meta.set_alias`), each an ordinary hash-chained event whose reason says it was imported
and when it happened in MLflow. The event's own time is the import's: the chain keeps
event times rising with event ids (`meta/chain.py`), which `--at` relies on, so an old
time cannot be its `at`. A stage or alias is set only where the version (or alias)
has none here yet, so re-importing never undoes a change made in modelkeep since.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from modelkeep import meta
from modelkeep.errors import (
    ArtifactNotFound,
    ExperimentNotFound,
    MlflowMissing,
    MlflowSourceNotFound,
    ModelkeepError,
    NotAnMlflowStore,
)
from modelkeep.meta import (
    experiments,
    housekeeping,
    mlflow_artifacts,
    model_tags,
    reads,
    run_reads,
    tracking,
)
from modelkeep.meta.run_reads import FAILED, FINISHED, KILLED, RUNNING, RunRecord
from modelkeep.redact import mask_url
from modelkeep.refs import validate_alias, validate_name

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

    from modelkeep.meta import Version
    from modelkeep.repo import Repo

EXTRA = "modelkeep[mlflow]"
META_KEY = "mlflow"  # a version's metadata key holding the MLflow model and version
SOURCE_TAG = "modelkeep.imported_from"  # on an imported experiment: it follows MLflow's stage
LOCATION_TAG = "modelkeep.mlflow_artifact_location"  # where MLflow kept its artifacts
PAGE = 1000
_RUN_ID = re.compile(r"[0-9a-f]{32}")
# Tables every MLflow database has had since 1.x, and modelkeep's (or another app's) has not.
_MLFLOW_TABLES = {"experiments", "runs", "metrics", "params", "tags", "alembic_version"}
_STATUS = {"RUNNING": RUNNING, "SCHEDULED": RUNNING, "FINISHED": FINISHED, "FAILED": FAILED}
_STAGES = {"staging": "staging", "production": "production", "archived": "archived"}
T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class Skipped:
    """Something MLflow has that was not brought, and why."""

    what: str
    why: str

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "why": self.why}


@dataclass(slots=True)
class ImportReport:
    """What an import brought (or, with dry_run, would bring); filled as it goes."""

    source: str
    dry_run: bool = False
    experiments: int = 0
    runs: int = 0
    params: int = 0
    metrics: int = 0  # metric values, every step of every history
    tags: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    models: int = 0
    versions: int = 0
    stages: int = 0
    aliases: int = 0
    descriptions: int = 0
    already: dict[str, int] = field(
        default_factory=lambda: {"experiments": 0, "runs": 0, "artifacts": 0, "versions": 0}
    )
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # brought, but not exactly as MLflow has it

    @property
    def ok(self) -> bool:
        return not self.skipped

    def skip(self, what: str, why: object) -> None:
        self.skipped.append(Skipped(what, str(why).splitlines()[0][:500] if str(why) else "?"))

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "brought": {
                "experiments": self.experiments,
                "runs": self.runs,
                "params": self.params,
                "metrics": self.metrics,
                "tags": self.tags,
                "artifacts": self.artifacts,
                "artifact_bytes": self.artifact_bytes,
                "models": self.models,
                "versions": self.versions,
                "stages": self.stages,
                "aliases": self.aliases,
                "descriptions": self.descriptions,
            },
            "already": dict(self.already),
            "skipped": [s.to_json() for s in self.skipped],
            "notes": list(self.notes),
        }


def import_mlflow(
    repo: Repo, source: str, *, registry_uri: str | None = None, dry_run: bool = False
) -> ImportReport:
    """Bring the MLflow store at source (a tracking URI or an `mlruns` folder) into repo.

    What could not be brought is in the report's `skipped`, with why; the rest is brought
    regardless. Running it again brings only what is missing."""
    uri, registry = _check_source(source, registry_uri)
    report = ImportReport(mask_url(source), dry_run)
    with tempfile.TemporaryDirectory(prefix="modelkeep-mlflow-") as temp, _mlflow_settings(uri):
        uri, registry = _snapshot(uri, temp), _snapshot(registry, temp)
        client = _client(uri, registry)
        _Importer(repo, client, uri, registry, report, Path(temp)).run()
    return report


# -- the source -----------------------------------------------------------------------------


def _check_source(source: str, registry_uri: str | None) -> tuple[str, str]:
    """(tracking URI, registry URI), after refusing a source that is missing or is plainly
    not an MLflow store: MLflow's client would create a fresh store there instead."""
    if source.startswith(("http://", "https://")):
        return source, registry_uri or source
    if source.startswith("sqlite:///"):
        _check_sqlite(source, source.removeprefix("sqlite:///"))
        if registry_uri and registry_uri.startswith("sqlite:///"):
            _check_sqlite(registry_uri, registry_uri.removeprefix("sqlite:///"))
        return source, registry_uri or source
    if "://" in source and not source.startswith("file://"):
        raise NotAnMlflowStore(
            mask_url(source), "give an http(s):// server, a sqlite:/// file or an mlruns folder"
        )
    folder = Path(source.removeprefix("file://")).expanduser().absolute()
    if not folder.exists():
        raise MlflowSourceNotFound(source)
    if not folder.is_dir() or not (any(folder.glob("*/meta.yaml")) or (folder / "models").is_dir()):
        raise NotAnMlflowStore(source, "it has no experiment folders (<id>/meta.yaml)")
    uri = folder.as_uri()
    return uri, registry_uri or uri


def _check_sqlite(source: str, path: str) -> None:
    if not os.path.isfile(path):
        raise MlflowSourceNotFound(source)
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise NotAnMlflowStore(source, f"it is not an SQLite database ({exc})") from exc
    missing = _MLFLOW_TABLES - names
    if missing:
        raise NotAnMlflowStore(source, f"it has no {', '.join(sorted(missing))} table")


def _snapshot(uri: str, temp: str) -> str:
    """A copy of an SQLite source, read instead of it: MLflow's client upgrades a database
    of an older MLflow in place when it opens it, and an import never writes to its source."""
    if not uri.startswith("sqlite:///"):
        return uri
    path = uri.removeprefix("sqlite:///")
    copy = os.path.join(temp, f"source-{abs(hash(path))}.db")
    if not os.path.exists(copy):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
    return f"sqlite:///{copy}"


@contextmanager
def _mlflow_settings(uri: str) -> Iterator[None]:
    """No progress bar of MLflow's own on stderr; and an `mlruns` folder read, which MLflow 3
    does only when told to (its file store is in maintenance mode): importing one is what
    the user asked for."""
    wanted = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    if uri.startswith("file:"):
        wanted["MLFLOW_ALLOW_FILE_STORE"] = "true"
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    chatty = logging.getLogger("mlflow")
    level = chatty.level
    chatty.setLevel(logging.WARNING)  # its "Creating initial MLflow database tables…"
    try:
        yield
    finally:
        chatty.setLevel(level)
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _client(uri: str, registry: str) -> MlflowClient:
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise MlflowMissing(EXTRA) from exc
    return MlflowClient(tracking_uri=uri, registry_uri=registry)


def _paged(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    token = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return


def _stage(v: ModelVersion) -> str | None:
    """modelkeep's stage for an MLflow version's, None for MLflow's "None"."""
    return _STAGES.get((v.current_stage or "").lower())


def _when(ms: int | None) -> str:
    if ms is None:
        return "an unknown time"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


# -- the rows no library function writes yet ------------------------------------------------
# The registry helper's setters of model and version tags and descriptions replace these
# once they are on main.


def _describe_model(
    db: meta.Database, name: str, description: str, tags: Mapping[str, str], actor: str, why: str
) -> int:
    """Give a registered model MLflow's description and tags, each change an audited event
    (none when they are already so, so a second import adds nothing): how many changed."""
    current = model_tags.one(db, name)
    changed = 0
    if description and current.description != description:
        model_tags.describe_model(db, name, description, actor, why)
        changed += 1
    for key, value in tags.items():
        if current.tags.get(key) != value:
            model_tags.set_model_tag(db, name, key, value, actor, why)
    return changed


def _describe_version(
    db: meta.Database,
    name: str,
    number: int,
    description: str,
    tags: Mapping[str, str],
    actor: str,
    why: str,
) -> int:
    (current,) = model_tags.one(db, name, number).versions
    changed = 0
    if description and current.description != description:
        model_tags.describe_version(db, name, number, description, actor, why)
        changed += 1
    for key, value in tags.items():
        if current.tags.get(key) != value:
            model_tags.set_version_tag(db, name, number, key, value, actor, why)
    return changed


# -- the import -----------------------------------------------------------------------------


class _Importer:
    def __init__(
        self,
        repo: Repo,
        client: MlflowClient,
        uri: str,
        registry: str,
        report: ImportReport,
        temp: Path,
    ) -> None:
        from mlflow.exceptions import MlflowException

        self.repo, self.client, self.uri, self.registry = repo, client, uri, registry
        self.report = report
        self.dry = report.dry_run
        self.db = repo.db
        self.reason = f"imported from MLflow {report.source}"
        self.foreign: tuple[type[BaseException], ...] = (ModelkeepError, MlflowException, OSError)
        self.experiment_ids: dict[str, int | None] = {}  # MLflow id -> modelkeep id (None: dry)
        self.open: set[str] = set()  # runs being brought now: running here until the end
        self.hold: set[str] = set()  # of those, runs left running: something was not brought
        self.reopened: set[int] = set()  # deleted experiments restored to add runs to
        self.existing: dict[str, RunRecord] = {}  # the runs here before this import
        self.temp = temp

    def run(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            found = list(self._source_experiments())
        except MlflowException as exc:
            raise NotAnMlflowStore(self.report.source, exc.message) from exc
        for e in found:
            self._experiment(e)
        runs = self._source_runs(found)
        self._create_runs(runs)
        for r in runs:
            if r.info.run_id in self.open:
                self._fill(r)
        self._registry()
        self._finish(runs)
        self._experiment_stages(found)

    def _do(self, what: str, fn: Callable[P, object], *args: P.args, **kw: P.kwargs) -> bool:
        """Whether fn(...) was done; if not, what is skipped, with why."""
        try:
            fn(*args, **kw)
        except self.foreign as exc:
            self.report.skip(what, getattr(exc, "message", None) or exc)
            return False
        return True

    def _try(self, what: str, fn: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T | None:
        """fn(...), or None with what skipped and why, when MLflow or modelkeep refuses it."""
        try:
            return fn(*args, **kw)
        except self.foreign as exc:
            self.report.skip(what, getattr(exc, "message", None) or exc)
            return None

    # -- experiments --------------------------------------------------------------------

    def _source_experiments(self) -> Iterator[Experiment]:
        from mlflow.entities import ViewType

        return _paged(
            lambda token: self.client.search_experiments(
                view_type=ViewType.ALL, max_results=PAGE, page_token=token
            )
        )

    def _experiment(self, e: Experiment) -> None:
        what = f"experiment {e.name!r}"
        tags: dict[str, str] = {}
        for key, value in e.tags.items():
            try:
                tags.update([experiments.check_tag(key, value)])
            except ModelkeepError as exc:
                self.report.skip(f"{what} tag {key!r}", exc)
        try:
            found = experiments.by_name(self.db, e.name)
        except ExperimentNotFound:
            found = None
        except ModelkeepError as exc:
            self.report.skip(what, exc)
            return
        if found is not None:
            self.report.already["experiments"] += 1
            self.experiment_ids[e.experiment_id] = found.id
            new = {k: v for k, v in tags.items() if found.tags.get(k) != v}
        else:
            self.report.experiments += 1
            if self.dry:
                self.experiment_ids[e.experiment_id] = None
                return
            marks = {SOURCE_TAG: self.report.source[: experiments.MAX_TAG_VALUE]}
            if e.artifact_location:
                marks[LOCATION_TAG] = e.artifact_location[: experiments.MAX_TAG_VALUE]
            made = self._try(what, experiments.create, self.db, e.name, tags=marks)
            if made is None:
                return
            self.experiment_ids[e.experiment_id] = made
            new = tags
        if not self.dry:
            exp_id = self.experiment_ids[e.experiment_id]
            assert exp_id is not None
            for key, value in new.items():
                self._do(f"{what} tag {key!r}", experiments.set_tag, self.db, exp_id, key, value)

    def _writable_experiment(self, exp_id: int) -> None:
        """Runs are added to an active experiment only: a deleted one is restored for the
        import and deleted again at its end."""
        if exp_id in self.reopened:
            return
        if experiments.get(self.db, exp_id).lifecycle_stage == experiments.DELETED:
            experiments.set_stage(self.db, exp_id, experiments.ACTIVE)
            self.reopened.add(exp_id)

    def _experiment_stages(self, found: list[Experiment]) -> None:
        if self.dry:
            return
        for e in found:
            exp_id = self.experiment_ids.get(e.experiment_id)
            if exp_id is None or exp_id == experiments.DEFAULT_ID:
                continue
            ours = experiments.get(self.db, exp_id)
            imported = SOURCE_TAG in ours.tags
            want = experiments.DELETED if e.lifecycle_stage == "deleted" else experiments.ACTIVE
            if exp_id in self.reopened and (want == experiments.DELETED or not imported):
                want = experiments.DELETED  # deleted before this import made it active
            if want != ours.lifecycle_stage and (imported or exp_id in self.reopened):
                experiments.set_stage(self.db, exp_id, want)

    # -- runs -----------------------------------------------------------------------------

    def _source_runs(self, found: list[Experiment]) -> list[Run]:
        """Every run of the experiments brought, deleted ones too, parents before children."""
        from mlflow.entities import ViewType

        runs: list[Run] = []
        for e in found:
            if e.experiment_id not in self.experiment_ids:
                continue  # skipped, and said so
            runs += self._runs_of(e.experiment_id, ViewType.ALL)
        by_id = {r.info.run_id: r for r in runs}

        def depth(r: Run) -> int:
            seen: set[str] = set()
            parent = r.data.tags.get(tracking.PARENT_TAG)
            while parent is not None and parent in by_id and parent not in seen:
                seen.add(parent)
                parent = by_id[parent].data.tags.get(tracking.PARENT_TAG)
            return len(seen)

        return sorted(runs, key=lambda r: (depth(r), r.info.start_time or 0, r.info.run_id))

    def _runs_of(self, experiment_id: str, view: int) -> list[Run]:
        def page(token: str | None) -> Any:
            return self.client.search_runs(
                [experiment_id], run_view_type=view, max_results=PAGE, page_token=token
            )

        return list(_paged(page))

    def _existing_runs(self, ids: list[str]) -> dict[str, RunRecord]:
        found: dict[str, RunRecord] = {}
        for start in range(0, len(ids), 500):
            for r in run_reads.runs(self.db, ids=ids[start : start + 500], deleted=None):
                found[r.id] = r
        return found

    @staticmethod
    def _status(r: Run) -> str:
        return _STATUS.get(r.info.status, KILLED)

    def _complete(self, ours: RunRecord, r: Run) -> bool:
        """Ended here as it ended in MLflow, and not by the reaper: nothing left to bring."""
        return ours.status != RUNNING and ours.status == self._status(r) and not ours.error

    def _create_runs(self, runs: list[Run]) -> None:
        self.existing = existing = self._existing_runs([r.info.run_id for r in runs])
        for r in runs:
            run_id = r.info.run_id
            what = f"run {run_id} ({r.info.run_name or 'unnamed'})"
            if not _RUN_ID.fullmatch(run_id):
                self.report.skip(what, "its id is not 32 hex digits, as modelkeep's run ids are")
                continue
            ours = existing.get(run_id)
            if ours is not None and self._complete(ours, r):
                self.report.already["runs"] += 1
                continue
            if ours is not None:  # brought half-way by an import that stopped
                reaped = ours.status != RUNNING and not self.dry  # taken for dead meanwhile
                if reaped and not self._do(
                    what, tracking.update_run, self.db, run_id, status=RUNNING
                ):
                    continue
                self.open.add(run_id)
                self.report.runs += 1
                continue
            if self._do(what, self._create_run, r):
                self.open.add(run_id)
                self.report.runs += 1

    def _create_run(self, r: Run) -> None:
        info = r.info
        name = info.run_name or r.data.tags.get(tracking.NAME_TAG) or f"mlflow-{info.run_id[:8]}"
        housekeeping.check_run_name(name)
        exp_id = self.experiment_ids[info.experiment_id]
        if self.dry or exp_id is None:
            return
        parent = r.data.tags.get(tracking.PARENT_TAG)
        tags = {tracking.NAME_TAG: name}
        if parent is not None and self._tag_ok(r, tracking.PARENT_TAG, parent):
            tags[tracking.PARENT_TAG] = parent
        self._writable_experiment(exp_id)
        started = info.start_time if info.start_time is not None else (info.end_time or 0)
        tracking.create_run(
            self.db,
            run_id=info.run_id,
            experiment_id=exp_id,
            name=name,
            user=(info.user_id or self.repo.user)[:255],
            started_at=tracking.from_ms(started),
            tags=tags,
        )

    def _tag_ok(self, r: Run, key: str, value: str) -> bool:
        try:
            housekeeping.check_tag_key(key)
            housekeeping.check_tag_value(key, value)
        except ModelkeepError as exc:
            self.report.skip(f"run {r.info.run_id} tag {key!r}", exc)
            return False
        return True

    def _fill(self, r: Run) -> None:
        """Params, tags and the whole metric history in one transaction, then artifacts."""
        run_id = r.info.run_id
        what = f"run {run_id}"
        params: dict[str, str] = {}
        for key, value in r.data.params.items():
            try:
                params.update([tracking.check_param(key, value)])
            except ModelkeepError as exc:
                self.report.skip(f"{what} param {key!r}", exc)
        tags = {k: v for k, v in r.data.tags.items() if self._tag_ok(r, k, v)}
        metrics = [] if self._has_metrics(run_id) else self._history(r)
        if metrics is None or (
            not self.dry
            and not self._do(
                what, tracking.log_batch, self.db, run_id, metrics=metrics, params=params, tags=tags
            )
        ):
            self.hold.add(run_id)  # left running: the next import tries it again
            return
        self.report.params += len(params)
        self.report.tags += len(tags)
        self.report.metrics += len(metrics)
        self._artifacts(r)

    def _has_metrics(self, run_id: str) -> bool:
        """Written already: a history is written whole in one transaction, or not at all."""
        return run_id in self.existing and bool(tracking.get(self.db, run_id).metrics)

    def _history(self, r: Run) -> list[tracking.LoggedMetric] | None:
        """Every value of every metric of the run, each key's in step order, so the last
        one is what MLflow shows as the run's metric."""
        out: list[tracking.LoggedMetric] = []
        for key in sorted(r.data.metrics):
            try:
                tracking.check_key("metric", key)
            except ModelkeepError as exc:
                self.report.skip(f"run {r.info.run_id} metric {key!r}", exc)
                continue
            history = self._try(
                f"run {r.info.run_id} metric {key!r}",
                self.client.get_metric_history,
                r.info.run_id,
                key,
            )
            if history is None:
                return None  # the run is completed by the next import
            values = sorted(history, key=lambda m: (m.step, m.timestamp))
            out += [tracking.LoggedMetric(key, m.value, m.timestamp, m.step) for m in values]
        for m in out:
            try:
                tracking.check_metric(m)
            except ModelkeepError as exc:
                self.report.skip(f"run {r.info.run_id} metric {m.key!r}", exc)
                return None
        return out

    # -- run artifacts ---------------------------------------------------------------------

    def _artifacts(self, r: Run) -> None:
        """Each file of the run's artifacts not here yet. A run with a file that could not
        be brought is left running here, so the next import tries that file again."""
        run_id = r.info.run_id
        exp_id = self.experiment_ids.get(r.info.experiment_id)
        files = self._try(f"artifacts of run {run_id}", self._files, run_id)
        if files is None:
            self.hold.add(run_id)
        for path, size in files or []:
            where = f"{exp_id}/{run_id}/artifacts/{path}"
            here = None if self.dry else mlflow_artifacts.get(self.db, where)
            if here is not None and here.size == size:
                self.report.already["artifacts"] += 1
                continue
            if self.dry:
                self.report.artifacts += 1
                self.report.artifact_bytes += size or 0
                continue
            brought = self._try(
                f"artifact {path!r} of run {run_id}",
                self._bring,
                run_id,
                path,
                where,
            )
            if brought is None:
                self.hold.add(run_id)
            else:
                self.report.artifacts += 1
                self.report.artifact_bytes += brought

    def _files(self, run_id: str) -> list[tuple[str, int | None]]:
        return list(self._walk(run_id, None))

    def _walk(self, run_id: str, path: str | None) -> Iterator[tuple[str, int | None]]:
        for info in self.client.list_artifacts(run_id, path):
            if info.is_dir:
                yield from self._walk(run_id, info.path)
            else:
                yield info.path, info.file_size

    def _bring(self, run_id: str, path: str, where: str) -> int:
        from modelkeep import content

        folder = tempfile.mkdtemp(dir=self.temp)
        local = self.client.download_artifacts(run_id, path, folder)
        with self.repo.store.writing():  # gc waits until the row keeps the content
            digest, size = content.put_file(self.repo.parts, local)
            store_id, user = self.repo.parts.store_id, self.repo.user
            mlflow_artifacts.put(self.db, where, digest, size, store_id, user)
        _remove(folder)
        return size

    # -- the model registry ----------------------------------------------------------------

    def _registry(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            models = list(
                _paged(
                    lambda token: self.client.search_registered_models(
                        max_results=PAGE, page_token=token
                    )
                )
            )
        except MlflowException as exc:
            self.report.skip("the model registry", exc.message)
            return
        for m in models:
            try:
                validate_name(m.name)
            except ModelkeepError as exc:
                self.report.skip(f"registered model {m.name!r} and its versions", exc)
                continue
            self._model(m)

    def _model(self, m: RegisteredModel) -> None:
        name = m.name
        what = f"registered model {name!r}"
        versions = self._try(what, self._versions, name)
        if versions is None:
            return
        try:
            ours = self.repo.versions(name)
        except ArtifactNotFound:
            ours = []
            self.report.models += 1
        mine = {
            (v.metadata.get(META_KEY) or {}).get("version"): v
            for v in ours
            if isinstance(v.metadata.get(META_KEY), dict)
            and v.metadata[META_KEY].get("model") == name
        }
        mapped: dict[int, Version | None] = {}
        for v in versions:
            number = int(v.version)
            found = mine.get(number)
            if found is not None:
                self.report.already["versions"] += 1
            else:
                found = self._try(f"{what} version {number}", self._add_version, v)
                if found is None and not self.dry:
                    continue
            mapped[number] = found
            if found is not None and not self.dry:
                self._do(f"{what} version {number}", self._settle, found, v)
        if self.dry:  # what would be set: where nothing is yet
            have = self._alias_names(name)
            self.report.aliases += len(set(m.aliases) - have)
            self.report.stages += sum(
                1
                for v in versions
                if _stage(v) is not None
                and ((ours_v := mapped.get(int(v.version))) is None or ours_v.stage == "none")
            )
            return
        self._stages(name, versions, mapped)
        self._aliases(m, mapped)
        tags = self._tags(what, m.tags)
        changed = self._try(
            what,
            _describe_model,
            self.db,
            name,
            m.description or "",
            tags,
            self.repo.user,
            self.reason,
        )
        self.report.descriptions += changed or 0

    def _versions(self, name: str) -> list[ModelVersion]:
        quoted = name.replace("'", "\\'")
        found = _paged(
            lambda token: self.client.search_model_versions(
                f"name = '{quoted}'", max_results=PAGE, page_token=token
            )
        )
        return sorted(found, key=lambda v: int(v.version))

    def _tags(self, what: str, tags: Mapping[str, str]) -> dict[str, str]:
        good = {}
        for key, value in tags.items():
            if not key or len(key) > 255:
                self.report.skip(f"{what} tag {key[:40]!r}", "a key is 1-255 characters")
            else:
                good[key] = value
        return good

    def _add_version(self, v: ModelVersion) -> Version | None:
        """The version's files as the next version of its model, linked to its run while
        that run is being brought, and registered."""
        self.report.versions += 1
        if self.dry:
            return None
        import mlflow.artifacts

        uri = self.client.get_model_version_download_uri(v.name, v.version)
        folder = tempfile.mkdtemp(dir=self.temp)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=folder, tracking_uri=self.uri, registry_uri=self.registry
        )
        run_id = v.run_id if v.run_id in self.open else None
        if v.run_id and run_id is None:
            self.report.notes.append(
                f"{v.name} version {v.version}: its run {v.run_id} was not brought by this "
                "import, so the version names it in its metadata only"
            )
        info = {
            "model": v.name,
            "version": int(v.version),
            "source": v.source,
            "run_id": v.run_id,
            "created": _when(v.creation_timestamp),
            "imported_from": self.report.source,
        }
        if getattr(v, "model_id", None):
            info["model_id"] = v.model_id
        added = self.repo.add_content(
            Path(local).absolute(),
            v.name,
            type="model",
            message=f"MLflow {v.name} version {v.version}",
            metadata={META_KEY: info},
            run_id=run_id,
        )
        version = added.version
        if not added.created:
            self.report.versions -= 1
            self.report.notes.append(
                f"{v.name} version {v.version} has the same files as {version.ref}: it is "
                "that version here"
            )
        elif version.number != int(v.version):
            self.report.notes.append(f"{v.name} version {v.version} is {version.ref} here")
        _remove(folder)
        return version

    def _settle(self, ours: Version, v: ModelVersion) -> None:
        """Registered, with MLflow's description and tags."""
        if not ours.registered:
            reason = f"{self.reason}; registered there at {_when(v.creation_timestamp)}"
            self.repo.register(ours, ours.name, reason=reason)
        what = f"{v.name} version {v.version}"
        changed = self._try(
            what,
            _describe_version,
            self.db,
            ours.name,
            ours.number,
            v.description or "",
            self._tags(what, v.tags),
            self.repo.user,
            self.reason,
        )
        self.report.descriptions += changed or 0

    def _stages(
        self, name: str, versions: list[ModelVersion], mapped: Mapping[int, Version | None]
    ) -> None:
        """MLflow's stages, in the order they were last changed; only where the version is
        in no stage here (so a re-import never undoes a later promotion in modelkeep). One
        version holds production here: of several in MLflow, the last moved there wins."""
        moves = [v for v in versions if _stage(v) is not None]
        moves.sort(key=lambda v: (v.last_updated_timestamp or 0, int(v.version)))
        for v in moves:
            ours = mapped.get(int(v.version))
            if ours is None:
                continue
            current = self.repo.show(ours.ref)
            stage = _stage(v)
            if stage is None or current.stage != "none" or not current.registered:
                continue
            since = _when(v.last_updated_timestamp)
            reason = f"{self.reason}; {v.current_stage} there since {since}"
            what = f"{name} version {v.version} stage {v.current_stage}"
            user = self.repo.user
            moved = self._try(what, meta.move, self.db, name, ours.number, stage, user, reason)
            if moved is None:
                continue
            self.report.stages += 1
            if moved[1] is not None:
                self.report.notes.append(
                    f"{name}: {moved[1].ref} was in Production in MLflow too; modelkeep keeps "
                    f"one production version, {ours.ref}, and archived {moved[1].ref}"
                )

    def _alias_names(self, name: str) -> set[str]:
        return {a for mod in reads.models(self.db) if mod.name == name for a in mod.aliases}

    def _aliases(self, m: RegisteredModel, mapped: Mapping[int, Version | None]) -> None:
        """MLflow's aliases, where the alias is not set here yet."""
        have = self._alias_names(m.name)
        for alias, number in sorted(m.aliases.items()):
            what = f"alias {m.name}@{alias}"
            ours = mapped.get(int(number))
            if ours is None:
                self.report.skip(what, f"version {number} was not brought")
                continue
            if alias in have:
                continue
            try:
                validate_alias(alias, settable=True)
            except ModelkeepError as exc:
                self.report.skip(what, exc)
                continue
            user = self.repo.user
            if self._do(
                what, meta.set_alias, self.db, m.name, alias, ours.number, user, self.reason
            ):
                self.report.aliases += 1

    # -- the end ----------------------------------------------------------------------------

    def _finish(self, runs: list[Run]) -> None:
        """Each run brought ends as it ended in MLflow, and is deleted if it was there."""
        if self.dry:
            return
        existing = self._existing_runs([r.info.run_id for r in runs])
        for r in runs:
            run_id = r.info.run_id
            ours = existing.get(run_id)
            if ours is None:
                continue
            status = self._status(r)
            what = f"run {run_id}"
            ending = run_id in self.open and run_id not in self.hold
            if ending and status != RUNNING and ours.status == RUNNING:
                end = r.info.end_time if r.info.end_time is not None else r.info.start_time
                ended = tracking.from_ms(end) if end is not None else None
                if not self._do(
                    what, tracking.update_run, self.db, run_id, status=status, ended_at=ended
                ):
                    continue
            if r.info.lifecycle_stage == "deleted" and not ours.deleted and ending:
                if status == RUNNING:
                    self.report.skip(f"{what}'s delete", "it is still running in MLflow")
                    continue
                user = self.repo.user
                self._do(
                    f"{what}'s delete", housekeeping.delete_run, self.db, run_id, user, self.reason
                )


def _remove(folder: str) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
