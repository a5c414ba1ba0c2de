"""Runs as rows: parameters written once, every metric value kept, inputs and outputs.

A run's status moves only from running to finished, failed or killed. A run whose owning
process died without saying so is found by `reap` (the caller decides what "alive" means)
and marked killed, so no run stays "running" forever.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from modelkeep.errors import (
    InvalidArgument,
    ParamConflict,
    RunNotActive,
    RunNotFound,
    VersionNotFound,
)
from modelkeep.meta.db import Database
from modelkeep.meta.models import (
    ArtifactRow,
    EnvironmentRow,
    MetricRow,
    ParamRow,
    RunInputRow,
    RunOutputRow,
    RunRow,
    RunTagRow,
    VersionRow,
)

RUNNING, FINISHED, FAILED, KILLED = "running", "finished", "failed", "killed"
STATUSES = (RUNNING, FINISHED, FAILED, KILLED)
MIN_PREFIX = 4
RESERVED = "modelkeep."  # the tag keys modelkeep writes itself (meta.housekeeping)
DELETED_BY = RESERVED + "deleted_by"
DELETE_REASON = RESERVED + "delete_reason"


@dataclass(frozen=True, slots=True)
class NewRun:
    id: str
    name: str
    user: str
    host: str
    pid: int
    pid_started: int | None
    command: dict[str, Any]
    code: dict[str, Any]
    env_id: str
    env_json: str  # canonical JSON of the environment, stored once per env_id
    parent_id: str | None = None  # the run it was started inside (a nested run)


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    value: float
    step: int
    logged_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": json_number(self.value),
            "step": self.step,
            "logged_at": self.logged_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    name: str
    status: str
    user: str
    host: str
    started_at: datetime
    ended_at: datetime | None
    exit_code: int | None
    error: str
    command: dict[str, Any]
    code: dict[str, Any]
    env_id: str | None
    params: dict[str, Any]
    metrics: dict[str, float]  # the last value logged for each key
    inputs: tuple[str, ...]  # refs of the versions it used
    outputs: tuple[str, ...]  # refs of the versions it produced
    parent_id: str | None = None  # the run it was started inside
    children: tuple[str, ...] = ()  # ids of the runs started inside it, oldest first
    tags: dict[str, str] = field(default_factory=dict)
    note: str = ""
    deleted_at: datetime | None = None  # a soft delete: hidden from listings, kept in lineage
    deleted_by: str = ""
    delete_reason: str = ""

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def duration(self) -> float | None:
        end = self.ended_at or (datetime.now(UTC) if self.status == RUNNING else None)
        return (end - self.started_at).total_seconds() if end else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "user": self.user,
            "host": self.host,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration": self.duration,
            "exit_code": self.exit_code,
            "error": self.error,
            "command": self.command,
            "code": self.code,
            "env_id": self.env_id,
            "params": self.params,
            "metrics": {k: json_number(v) for k, v in self.metrics.items()},
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "parent_id": self.parent_id,
            "children": list(self.children),
            "tags": self.tags,
            "note": self.note,
            "deleted_at": self.deleted_at.isoformat() if self.deleted_at else None,
            "deleted_by": self.deleted_by or None,
            "delete_reason": self.delete_reason or None,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """Several runs side by side: one row per param and per latest metric any of them has."""

    runs: tuple[RunRecord, ...]
    rows: tuple[tuple[str, tuple[Any, ...]], ...]  # ("params.lr" / "metrics.auc", values)

    @staticmethod
    def differs(values: tuple[Any, ...]) -> bool:
        return len({json.dumps(v) for v in values}) > 1

    def to_json(self) -> dict[str, Any]:
        def cell(key: str, value: Any) -> Any:
            return json_number(value) if key.startswith("metrics.") and value is not None else value

        return {
            "runs": [r.id for r in self.runs],
            "rows": [
                {
                    "key": key,
                    "values": [cell(key, v) for v in values],
                    "differs": self.differs(values),
                }
                for key, values in self.rows
            ],
        }


def compare(found: Sequence[RunRecord]) -> Comparison:
    rows: list[tuple[str, tuple[Any, ...]]] = []
    for title in ("params", "metrics"):
        for key in sorted({k for r in found for k in getattr(r, title)}):
            rows.append((f"{title}.{key}", tuple(getattr(r, title).get(key) for r in found)))
    return Comparison(tuple(found), tuple(rows))


def json_number(value: float) -> float | str:
    """JSON has no NaN or infinity: those become the strings "nan", "inf" and "-inf"."""
    return value if math.isfinite(value) else str(value)


def _now() -> datetime:
    return datetime.now(UTC)


def check_running(s: Session, run_id: str) -> RunRow:
    row = s.get(RunRow, run_id)
    if row is None:
        raise RunNotFound(run_id)
    if row.status != RUNNING:
        raise RunNotActive(run_id, row.status)
    return row


def _insert_ignore(s: Session, table: Any, values: dict[str, Any]) -> None:
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    s.execute(insert(table).values(**values).on_conflict_do_nothing())


def create_run(db: Database, new: NewRun, params: Mapping[str, str]) -> None:
    now = _now()
    with db.write() as s:
        if new.parent_id is not None:
            check_running(s, new.parent_id)  # a child is started inside a live run
        _insert_ignore(s, EnvironmentRow, {"id": new.env_id, "doc_json": new.env_json})
        s.add(
            RunRow(
                id=new.id,
                name=new.name,
                status=RUNNING,
                user=new.user,
                host=new.host,
                pid=new.pid,
                pid_started=new.pid_started,
                started_at=now,
                heartbeat_at=now,
                error="",
                command_json=json.dumps(new.command, sort_keys=True),
                code_json=json.dumps(new.code, sort_keys=True),
                env_id=new.env_id,
                parent_id=new.parent_id,
            )
        )
        s.flush()
        write_params(s, new.id, params)


def write_params(s: Session, run_id: str, params: Mapping[str, str]) -> None:
    """params maps keys to canonical JSON; a key already set must keep its value."""
    if not params:
        return
    existing = {
        row.key: row.value_json
        for row in s.execute(
            select(ParamRow.key, ParamRow.value_json).where(
                ParamRow.run_id == run_id, ParamRow.key.in_(list(params))
            )
        )
    }
    for key, value in params.items():
        old = existing.get(key)
        if old is None:
            s.add(ParamRow(run_id=run_id, key=key, value_json=value))
        elif old != value:
            raise ParamConflict(run_id, key, old, value)


def log_params(db: Database, run_id: str, params: Mapping[str, str]) -> None:
    with db.write() as s:
        check_running(s, run_id)
        write_params(s, run_id, params)


def log_metrics(db: Database, run_id: str, items: Sequence[tuple[str, float, int]]) -> None:
    now = _now()
    with db.write() as s:
        check_running(s, run_id)
        s.add_all(
            MetricRow(
                run_id=run_id,
                key=key,
                value=None if math.isnan(value) else value,
                step=step,
                logged_at=now,
            )
            for key, value, step in items
        )


def add_input(db: Database, run_id: str, name: str, number: int) -> None:
    with db.write() as s:
        check_running(s, run_id)
        version_id = s.scalars(
            select(VersionRow.id)
            .join(ArtifactRow, VersionRow.artifact_id == ArtifactRow.id)
            .where(ArtifactRow.name == name, VersionRow.number == number)
        ).one_or_none()
        if version_id is None:
            raise VersionNotFound(name, number, 0)
        _insert_ignore(s, RunInputRow, {"run_id": run_id, "version_id": version_id})


def set_error(db: Database, run_id: str, error: str) -> None:
    """Record why a run is failing, from inside it; its owner sets the final status."""
    with db.write() as s:
        s.execute(update(RunRow).where(RunRow.id == run_id, RunRow.error == "").values(error=error))


def finish_run(
    db: Database, run_id: str, status: str, *, exit_code: int | None = None, error: str = ""
) -> None:
    with db.write() as s:
        row = check_running(s, run_id)
        row.status = status
        row.ended_at = _now()
        row.exit_code = exit_code
        if error and not row.error:
            row.error = error


def heartbeat(db: Database, run_id: str) -> None:
    with db.write() as s:
        s.execute(
            update(RunRow)
            .where(RunRow.id == run_id, RunRow.status == RUNNING)
            .values(heartbeat_at=_now())
        )


def reap(db: Database, alive: Callable[[str, int, int | None, datetime], bool]) -> int:
    """Mark killed every running run whose process is gone; alive(host, pid, started, beat)."""
    with db.read() as s:
        rows = s.execute(
            select(
                RunRow.id, RunRow.host, RunRow.pid, RunRow.pid_started, RunRow.heartbeat_at
            ).where(RunRow.status == RUNNING)
        ).all()
    dead = [
        (r.id, r.heartbeat_at)
        for r in rows
        if not alive(r.host, r.pid, r.pid_started, r.heartbeat_at)
    ]
    if not dead:
        return 0
    with db.write() as s:
        for run_id, beat in dead:
            row = s.get(RunRow, run_id)
            if row is not None and row.status == RUNNING:
                row.status = KILLED
                row.ended_at = beat
                row.error = row.error or "its process ended without ending the run"
    return len(dead)


def resolve_run(db: Database, ref: str) -> str:
    ref = ref.strip().lower()
    if len(ref) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in ref):
        raise RunNotFound(ref)
    with db.read() as s:
        ids = list(s.scalars(select(RunRow.id).where(RunRow.id.like(f"{ref}%")).limit(6)))
    if len(ids) != 1:
        raise RunNotFound(ref, [i[:12] for i in ids])
    return ids[0]


def runs(
    db: Database,
    *,
    ids: Iterable[str] | None = None,
    name: str | None = None,
    status: str | None = None,
    deleted: bool | None = None,
    limit: int | None = None,
    offset: int = 0,
    order: str = "started",
    descending: bool = True,
) -> list[RunRecord]:
    """Runs, newest first, with params, latest metrics, inputs and outputs.

    Only the runs asked for (limit, offset) are loaded with their details, so showing the
    newest 50 of 10,000 runs reads 50. deleted: True only deleted runs, False only the
    others, None both. order names a column (started, name, status).
    """
    with db.read() as s:
        column = {"started": RunRow.started_at, "name": RunRow.name, "status": RunRow.status}
        first = column[order].desc() if descending else column[order].asc()
        query = select(*RunRow.__table__.c).order_by(first, RunRow.started_at.desc(), RunRow.id)
        if ids is not None:
            query = query.where(RunRow.id.in_(list(ids)))
        if name is not None:
            query = query.where(RunRow.name == name)
        if status is not None:
            query = query.where(RunRow.status == status)
        if deleted is not None:
            query = query.where(
                RunRow.deleted_at.is_not(None) if deleted else RunRow.deleted_at.is_(None)
            )
        if limit is not None:
            query = query.limit(limit).offset(offset)
        rows = list(s.execute(query))
        return _records(s, rows)


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _records(s: Session, rows: list[Any]) -> list[RunRecord]:
    params: dict[str, dict[str, Any]] = defaultdict(dict)
    metrics: dict[str, dict[str, float]] = defaultdict(dict)
    inputs: dict[str, list[str]] = defaultdict(list)
    outputs: dict[str, list[str]] = defaultdict(list)
    children: dict[str, list[str]] = defaultdict(list)
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    for batch in _chunks([r.id for r in rows]):
        for t in s.execute(
            select(RunTagRow.run_id, RunTagRow.key, RunTagRow.value).where(
                RunTagRow.run_id.in_(batch)
            )
        ):
            tags[t.run_id][t.key] = t.value
        for c in s.execute(
            select(RunRow.parent_id, RunRow.id)
            .where(RunRow.parent_id.in_(batch))
            .order_by(RunRow.started_at, RunRow.id)
        ):
            children[str(c.parent_id)].append(c.id)
        for p in s.execute(
            select(ParamRow.run_id, ParamRow.key, ParamRow.value_json).where(
                ParamRow.run_id.in_(batch)
            )
        ):
            params[p.run_id][p.key] = json.loads(p.value_json)
        last = (
            select(func.max(MetricRow.id))
            .where(MetricRow.run_id.in_(batch))
            .group_by(MetricRow.run_id, MetricRow.key)
        )
        for m in s.execute(
            select(MetricRow.run_id, MetricRow.key, MetricRow.value).where(MetricRow.id.in_(last))
        ):
            metrics[m.run_id][m.key] = math.nan if m.value is None else m.value
        for i in s.execute(
            select(RunInputRow.run_id, ArtifactRow.name, VersionRow.number)
            .join(VersionRow, VersionRow.id == RunInputRow.version_id)
            .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
            .where(RunInputRow.run_id.in_(batch))
            .order_by(ArtifactRow.name, VersionRow.number)
        ):
            inputs[i.run_id].append(f"{i.name}:v{i.number}")
        made = select(VersionRow.run_id, VersionRow.id).where(VersionRow.run_id.in_(batch))
        again = select(RunOutputRow.run_id, RunOutputRow.version_id).where(
            RunOutputRow.run_id.in_(batch)
        )  # added again: equal to an existing version, which add returned
        both = union_all(made, again).subquery()
        for o in s.execute(
            select(both.c.run_id, ArtifactRow.name, VersionRow.number)
            .join(VersionRow, VersionRow.id == both.c.id)
            .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
            .order_by(ArtifactRow.name, VersionRow.number)
        ):
            outputs[str(o.run_id)].append(f"{o.name}:v{o.number}")
    return [
        RunRecord(
            id=r.id,
            name=r.name,
            status=r.status,
            user=r.user,
            host=r.host,
            started_at=r.started_at,
            ended_at=r.ended_at,
            exit_code=r.exit_code,
            error=r.error,
            command=json.loads(r.command_json),
            code=json.loads(r.code_json),
            env_id=r.env_id,
            params=dict(sorted(params[r.id].items())),
            metrics=dict(sorted(metrics[r.id].items())),
            inputs=tuple(inputs[r.id]),
            outputs=tuple(outputs[r.id]),
            parent_id=r.parent_id,
            children=tuple(children[r.id]),
            tags={k: v for k, v in sorted(tags[r.id].items()) if not k.startswith(RESERVED)},
            note=r.note or "",
            deleted_at=r.deleted_at,
            deleted_by=tags[r.id].get(DELETED_BY, "") if r.deleted_at else "",
            delete_reason=tags[r.id].get(DELETE_REASON, "") if r.deleted_at else "",
        )
        for r in rows
    ]


def last_metrics(db: Database, run_id: str) -> dict[str, float]:
    """The last value logged for each metric of one run."""
    last = select(func.max(MetricRow.id)).where(MetricRow.run_id == run_id).group_by(MetricRow.key)
    with db.read() as s:
        rows = s.execute(select(MetricRow.key, MetricRow.value).where(MetricRow.id.in_(last)))
        return {key: math.nan if value is None else value for key, value in rows}


def metric_history(db: Database, run_id: str) -> list[Metric]:
    with db.read() as s:
        rows = s.execute(
            select(MetricRow.key, MetricRow.value, MetricRow.step, MetricRow.logged_at)
            .where(MetricRow.run_id == run_id)
            .order_by(MetricRow.key, MetricRow.id)
        ).all()
    return [Metric(k, math.nan if v is None else v, step, at) for k, v, step, at in rows]


def environment(db: Database, env_id: str) -> dict[str, Any]:
    with db.read() as s:
        doc = s.scalars(select(EnvironmentRow.doc_json).where(EnvironmentRow.id == env_id)).one()
    loaded: dict[str, Any] = json.loads(doc)
    return loaded


# -- filtering and sorting --------------------------------------------------------

_CONDITION = re.compile(
    r"\s*(?P<kind>params?|metrics?|tags?)\.(?P<key>[^\s=!<>]+)\s*(?P<op>==|=|!=|<=|>=|<|>)\s*(?P<value>.*?)\s*"
)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
COLUMNS = ("started", "name", "status")  # sorted by the database
SORT_KEYS = (*COLUMNS, "duration", "params.KEY", "metrics.KEY", "tags.KEY")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(text: str) -> float | None:
    """A tag's text as a number when it reads as one ("10", "0.5"), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_condition(text: str) -> Callable[[RunRecord], bool]:
    """`metrics.auc > 0.9`, `params.depth = 6`, `params.model != "rf"`, `tags.team = fraud`
    as a run predicate. A run without the key matches no condition on it."""
    m = _CONDITION.fullmatch(text)
    if m is None or not m["value"]:
        raise InvalidArgument(
            f'cannot read condition {text!r}; write e.g. "metrics.auc > 0.9", '
            '"params.model = rf" or "tags.team = fraud" (operators = != < <= > >=)'
        )
    raw = m["value"]
    try:
        wanted = json.loads(raw)
    except ValueError:
        wanted = raw.strip("'\"")
    key, test = m["key"], _OPS[m["op"]]
    kind = m["kind"].rstrip("s")
    if kind == "metric" and not _number(wanted):
        raise InvalidArgument(f"condition {text!r}: a metric compares with a number")
    if kind == "tag":
        return _tag_condition(key, m["op"], wanted if isinstance(wanted, str) else raw)

    def check(run: RunRecord) -> bool:
        values: Mapping[str, Any] = run.metrics if kind == "metric" else run.params
        if key not in values:
            return False
        have = values[key]
        if _number(have) and _number(wanted):
            if isinstance(have, float) and math.isnan(have):
                return m["op"] == "!="
            return test(have, wanted)
        if m["op"] in ("=", "==", "!="):
            return test(str(have) if not isinstance(have, str) else have, str(wanted))
        return False

    return check


