"""Evaluations as rows: metrics measured on a version after it was made.

A training run's metrics say how a model did on what it saw while it was made; an
evaluation says how a version did later, on a named dataset version, measured by whom (and
in which run). Each `record` is one write under the chain lock that inserts the rows and
appends an `evaluate` event holding every value it wrote, so `verify` can name an
evaluation row edited, added or removed behind the log's back, as it does stages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.errors import EvaluationInvalid
from modelkeep.meta.chain import Write, append, clock
from modelkeep.meta.db import Database, session_query
from modelkeep.meta.evaluation_reads import Evaluation, evaluation_of, evaluation_rows, value_of
from modelkeep.meta.models import (
    ArtifactRow,
    EvaluationRow,
    EventRow,
    RunInputRow,
    RunRow,
    VersionRow,
)
from modelkeep.meta.rows import artifact_locked, ref_of, version_row
from modelkeep.meta.run_reads import json_number
from modelkeep.meta.runs import check_running

ACTION = "evaluate"  # the event action of a recorded evaluation
MAX_KEY = 255


def check(items: Sequence[tuple[Any, Any]]) -> list[tuple[str, float]]:
    """(key, value) pairs as they will be stored: a key is non-empty text of at most 255
    characters (as a run's metric keys), a value a real number; NaN is kept (a measurement
    that came out as no number, as `log_metric` keeps it), but not infinity: a gate could
    never be met, or never fail, on it, and it is almost always a division by zero."""
    out: list[tuple[str, float]] = []
    for key, value in items:
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
            raise EvaluationInvalid(
                str(key), f"a metric name is non-empty text of at most {MAX_KEY} characters"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EvaluationInvalid(key, f"must be a number, not {type(value).__name__}")
        try:
            number = float(value)
        except OverflowError:
            raise EvaluationInvalid(key, "is too large to store as a float") from None
        if math.isinf(number):
            raise EvaluationInvalid(
                key, f"is {number}; record a finite value (NaN is kept, infinity is not)"
            )
        out.append((key, number))
    return out


def record(
    db: Database,
    version: tuple[str, int],
    items: Sequence[tuple[str, float]],
    *,
    dataset: tuple[str, int] | None,
    run_id: str | None,
    user: str,
) -> list[Evaluation]:
    """Insert the evaluations of name:vN (checked with `check`), the dataset as an input of
    the (running) run, and the `evaluate` event that vouches for them, in one transaction."""
    name, number = version
    with Write(db) as s:
        now = clock(s)
        art = artifact_locked(s, name)
        row = version_row(s, art, number)
        ds_row, ds_ref = None, None
        if dataset is not None:
            ds_art = art if dataset[0] == name else artifact_locked(s, dataset[0])
            ds_row = version_row(s, ds_art, dataset[1])
            ds_ref = ref_of(ds_art, ds_row)
        if run_id is not None:
            check_running(s, run_id)
            if ds_row is not None and s.get(RunInputRow, (run_id, ds_row.id)) is None:
                s.add(RunInputRow(run_id=run_id, version_id=ds_row.id))
        rows = [
            EvaluationRow(
                version_id=row.id,
                key=key,
                value=None if math.isnan(value) else value,
                dataset_id=ds_row.id if ds_row is not None else None,
                run_id=run_id,
                user=user,
                created_at=now,
            )
            for key, value in items
        ]
        s.add_all(rows)
        s.flush()
        target = ref_of(art, row)
        after = {
            "evaluations": [_vouched(r) for r in rows],
            "dataset": ds_ref,
            "run": run_id,
        }
        append(s, user, ACTION, name, target, {}, after, "", now)
        return [evaluation_of(r, target, ds_ref) for r in rows]


def import_event(
    s: Session, target: str, after: dict[str, Any], actor: str, at: datetime
) -> dict[str, Any] | None:
    """Insert the rows a pulled `evaluate` event records (checked by `wire.parse_event`),
    in the caller's transaction; the after to append here, with this store's row ids, or
    None when the version is not here. Its dataset and run are linked when this store has
    them; one it lacks is left out of the rows and named under `unlinked`."""
    row = _version_row(s, target)
    if row is None:
        return None
    unlinked: dict[str, str] = {}
    dataset = after.get("dataset")
    ds_row = _version_row(s, dataset) if dataset else None
    if dataset and ds_row is None:
        unlinked["dataset"], dataset = dataset, None
    run_id = after.get("run")
    if run_id and s.get(RunRow, run_id) is None:
        unlinked["run"], run_id = run_id, None
    rows = [
        EvaluationRow(
            version_id=row.id,
            key=item["key"],
            value=None if item["value"] == "nan" else float(item["value"]),
            dataset_id=ds_row.id if ds_row is not None else None,
            run_id=run_id,
            user=actor,
            created_at=at,
        )
        for item in after["evaluations"]
    ]
    s.add_all(rows)
    s.flush()
    out: dict[str, Any] = {
        "evaluations": [_vouched(r) for r in rows],
        "dataset": dataset,
        "run": run_id,
    }
    if unlinked:
        out["unlinked"] = unlinked
    return out


def _version_row(s: Session, ref: str) -> VersionRow | None:
    name, _, number = ref.rpartition(":v")
    found: VersionRow | None = s.scalars(
        select(VersionRow)
        .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
        .where(ArtifactRow.name == name, VersionRow.number == int(number))
    ).one_or_none()
    return found


def _vouched(r: EvaluationRow) -> dict[str, Any]:
    """What the event says of one row: enough to tell any edit of it."""
    return {"id": r.id, "key": r.key, "value": json_number(value_of(r))}


# version, key, value, dataset, run, user: what an event vouches for of one row
Vouched = tuple[str, str, str, str | None, str | None, str]


def _said(s: Session) -> dict[int, Vouched]:
    """Each evaluation as the `evaluate` events record it, by row id."""
    said: dict[int, Vouched] = {}
    for e in s.scalars(select(EventRow).where(EventRow.action == ACTION).order_by(EventRow.id)):
        try:
            after = json.loads(e.after_json)
            for item in after["evaluations"]:
                said[int(item["id"])] = (
                    e.target,
                    str(item["key"]),
                    repr(float(item["value"])),
                    after.get("dataset"),
                    after.get("run"),
                    e.actor,
                )
        except (ValueError, KeyError, TypeError):
            continue  # an event broken so is named by the chain check (its hash)
    return said


def problems(s: Session) -> list[str]:
    """Each evaluation row the `evaluate` events do not vouch for as it stands: edited
    (version, key, value, dataset, run or user), added without an event, or removed. The
    events themselves are covered by the hash chain."""
    said = _said(s)
    found: dict[int, Vouched] = {
        ev.id: (ev.version, ev.key, repr(ev.value), ev.dataset, ev.run_id, ev.user)
        for ev in evaluation_rows(session_query(s), None)
    }
    out: list[str] = []
    fields = ("version", "key", "value", "dataset", "run", "user")
    for ev_id in sorted(set(said) | set(found)):
        a, b = said.get(ev_id), found.get(ev_id)
        if a is None:
            assert b is not None
            out.append(
                f"evaluation {ev_id} of {b[0]} ({b[1]}): the database has it, no event records it"
            )
        elif b is None:
            out.append(
                f"evaluation {ev_id} of {a[0]} ({a[1]}): the events record it, the database "
                "has no such row"
            )
        else:
            for field_, x, y in zip(fields, a, b, strict=True):
                if x != y:
                    out.append(
                        f"evaluation {ev_id} of {a[0]} ({a[1]}) {field_}: the events say {x}, "
                        f"the database says {y}"
                    )
    return out


def latest(evaluations: Sequence[Evaluation]) -> list[Evaluation]:
    """The latest evaluation of each (key, dataset), in the order they were recorded."""
    last: dict[tuple[str, str | None], Evaluation] = {}
    for ev in evaluations:
        last.pop((ev.key, ev.dataset), None)
        last[(ev.key, ev.dataset)] = ev
    return list(last.values())
