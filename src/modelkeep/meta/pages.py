"""One page of a long list, read with LIMIT/OFFSET and a count: what the web UI shows.

The functions behind the CLI's lists (`versions`, `models`, `events`, `lineage`) return
everything, which a terminal wants and a browser page does not: a model with 10,000
versions or a dataset that 10,000 runs read would make a page load them all. These read
one page and say how many there are, so a page costs the same on a large store as on a
small one. They are separate functions (not options of those) so that the CLI's read path
stays its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from modelkeep import meta
from modelkeep.errors import InvalidArgument
from modelkeep.meta.db import Database
from modelkeep.meta.events import Event, _event, _of_model
from modelkeep.meta.lineage import Edge, Lineage, Node, RunNode, VersionNode
from modelkeep.meta.models import (
    AliasRow,
    ArtifactRow,
    EventRow,
    MetricRow,
    RunInputRow,
    RunRow,
    VersionRow,
)
from modelkeep.meta.records import Version, version_of
from modelkeep.meta.rows import artifact
from modelkeep.refs import content_id

MAX_LIMIT = 500  # rows in one page
MAX_POINTS = 10_000  # points of one metric series


def check_page(limit: int, offset: int, most: int = MAX_LIMIT) -> None:
    """InvalidArgument (a 400 over HTTP) unless 1 <= limit <= most and offset >= 0."""
    if not 1 <= limit <= most:
        raise InvalidArgument(f"limit must be 1 to {most}, not {limit}")
    if offset < 0:
        raise InvalidArgument(f"offset must be 0 or more, not {offset}")


def _count(s: Session, query: ColumnElement[bool] | None, table: type) -> int:
    count = select(func.count()).select_from(table)
    if query is not None:
        count = count.where(query)
    return int(s.scalar(count) or 0)


# -- versions of one artifact -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionPage:
    items: list[Version]
    total: int  # versions of the artifact, deleted ones included (as `versions` lists them)
    offset: int
    limit: int


def versions_page(
    db: Database, name: str, *, limit: int = 50, offset: int = 0, descending: bool = True
) -> VersionPage:
    """One page of an artifact's versions, newest first unless descending is false."""
    check_page(limit, offset)
    with db.read() as s:
        art = artifact(s, name)
        order = VersionRow.number.desc() if descending else VersionRow.number
        rows = s.execute(
            select(*VersionRow.__table__.c)
            .where(VersionRow.artifact_id == art.id)
            .order_by(order)
            .limit(limit)
            .offset(offset)
        )
        items = [version_of(art, r) for r in rows]
        total = _count(s, VersionRow.artifact_id == art.id, VersionRow)
    return VersionPage(items, total, offset, limit)


def numbered(db: Database, name: str, numbers: Sequence[int]) -> list[Version]:
    """The versions of name with these numbers, in that order (absent ones left out)."""
    if len(numbers) > MAX_LIMIT:
        raise InvalidArgument(f"at most {MAX_LIMIT} version numbers at once, not {len(numbers)}")
    with db.read() as s:
        art = artifact(s, name)
        rows = s.execute(
            select(*VersionRow.__table__.c).where(
                VersionRow.artifact_id == art.id, VersionRow.number.in_(list(numbers))
            )
        )
        found = {r.number: version_of(art, r) for r in rows}
    return [found[n] for n in numbers if n in found]


def previous_version(db: Database, name: str, number: int) -> Version | None:
    """The newest live version of name numbered below number, if any."""
    with db.read() as s:
        art = artifact(s, name)
        row = s.execute(
            select(*VersionRow.__table__.c)
            .where(
                VersionRow.artifact_id == art.id,
                VersionRow.number < number,
                VersionRow.deleted_at.is_(None),
            )
            .order_by(VersionRow.number.desc())
            .limit(1)
        ).one_or_none()
        return version_of(art, row) if row is not None else None


# -- registered models --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelSummary:
    model: meta.Model
    last_change: datetime | None  # the newest registry event under the model's name


@dataclass(frozen=True, slots=True)
class ModelPage:
    items: list[ModelSummary]
    total: int  # registered models whose name holds the search text
    offset: int
    limit: int


def models_page(db: Database, *, search: str = "", limit: int = 50, offset: int = 0) -> ModelPage:
    """One page of the registered models (by name) whose name holds search (any case)."""
    check_page(limit, offset)
    test: ColumnElement[bool] = ArtifactRow.registered.is_(True)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        test = test & func.lower(ArtifactRow.name).like(f"%{escaped}%", escape="\\")
    with db.read() as s:
        arts = list(
            s.scalars(
                select(ArtifactRow)
                .where(test)
                .order_by(ArtifactRow.name)
                .limit(limit)
                .offset(offset)
            )
        )
        total = _count(s, test, ArtifactRow)
        items = _summaries(s, arts)
    return ModelPage(items, total, offset, limit)


