"""Reading runs, written once as SQL that SQLite and PostgreSQL both speak and run through
`Database.query` (see `meta.reads`): `modelkeep runs` and `runs show` on the default SQLite
file never import SQLAlchemy. The writers are in `meta.runs`.
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

from modelkeep.errors import DatabaseError, InvalidArgument, RunNotFound
from modelkeep.meta.db import Database, Query
from modelkeep.meta.records import when, when_or_none

RUNNING, FINISHED, FAILED, KILLED = "running", "finished", "failed", "killed"
STATUSES = (RUNNING, FINISHED, FAILED, KILLED)
MIN_PREFIX = 4
RESERVED = "modelkeep."  # the tag keys modelkeep writes itself (meta.housekeeping)
DELETED_BY = RESERVED + "deleted_by"
DELETE_REASON = RESERVED + "delete_reason"


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


def dead_runs(
    db: Database, alive: Callable[[str, int, int | None, datetime], bool]
) -> list[tuple[str, datetime]]:
    """(id, last heartbeat) of every running run whose process is gone (`runs.reap`)."""
    with db.query() as q:
        rows = q.rows(
            "SELECT id, host, pid, pid_started, heartbeat_at FROM runs WHERE status = :running",
            running=RUNNING,
        )
    found = [(r, when(r.heartbeat_at)) for r in rows]
    return [(r.id, beat) for r, beat in found if not alive(r.host, r.pid, r.pid_started, beat)]


def resolve_run(db: Database, ref: str) -> str:
    ref = ref.strip().lower()
    if len(ref) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in ref):
        raise RunNotFound(ref)
    with db.query() as q:
        ids: list[str] = [
            r.id for r in q.rows("SELECT id FROM runs WHERE id LIKE :p LIMIT 6", p=f"{ref}%")
        ]
    if len(ids) != 1:
        raise RunNotFound(ref, [i[:12] for i in ids])
    return ids[0]


_ORDER = {"started": "started_at", "name": "name", "status": "status"}


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
    sql, params = _select(
        "*", ids=ids, name=name, status=status, deleted=deleted, order=order,
        descending=descending, limit=limit, offset=offset,
    )  # fmt: skip
    with db.query() as q:
        return _records(q, q.rows(sql, **params))


def _select(
    columns: str,
    *,
    ids: Iterable[str] | None = None,
    name: str | None = None,
    status: str | None = None,
    deleted: bool | None = None,
    order: str = "started",
    descending: bool = True,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[str, dict[str, Any]]:
    """The SQL (and its parameters) of the runs table's rows that `runs` lists."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if ids is not None:
        where.append("id IN :ids")
        params["ids"] = list(ids)
    if name is not None:
        where.append("name = :name")
        params["name"] = name
    if status is not None:
        where.append("status = :status")
        params["status"] = status
    if deleted is not None:
        where.append("deleted_at IS NOT NULL" if deleted else "deleted_at IS NULL")
    sql = f"SELECT {columns} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {_ORDER[order]} {'DESC' if descending else 'ASC'}, started_at DESC, id"
    if limit is not None:
        sql += " LIMIT :limit OFFSET :offset"
        params.update(limit=limit, offset=offset)
    return sql, params


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _common(r: Any) -> dict[str, Any]:
    """The fields of a run record its row alone gives (a full read or a light one)."""
    where = f"run {r.id}"
    return {
        "id": r.id,
        "name": r.name,
        "status": r.status,
        "user": r.user,
        "host": r.host,
        "started_at": when(r.started_at, where, "started_at"),
        "ended_at": when_or_none(r.ended_at, where, "ended_at"),
        "parent_id": r.parent_id,
        "deleted_at": when_or_none(r.deleted_at, where, "deleted_at"),
    }


