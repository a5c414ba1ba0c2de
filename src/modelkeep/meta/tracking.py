"""MLflow's view of runs: the rows `modelkeep run` writes, read and written as MLflow does.

An MLflow run is a modelkeep run (a row in `runs`, with params, metrics and tags), so
`modelkeep runs` lists it and `runs --where` finds it. What MLflow adds is kept in the same
rows: the experiment in `runs.experiment_id`, its `mlflow.*` system tags as run tags, a
param's text as a JSON string. The differences MLflow brings are the client's clock (it
sends start and end times and each metric's timestamp, which are kept as sent) and no
process to watch: the host is "mlflow", every write counts as a heartbeat, and a run the
reaper marked killed after a silence runs again when its client next writes to it.

modelkeep's rules stay: params and metrics are written while the run is running, a param
keeps its first value, and a run that ended does not start again.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, true
from sqlalchemy.orm import Session

from modelkeep.errors import InvalidArgument, RunNotActive, RunNotFound
from modelkeep.meta import experiments, housekeeping
from modelkeep.meta.db import Database
from modelkeep.meta.models import ExperimentRow, MetricRow, ParamRow, RunRow, RunTagRow
from modelkeep.meta.run_reads import FAILED, FINISHED, KILLED, RESERVED, RUNNING
from modelkeep.meta.runs import write_params

HOST = "mlflow"  # no process of the server's host: reaped only after a silence (capture/process)
MAX_KEY = 250  # MLflow's limits
MAX_PARAM_VALUE = 6000
MAX_STEP = 2**63 - 1
_KEY = re.compile(r"[\w./\- :]+")
PARENT_TAG = "mlflow.parentRunId"
NAME_TAG = "mlflow.runName"
# A run the reaper marked killed (no write for a while) may still be ended by its client.
_REAPED_ERROR = "its process ended without ending the run"


@dataclass(frozen=True, slots=True)
class LoggedMetric:
    key: str
    value: float
    timestamp: int  # ms since the epoch
    step: int


@dataclass(frozen=True, slots=True)
class TrackedRun:
    id: str
    name: str
    experiment_id: int
    user: str
    status: str  # modelkeep's: running, finished, failed, killed
    started_at: datetime
    ended_at: datetime | None
    deleted: bool
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, LoggedMetric] = field(default_factory=dict)  # the last of each key
    tags: dict[str, str] = field(default_factory=dict)
    artifact_uri: str = ""  # where the client logs its files (experiments.artifact_root)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


MAX_MS = 253402300800000  # the first millisecond of year 10000


def from_ms(value: int) -> datetime:
    if not 0 <= value < MAX_MS:
        raise InvalidArgument(f"time {value} (ms since 1970) is out of range")
    return datetime.fromtimestamp(value / 1000, UTC)


def check_key(what: str, key: object) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key) or len(key) > MAX_KEY:
        raise InvalidArgument(
            f"{what} key {str(key)[:60]!r}: a key is 1-{MAX_KEY} letters, digits, blanks "
            "and _ - . / :"
        )
    return key


def check_param(key: object, value: object) -> tuple[str, str]:
    check_key("param", key)
    if not isinstance(value, str) or len(value) > MAX_PARAM_VALUE:
        raise InvalidArgument(
            f"param {key!r}: a value is text of {MAX_PARAM_VALUE} characters at most"
        )
    return str(key), value


def check_metric(m: LoggedMetric) -> LoggedMetric:
    check_key("metric", m.key)
    if not -MAX_STEP <= m.step <= MAX_STEP:
        raise InvalidArgument(f"metric {m.key!r}: step {m.step} is out of range")
    if not 0 <= m.timestamp < MAX_MS:
        raise InvalidArgument(f"metric {m.key!r}: timestamp {m.timestamp} is out of range")
    return m


def _reaped(row: RunRow) -> bool:
    """Marked killed by the reaper for a silence only: its client may still be training."""
    return row.status == KILLED and row.host == HOST and row.error == _REAPED_ERROR


def _writable(s: Session, run_id: str) -> RunRow:
    """A run to log to; one the reaper took for dead is running again, since its client
    has just shown it is not (an MLflow client sends no heartbeats of its own)."""
    row = housekeeping.run_row(s, run_id)
    if _reaped(row):
        row.status, row.ended_at, row.error = RUNNING, None, ""
    if row.status != RUNNING:
        raise RunNotActive(run_id, row.status)
    row.heartbeat_at = datetime.now(UTC)
    return row


def create_run(
    db: Database,
    *,
    run_id: str,
    experiment_id: int,
    name: str,
    user: str,
    started_at: datetime,
    tags: Mapping[str, str],
) -> None:
    """A running run in an active experiment. Its parent (an `mlflow.parentRunId` tag) is
    recorded as modelkeep's when that run is running, as a nested run's is."""
    housekeeping.check_run_name(name)
    checked = {
        housekeeping.check_tag_key(k): housekeeping.check_tag_value(k, v) for k, v in tags.items()
    }
    with db.write() as s:
        experiments.check_active(s, experiment_id)
        parent = s.get(RunRow, checked.get(PARENT_TAG, ""))
        s.add(
            RunRow(
                id=run_id,
                name=name,
                status=RUNNING,
                user=user,
                host=HOST,
                pid=0,
                started_at=started_at,
                heartbeat_at=datetime.now(UTC),
                error="",
                command_json=json.dumps({"client": "mlflow"}),
                code_json="{}",
                parent_id=parent.id if parent is not None and parent.status == RUNNING else None,
                experiment_id=experiment_id or None,
            )
        )
        s.flush()
        housekeeping.write_tags(s, run_id, checked)


def update_run(
    db: Database,
    run_id: str,
    *,
    status: str | None = None,
    ended_at: datetime | None = None,
    name: str | None = None,
) -> None:
    """MLflow's UpdateRun: a new name at any time; an end (status, time) once. A run that
    the reaper took for dead (its client wrote nothing for a while) may still be ended."""
    if name is not None:
        housekeeping.check_run_name(name)
    with db.write() as s:
        row = housekeeping.run_row(s, run_id)
        if name is not None:
            row.name = name
            housekeeping.write_tags(s, run_id, {NAME_TAG: name})
        if status is None or status == row.status:
            return
        reaped = _reaped(row)
        if status == RUNNING and reaped:  # `start_run(run_id=…)` after a long silence
            row.status, row.ended_at, row.error = RUNNING, None, ""
            row.heartbeat_at = datetime.now(UTC)
            return
        if status == RUNNING or not (row.status == RUNNING or reaped):
            raise RunNotActive(run_id, row.status)
        if status not in (FINISHED, FAILED, KILLED):
            raise InvalidArgument(f"unknown run status {status!r}")
        row.status = status
        row.ended_at = ended_at or datetime.now(UTC)
        if reaped:
            row.error = ""


def log_batch(
    db: Database,
    run_id: str,
    *,
    metrics: Sequence[LoggedMetric] = (),
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Metrics, params and tags in one transaction: all are kept or none."""
    metrics = [check_metric(m) for m in metrics]
    params = dict(check_param(k, v) for k, v in (params or {}).items())
    tags = {
        housekeeping.check_tag_key(k): housekeeping.check_tag_value(k, v)
        for k, v in (tags or {}).items()
    }
    with db.write() as s:
        if metrics or params:
            _writable(s, run_id)
        else:
            housekeeping.run_row(s, run_id)
        write_params(s, run_id, {k: json.dumps(v) for k, v in params.items()})
        s.add_all(
            MetricRow(
                run_id=run_id,
                key=m.key,
                value=None if math.isnan(m.value) else m.value,
                step=m.step,
                logged_at=from_ms(m.timestamp),
            )
            for m in metrics
        )
        housekeeping.write_tags(s, run_id, tags)
        if NAME_TAG in tags:  # MLflow renames a run by its tag too
            housekeeping.check_run_name(tags[NAME_TAG])
            housekeeping.run_row(s, run_id).name = tags[NAME_TAG]