def model_summary(db: Database, name: str) -> ModelSummary:
    """One registered model's stages, aliases and last change (ArtifactNotFound if it is
    not a registered model)."""
    from modelkeep.errors import ArtifactNotFound

    with db.read() as s:
        art = artifact(s, name)
        if not art.registered:
            raise ArtifactNotFound(name)
        return _summaries(s, [art])[0]


def _summaries(s: Session, arts: list[ArtifactRow]) -> list[ModelSummary]:
    from modelkeep.meta import Model  # where the models list keeps it

    ids = [a.id for a in arts]
    stages: dict[int, dict[str, list[int]]] = {i: {} for i in ids}
    counts: dict[int, int] = dict.fromkeys(ids, 0)
    aliases: dict[int, dict[str, int]] = {i: {} for i in ids}
    last: dict[str, datetime] = {}
    if ids:
        for art_id, count in s.execute(
            select(VersionRow.artifact_id, func.count())
            .where(
                VersionRow.artifact_id.in_(ids),
                VersionRow.registered,
                VersionRow.deleted_at.is_(None),
            )
            .group_by(VersionRow.artifact_id)
        ):
            counts[art_id] = int(count)
        for art_id, number, stage in s.execute(  # the stage index: no scan of every version
            select(VersionRow.artifact_id, VersionRow.number, VersionRow.stage)
            .where(
                VersionRow.artifact_id.in_(ids),
                VersionRow.stage.in_(("staging", "production", "archived")),
                VersionRow.deleted_at.is_(None),
            )
            .order_by(VersionRow.number)
        ):
            stages[art_id].setdefault(stage, []).append(number)
        for art_id, alias, number in s.execute(
            select(AliasRow.artifact_id, AliasRow.alias, VersionRow.number)
            .join(VersionRow, VersionRow.id == AliasRow.version_id)
            .where(AliasRow.artifact_id.in_(ids))
            .order_by(AliasRow.alias)
        ):
            aliases[art_id][alias] = number
        for model, at in s.execute(
            select(EventRow.model, func.max(EventRow.at))
            .where(EventRow.model.in_([a.name for a in arts]))
            .group_by(EventRow.model)
        ):
            last[model] = at
    return [
        ModelSummary(
            Model(a.name, a.latest_number, counts[a.id], stages[a.id], aliases[a.id]),
            last.get(a.name),
        )
        for a in arts
    ]


# -- the event log --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventPage:
    items: list[Event]  # newest first
    total: int  # events that pass the filters
    offset: int
    limit: int