def _records(q: Query, rows: Sequence[Any]) -> list[RunRecord]:
    params: dict[str, dict[str, Any]] = defaultdict(dict)
    metrics: dict[str, dict[str, float]] = defaultdict(dict)
    inputs: dict[str, list[str]] = defaultdict(list)
    outputs: dict[str, list[str]] = defaultdict(list)
    children: dict[str, list[str]] = defaultdict(list)
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    for batch in _chunks([r.id for r in rows]):
        for t in q.rows("SELECT run_id, key, value FROM run_tags WHERE run_id IN :b", b=batch):
            tags[t.run_id][t.key] = t.value
        for c in q.rows(
            "SELECT parent_id, id FROM runs WHERE parent_id IN :b ORDER BY started_at, id", b=batch
        ):
            children[str(c.parent_id)].append(c.id)
        for p in q.rows("SELECT run_id, key, value_json FROM params WHERE run_id IN :b", b=batch):
            params[p.run_id][p.key] = json.loads(p.value_json)
        for m in q.rows(
            "SELECT run_id, key, value FROM metrics WHERE id IN (SELECT max(id) FROM metrics "
            "WHERE run_id IN :b GROUP BY run_id, key)",
            b=batch,
        ):
            metrics[m.run_id][m.key] = math.nan if m.value is None else m.value
        for i in q.rows(
            "SELECT i.run_id, a.name, v.number FROM run_inputs i "
            "JOIN versions v ON v.id = i.version_id JOIN artifacts a ON a.id = v.artifact_id "
            "WHERE i.run_id IN :b ORDER BY a.name, v.number",
            b=batch,
        ):
            inputs[i.run_id].append(f"{i.name}:v{i.number}")
        for o in q.rows(  # made by the run, or added again by it (equal to an existing one)
            "SELECT o.run_id, a.name, v.number FROM (SELECT run_id, id AS version_id "
            "FROM versions WHERE run_id IN :b UNION ALL SELECT run_id, version_id "
            "FROM run_outputs WHERE run_id IN :b) o JOIN versions v ON v.id = o.version_id "
            "JOIN artifacts a ON a.id = v.artifact_id ORDER BY a.name, v.number",
            b=batch,
        ):
            outputs[str(o.run_id)].append(f"{o.name}:v{o.number}")
    return [
        RunRecord(
            **_common(r),
            exit_code=r.exit_code,
            error=r.error,
            command=json.loads(r.command_json),
            code=json.loads(r.code_json),
            env_id=r.env_id,
            params=dict(sorted(params[r.id].items())),
            metrics=dict(sorted(metrics[r.id].items())),
            inputs=tuple(inputs[r.id]),
            outputs=tuple(outputs[r.id]),
            children=tuple(children[r.id]),
            tags={k: v for k, v in sorted(tags[r.id].items()) if not k.startswith(RESERVED)},
            note=r.note or "",
            deleted_by=tags[r.id].get(DELETED_BY, "") if r.deleted_at else "",
            delete_reason=tags[r.id].get(DELETE_REASON, "") if r.deleted_at else "",
        )
        for r in rows
    ]


def last_metrics(db: Database, run_id: str) -> dict[str, float]:
    """The last value logged for each metric of one run."""
    with db.query() as q:
        rows = q.rows(
            "SELECT key, value FROM metrics WHERE id IN (SELECT max(id) FROM metrics "
            "WHERE run_id = :run GROUP BY key)",
            run=run_id,
        )
    return {r.key: math.nan if r.value is None else r.value for r in rows}


def metric_history(db: Database, run_id: str) -> list[Metric]:
    with db.query() as q:
        rows = q.rows(
            "SELECT key, value, step, logged_at FROM metrics WHERE run_id = :run ORDER BY key, id",
            run=run_id,
        )
    return [
        Metric(r.key, math.nan if r.value is None else r.value, r.step, when(r.logged_at))
        for r in rows
    ]


