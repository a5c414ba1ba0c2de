"""Reading evaluations (`meta.evaluations` records them), written once as SQL that SQLite
and PostgreSQL both speak (`Database.query`, see `meta.reads`): `show` reads them without
importing SQLAlchemy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelkeep.meta.db import Database, Query
from modelkeep.meta.records import when
from modelkeep.meta.run_reads import json_number


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One metric measured on a version: the latest of a key is the one gates read."""

    id: int
    version: str  # NAME:vN of the version measured
    key: str
    value: float  # NaN: measured, but not a number (as a run's metrics keep it)
    dataset: str | None  # NAME:vN of the dataset version it was measured on
    run_id: str | None  # the run that measured it
    user: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "key": self.key,
            "value": json_number(self.value),
            "dataset": self.dataset,
            "run_id": self.run_id,
            "user": self.user,
            "created_at": self.created_at.isoformat(),
        }


def value_of(r: Any) -> float:
    return math.nan if r.value is None else float(r.value)


def evaluation_of(r: Any, ref: str, dataset: str | None) -> Evaluation:
    """An evaluation from its row (ORM or plain)."""
    return Evaluation(r.id, ref, r.key, value_of(r), dataset, r.run_id, r.user, when(r.created_at))


def of_versions(db: Database, refs: Sequence[tuple[str, int]]) -> dict[str, list[Evaluation]]:
    """The evaluations of each name:vN, oldest first (the last of a key is its latest)."""
    if not refs:
        return {}
    out: dict[str, list[Evaluation]] = {f"{n}:v{v}": [] for n, v in refs}
    with db.query() as q:
        found = evaluation_rows(q, sorted({n for n, _ in refs}))
    for ev in found:
        if ev.version in out:
            out[ev.version].append(ev)
    return out


def evaluation_rows(q: Query, names: Sequence[str] | None) -> list[Evaluation]:
    """The evaluations of versions of names (None: all), oldest first."""
    sql = (
        'SELECT e.id, e.key, e.value, e.run_id, e."user", e.created_at, a.name, m.number, '
        "da.name AS ds_name, dv.number AS ds_number FROM evaluations e "
        "JOIN versions m ON m.id = e.version_id JOIN artifacts a ON a.id = m.artifact_id "
        "LEFT JOIN versions dv ON dv.id = e.dataset_id "
        "LEFT JOIN artifacts da ON da.id = dv.artifact_id"
    )
    if names is not None:
        sql += " WHERE a.name IN :names"
    rows = q.rows(sql + " ORDER BY e.created_at, e.id", names=list(names or ()))
    out = []
    for r in rows:
        dataset = f"{r.ds_name}:v{r.ds_number}" if r.ds_name is not None else None
        out.append(evaluation_of(r, f"{r.name}:v{r.number}", dataset))
    return out