def _tag_condition(key: str, op: str, wanted: str) -> Callable[[RunRecord], bool]:
    """Tags are text: = and != compare the text; < <= > >= compare numbers, and hold only
    when both the tag and the value read as numbers."""
    test = _OPS[op]
    number = _as_number(wanted)
    if op not in ("=", "==", "!=") and number is None:
        raise InvalidArgument(
            f"condition on tags.{key}: {op} compares numbers; {wanted!r} is not one "
            "(use = or != for text)"
        )

    def check(run: RunRecord) -> bool:
        have = run.tags.get(key)
        if have is None:
            return False
        if op in ("=", "==", "!="):
            return test(have, wanted)
        have_number = _as_number(have)
        return have_number is not None and test(have_number, number)

    return check


def parse_sort(key: str) -> Callable[[RunRecord], Any]:
    """The value a run sorts by for key (None when it has none: those sort last)."""
    kind, _, name = key.partition(".")
    if key in COLUMNS or key == "duration":
        return lambda r: {
            "started": r.started_at,
            "name": r.name,
            "status": r.status,
            "duration": r.duration,
        }[key]
    if name and kind in ("params", "metrics", "tags"):
        return lambda r: getattr(r, kind).get(name)
    raise InvalidArgument(f"cannot sort by {key!r}; sort by one of {', '.join(SORT_KEYS)}")