def delete_tag(db: Database, run_id: str, key: str) -> None:
    with db.write() as s:
        housekeeping.run_row(s, run_id)
        tag = s.get(RunTagRow, (run_id, key))
        if tag is None or key.startswith(RESERVED):
            raise RunNotFound(f"{run_id} tag {key!r}")
        s.delete(tag)


def owner(db: Database, run_id: str) -> str:
    """The account a run is, read alone: checked before every write to it."""
    with db.read() as s:
        user = s.scalars(select(RunRow.user).where(RunRow.id == run_id)).first()
    if user is None:
        raise RunNotFound(run_id)
    return user


def folder(db: Database, run_id: str) -> tuple[str, str] | None:
    """(the account, the artifact folder under the server's artifact proxy) of a run, or
    None if there is no such run; the folder is "" when its experiment logs elsewhere."""
    with db.read() as s:
        row = s.execute(
            select(RunRow.user, RunRow.experiment_id, ExperimentRow.artifact_location)
            .outerjoin(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
            .where(RunRow.id == run_id)
        ).first()
    if row is None:
        return None
    root = experiments.artifact_root(row.experiment_id or experiments.DEFAULT_ID, row[2] or "")
    return row.user, proxied_path(f"{root}/{run_id}/artifacts")


def proxied_path(uri: str) -> str:
    """The path under the artifact proxy's root of an `mlflow-artifacts:` URI ("" for any
    other URI: those files are not the server's)."""
    if not uri.startswith("mlflow-artifacts:"):
        return ""
    rest = uri.removeprefix("mlflow-artifacts:")
    if rest.startswith("//"):  # mlflow-artifacts://HOST/PATH
        rest = rest[2:].partition("/")[2]
    return rest.strip("/")


def get(db: Database, run_id: str) -> TrackedRun:
    found = load(db, ids=[run_id])
    if not found:
        raise RunNotFound(run_id)
    return found[0]


def load(
    db: Database,
    *,
    ids: Iterable[str] | None = None,
    experiment_ids: Sequence[int] | None = None,
    deleted: bool | None = None,
    keys: Collection[tuple[str, str]] | None = None,
) -> list[TrackedRun]:
    """Runs with their params, tags and last metric of each key, newest first. keys, as
    (`params`|`tags`|`metrics`, key) pairs, loads only those (what a search filters and
    orders on: the page it returns is then loaded whole, by ids)."""
    where: list[Any] = []
    if ids is not None:
        where.append(RunRow.id.in_(list(ids)))
    if experiment_ids is not None:
        named = [i for i in experiment_ids if i != experiments.DEFAULT_ID]
        default = experiments.DEFAULT_ID in experiment_ids
        where.append(
            or_(RunRow.experiment_id.in_(named), RunRow.experiment_id.is_(None))
            if default
            else RunRow.experiment_id.in_(named)
        )
    if deleted is not None:
        where.append(RunRow.deleted_at.is_not(None) if deleted else RunRow.deleted_at.is_(None))
    chosen = select(RunRow.id).where(*where)  # one query per table, however many runs

    def only(column: Any, entity: str) -> Any:
        wanted = sorted(k for e, k in keys or () if e == entity)
        return column.in_(wanted) if keys is not None else true()

    with db.read() as s:
        rows = list(
            s.execute(
                select(*_RUN_COLUMNS).where(*where).order_by(RunRow.started_at.desc(), RunRow.id)
            )
        )
        params: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        metrics: dict[str, dict[str, LoggedMetric]] = defaultdict(dict)
        roots = {
            e.id: e.artifact_location
            for e in s.execute(
                select(ExperimentRow.id, ExperimentRow.artifact_location).where(
                    ExperimentRow.id.in_({r.experiment_id for r in rows if r.experiment_id})
                )
            )
        }
        for p in s.execute(
            select(ParamRow.run_id, ParamRow.key, ParamRow.value_json).where(
                ParamRow.run_id.in_(chosen), only(ParamRow.key, "params")
            )
        ):
            params[p.run_id][p.key] = param_text(p.value_json)
        for t in s.execute(
            select(RunTagRow.run_id, RunTagRow.key, RunTagRow.value).where(
                RunTagRow.run_id.in_(chosen), only(RunTagRow.key, "tags")
            )
        ):
            if not t.key.startswith(RESERVED):
                tags[t.run_id][t.key] = t.value
        last = (
            select(func.max(MetricRow.id))
            .where(MetricRow.run_id.in_(chosen), only(MetricRow.key, "metrics"))
            .group_by(MetricRow.run_id, MetricRow.key)
        )
        for row in s.execute(select(*_METRIC_COLUMNS).where(MetricRow.id.in_(last))):
            metrics[row.run_id][row.key] = _metric(row)
    return [
        TrackedRun(
            id=r.id,
            name=r.name,
            experiment_id=r.experiment_id or experiments.DEFAULT_ID,
            user=r.user,
            status=r.status,
            started_at=r.started_at,
            ended_at=r.ended_at,
            deleted=r.deleted_at is not None,
            params=dict(sorted(params[r.id].items())),
            metrics=dict(sorted(metrics[r.id].items())),
            tags=dict(sorted(tags[r.id].items())),
            artifact_uri=experiments.artifact_root(
                r.experiment_id or experiments.DEFAULT_ID, roots.get(r.experiment_id or -1, "")
            )
            + f"/{r.id}/artifacts",
        )
        for r in rows
    ]


def param_text(value_json: str) -> str:
    """A param as MLflow's text: a string as it is, any other value as its JSON."""
    value = json.loads(value_json)
    return value if isinstance(value, str) else json.dumps(value)


_RUN_COLUMNS = (
    RunRow.id, RunRow.name, RunRow.experiment_id, RunRow.user, RunRow.status,
    RunRow.started_at, RunRow.ended_at, RunRow.deleted_at,
)  # fmt: skip
_METRIC_COLUMNS = (
    MetricRow.run_id,
    MetricRow.key,
    MetricRow.value,
    MetricRow.step,
    MetricRow.logged_at,
)  # columns, not ORM rows: a search reads thousands, and building objects was half its time


def _metric(row: Any) -> LoggedMetric:
    value = math.nan if row.value is None else row.value
    return LoggedMetric(row.key, value, ms(row.logged_at), row.step)


def history(db: Database, run_id: str, key: str) -> list[LoggedMetric]:
    with db.read() as s:
        housekeeping.run_row(s, run_id)
        rows = s.scalars(
            select(MetricRow)
            .where(MetricRow.run_id == run_id, MetricRow.key == key)
            .order_by(MetricRow.id)
        )
        return [_metric(r) for r in rows]