def events_page(
    db: Database,
    model: str | None = None,
    *,
    actor: str = "",
    kind: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> EventPage:
    """One page of the event log, newest first: a model's events (under each name it had),
    an actor's (any part of the name), one kind of action, between two moments."""
    check_page(limit, offset)
    with db.read() as s:
        tests: list[ColumnElement[bool]] = []
        if model:
            artifact(s, model)  # ArtifactNotFound, as `events` says
            tests.append(_of_model(s, model))
        if actor:
            tests.append(EventRow.actor.contains(actor, autoescape=True))
        if kind:
            tests.append(EventRow.action == kind)
        if since is not None:
            tests.append(EventRow.at >= since)
        if until is not None:
            tests.append(EventRow.at <= until)
        query = select(EventRow).where(*tests)
        rows = s.scalars(query.order_by(EventRow.id.desc()).limit(limit).offset(offset))
        items = [_event(r) for r in rows]
        count = select(func.count()).select_from(EventRow).where(*tests)
        total = int(s.scalar(count) or 0)
    return EventPage(items, total, offset, limit)


# -- the lineage next to one version ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Neighbours:
    """A version's lineage one step each way: the run that produced it with that run's
    inputs, and up to limit of the runs that used it (newest first) with their outputs."""

    graph: Lineage
    users: int  # runs that used the version
    shown: int  # of which the graph holds


def neighbours(db: Database, name: str, number: int, *, limit: int = 100) -> Neighbours:
    check_page(limit, 0)
    edges: set[Edge] = set()
    with db.read() as s:
        art = artifact(s, name)
        root_id, producer = s.execute(
            select(VersionRow.id, VersionRow.run_id).where(
                VersionRow.artifact_id == art.id, VersionRow.number == number
            )
        ).one()
        version_ids = {root_id}
        keys: dict[int, str] = {root_id: f"{name}:v{number}"}
        run_ids: list[str] = []
        if producer is not None:
            run_ids.append(producer)
            edges.add(Edge(_run(producer), keys[root_id], "output"))
            inputs = list(
                s.scalars(
                    select(RunInputRow.version_id)
                    .where(RunInputRow.run_id == producer)
                    .limit(MAX_LIMIT)
                )
            )
            version_ids.update(inputs)
        users = list(
            s.scalars(
                select(RunInputRow.run_id)
                .join(RunRow, RunRow.id == RunInputRow.run_id)
                .where(RunInputRow.version_id == root_id)
                .order_by(RunRow.started_at.desc())
                .limit(limit)
            )
        )
        total = int(
            s.scalar(
                select(func.count())
                .select_from(RunInputRow)
                .where(RunInputRow.version_id == root_id)
            )
            or 0
        )
        run_ids += users
        outputs: list[tuple[int, str]] = []
        if users:
            outputs = [
                (vid, str(run_id))
                for vid, run_id in s.execute(
                    select(VersionRow.id, VersionRow.run_id)
                    .where(VersionRow.run_id.in_(users))
                    .limit(MAX_LIMIT)
                )
            ]
            version_ids.update(vid for vid, _ in outputs)
        versions: dict[int, VersionNode] = {}
        for vid, vname, vnumber, vtype, digest, created in s.execute(
            select(
                VersionRow.id,
                ArtifactRow.name,
                VersionRow.number,
                ArtifactRow.type,
                VersionRow.digest,
                VersionRow.created_at,
            )
            .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
            .where(VersionRow.id.in_(list(version_ids)))
        ):
            versions[vid] = VersionNode(f"{vname}:v{vnumber}", vtype, content_id(digest), created)
            keys[vid] = versions[vid].ref
        runs = [
            RunNode(r.id, r.name, r.status, r.user, r.started_at)
            for r in s.execute(
                select(RunRow.id, RunRow.name, RunRow.status, RunRow.user, RunRow.started_at).where(
                    RunRow.id.in_(run_ids)
                )
            )
        ]
        if producer is not None:
            for vid in inputs:
                edges.add(Edge(keys[vid], _run(producer), "input"))
        for run_id in users:
            edges.add(Edge(keys[root_id], _run(run_id), "input"))
        for vid, run_id in outputs:
            edges.add(Edge(_run(run_id), keys[vid], "output"))
    nodes: dict[str, Node] = {keys[root_id]: versions[root_id]}
    for v in sorted(versions.values(), key=lambda n: n.created_at):
        nodes.setdefault(v.ref, v)
    for r in sorted(runs, key=lambda n: n.started_at):
        nodes[_run(r.id)] = r
    ordered = tuple(sorted(edges, key=lambda e: (e.source, e.target)))
    return Neighbours(Lineage(keys[root_id], nodes, ordered), total, len(users))


def _run(run_id: str) -> str:
    return f"run:{run_id}"


# -- metric series, thinned -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    key: str
    points: int  # how many the run logged
    steps: list[int]  # at most max_points of them, evenly spaced, the last one always
    values: list[float | None]  # None: NaN


def metric_series(
    db: Database, run_id: str, *, keys: list[str] | None = None, max_points: int = 1000
) -> list[Series]:
    """Each metric of a run as at most max_points (step, value) points, by step: every
    k-th point and the last, picked in the database, so a history of a million points
    sends a thousand."""
    check_page(max_points, 0, MAX_POINTS)
    with db.read() as s:
        counts = s.execute(
            select(MetricRow.key, func.count())
            .where(MetricRow.run_id == run_id, *([MetricRow.key.in_(keys)] if keys else []))
            .group_by(MetricRow.key)
            .order_by(MetricRow.key)
        ).all()
        out: list[Series] = []
        for key, count in counts:
            every = max(1, -(-int(count) // max_points))
            place = func.row_number().over(order_by=(MetricRow.step, MetricRow.id)).label("n")
            ranked = (
                select(MetricRow.step, MetricRow.value, place)
                .where(MetricRow.run_id == run_id, MetricRow.key == key)
                .subquery()
            )
            rows = s.execute(
                select(ranked.c.step, ranked.c.value)
                .where(((ranked.c.n - 1) % every == 0) | (ranked.c.n == count))
                .order_by(ranked.c.n)
            ).all()
            out.append(Series(key, int(count), [r[0] for r in rows], [r[1] for r in rows]))
    return out