def _rank(value: Any) -> tuple[int, Any] | None:
    """Numbers before text, each in its own order; NaN and absent values have no rank."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (0, value.timestamp())
    if _number(value):
        return None if math.isnan(value) else (0, value)
    if isinstance(value, str):
        number = _as_number(value)
        return (0, number) if number is not None else (1, value)
    return (1, json.dumps(value, sort_keys=True))


def sort_runs(found: Sequence[RunRecord], key: str, *, descending: bool = False) -> list[RunRecord]:
    """Runs ordered by key; runs without a value for it come last whichever the direction.
    Ties keep the order they came in (newest first)."""
    value = parse_sort(key)
    ranked = [(_rank(value(r)), r) for r in found]
    present = [(rank, r) for rank, r in ranked if rank is not None]
    present.sort(key=lambda pair: pair[0], reverse=descending)  # stable either way
    return [r for _, r in present] + [r for rank, r in ranked if rank is None]


def find_runs(
    db: Database,
    *,
    name: str | None = None,
    status: str | None = None,
    where: Sequence[str] = (),
    limit: int | None = None,
    deleted: bool | None = False,
    sort: str | None = None,
    descending: bool = False,
    offset: int = 0,
) -> list[RunRecord]:
    """Runs, newest first (or by sort), that match every condition in where, after the
    first offset of them (a page of the web UI's table).

    deleted: False hides deleted runs, True shows only them, None shows all. Sorting by a
    column (started, name, status) is the database's; by anything else (a metric, a
    param, a tag, the duration) every matching run is read, then sorted, then cut to
    limit.
    """
    if status is not None and status not in STATUSES:
        raise InvalidArgument(f"unknown run status {status!r}; use one of {', '.join(STATUSES)}")
    if offset < 0:
        raise InvalidArgument("offset is a number of runs to skip, 0 or more")
    tests = [parse_condition(c) for c in where]
    if sort is not None:
        parse_sort(sort)  # a bad key is refused before anything is read
    in_sql = sort is None or sort in COLUMNS
    order, desc = ("started", True)
    if sort is not None and sort in COLUMNS:
        order, desc = sort, descending
    if not tests and in_sql:
        return runs(
            db, name=name, status=status, deleted=deleted, limit=limit, order=order,
            descending=desc, offset=offset,
        )  # fmt: skip
    wanted = None if limit is None else offset + limit
    found: list[RunRecord] = []
    page, at = 500, 0
    while wanted is None or not in_sql or len(found) < wanted:  # a page at a time
        batch = runs(
            db, name=name, status=status, deleted=deleted, limit=page, offset=at,
            order=order, descending=desc,
        )  # fmt: skip
        found += [r for r in batch if all(t(r) for t in tests)]
        if len(batch) < page:
            break
        at += page
    if not in_sql:
        assert sort is not None
        found = sort_runs(found, sort, descending=descending)
    return found[offset:wanted]