def environment(db: Database, env_id: str) -> dict[str, Any]:
    with db.query() as q:
        doc = q.scalar("SELECT doc_json FROM environments WHERE id = :id", id=env_id)
    if doc is None:
        raise DatabaseError(db.display_url, f"the environment {env_id} of a run is missing")
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
    # Filtered or sorted by what only the params, metrics or tags hold: every matching
    # run is read with just the keys the conditions and the sort name, then only the page
    # asked for is read in full.
    # In the database's order, a page of 500 at a time until the page asked for is full.
    wanted = None if limit is None or not in_sql else offset + limit
    keys, found, at = _keys(where, sort), list[RunRecord](), 0
    with db.query() as q:
        while wanted is None or len(found) < wanted:
            sql, params = _select(
                _LIGHT, name=name, status=status, deleted=deleted, order=order,
                descending=desc, limit=None if wanted is None else 500, offset=at,
            )  # fmt: skip
            batch = _light(q, q.rows(sql, **params), keys)
            found += [r for r in batch if all(t(r) for t in tests)]
            if wanted is None or len(batch) < 500:
                break
            at += 500
        if not in_sql:
            assert sort is not None
            found = sort_runs(found, sort, descending=descending)
        page = found[offset : None if limit is None else offset + limit]
        rows: list[Any] = []  # in full, in the same snapshot, 500 at a time
        for ids in _chunks([r.id for r in page]):
            rows += q.rows("SELECT * FROM runs WHERE id IN :ids", ids=ids)
        full = {r.id: r for r in _records(q, rows)}
    return [full[r.id] for r in page]


_LIGHT = 'id, name, status, "user", host, started_at, ended_at, parent_id, deleted_at'


def _keys(where: Sequence[str], sort: str | None) -> dict[str, list[str]]:
    """The params, metrics and tags the conditions and the sort key read."""
    keys: dict[str, set[str]] = {"params": set(), "metrics": set(), "tags": set()}
    for text in where:
        m = _CONDITION.fullmatch(text)
        if m is not None:
            keys[m["kind"].rstrip("s") + "s"].add(m["key"])
    if sort is not None:
        kind, _, name = sort.partition(".")
        if name and kind in keys:
            keys[kind].add(name)
    return {kind: sorted(names) for kind, names in keys.items()}


def _light(q: Query, rows: Sequence[Any], keys: dict[str, list[str]]) -> list[RunRecord]:
    """Runs with only the given keys of their params, metrics and tags, and none of their
    command, code, inputs or outputs: enough to filter and sort them."""
    params: dict[str, dict[str, Any]] = defaultdict(dict)
    metrics: dict[str, dict[str, float]] = defaultdict(dict)
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    for batch in _chunks([r.id for r in rows]):
        if keys["tags"]:
            for t in q.rows(
                "SELECT run_id, key, value FROM run_tags WHERE run_id IN :b AND key IN :k",
                b=batch,
                k=keys["tags"],
            ):
                if not t.key.startswith(RESERVED):  # as a listed run's tags
                    tags[t.run_id][t.key] = t.value
        if keys["params"]:
            for p in q.rows(
                "SELECT run_id, key, value_json FROM params WHERE run_id IN :b AND key IN :k",
                b=batch,
                k=keys["params"],
            ):
                params[p.run_id][p.key] = json.loads(p.value_json)
        if keys["metrics"]:
            for m in q.rows(
                "SELECT run_id, key, value FROM metrics WHERE id IN (SELECT max(id) FROM "
                "metrics WHERE run_id IN :b AND key IN :k GROUP BY run_id, key)",
                b=batch,
                k=keys["metrics"],
            ):
                metrics[m.run_id][m.key] = math.nan if m.value is None else m.value
    return [
        RunRecord(
            **_common(r),
            exit_code=None,
            error="",
            command={},
            code={},
            env_id=None,
            params=params[r.id],
            metrics=metrics[r.id],
            inputs=(),
            outputs=(),
            tags=tags[r.id],
        )
        for r in rows
    ]
