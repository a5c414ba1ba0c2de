"""Experiments: MLflow's named groups of runs, kept for `modelkeep serve`'s MLflow API.

An experiment is a row with a unique name, a lifecycle stage (active or deleted: MLflow's
delete hides, restore brings back) and tags; a run names its experiment in
`runs.experiment_id`. MLflow's "Default" experiment has id 0 and is where every run
without one is (`experiment_id` NULL, so runs made by `modelkeep run` are in it too). Its
row is written the first time anything is written about experiments; until then it is
read as if it were there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from modelkeep.errors import ExperimentExists, ExperimentNotFound, InvalidExperiment
from modelkeep.meta.db import Database
from modelkeep.meta.models import ExperimentRow, ExperimentTagRow

DEFAULT_ID = 0
DEFAULT_NAME = "Default"
ACTIVE, DELETED = "active", "deleted"
MAX_NAME = 255
MAX_TAG_KEY = 250  # as MLflow's
MAX_TAG_VALUE = 5000
MAX_LOCATION = 2048
_TAG_KEY = re.compile(r"[\w./\- :]+")  # MLflow's own rule for keys


@dataclass(frozen=True, slots=True)
class Experiment:
    id: int
    name: str
    lifecycle_stage: str
    artifact_location: str
    created_at: datetime
    updated_at: datetime
    tags: dict[str, str] = field(default_factory=dict)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidExperiment("experiment name", "it is empty; give a name")
    if len(name) > MAX_NAME:
        raise InvalidExperiment(f"experiment name {name[:40]!r}…", f"over {MAX_NAME} characters")
    if not name.isprintable():
        raise InvalidExperiment(f"experiment name {name!r}", "it holds a control character")
    return name


def check_tag(key: object, value: object) -> tuple[str, str]:
    if not isinstance(key, str) or not _TAG_KEY.fullmatch(key) or len(key) > MAX_TAG_KEY:
        raise InvalidExperiment(
            f"experiment tag {str(key)[:40]!r}",
            f"a key is 1-{MAX_TAG_KEY} letters, digits and _ - . / : or blanks",
        )
    if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
        raise InvalidExperiment(
            f"experiment tag {key!r}", f"a value is text of {MAX_TAG_VALUE} characters at most"
        )
    return key, value


def _now() -> datetime:
    return datetime.now(UTC)


def _default_row() -> ExperimentRow:
    at = datetime.fromtimestamp(0, UTC)
    return ExperimentRow(
        id=DEFAULT_ID,
        name=DEFAULT_NAME,
        lifecycle_stage=ACTIVE,
        artifact_location="",
        created_at=at,
        updated_at=at,
    )


def _ensure_default(s: Session) -> None:
    if s.get(ExperimentRow, DEFAULT_ID) is None:
        s.add(_default_row())
        s.flush()


def _record(row: ExperimentRow, tags: Mapping[str, str]) -> Experiment:
    return Experiment(
        id=row.id,
        name=row.name,
        lifecycle_stage=row.lifecycle_stage,
        artifact_location=row.artifact_location,
        created_at=row.created_at,
        updated_at=row.updated_at,
        tags=dict(sorted(tags.items())),
    )


def _tags(s: Session, ids: list[int]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {i: {} for i in ids}
    for t in s.execute(
        select(ExperimentTagRow.experiment_id, ExperimentTagRow.key, ExperimentTagRow.value).where(
            ExperimentTagRow.experiment_id.in_(ids)
        )
    ):
        out[t.experiment_id][t.key] = t.value
    return out


def create(
    db: Database, name: str, artifact_location: str = "", tags: Mapping[str, str] | None = None
) -> int:
    check_name(name)
    checked = dict(check_tag(k, v) for k, v in (tags or {}).items())
    if len(artifact_location) > MAX_LOCATION:
        raise InvalidExperiment("artifact_location", f"over {MAX_LOCATION} characters")
    with db.write() as s:
        _ensure_default(s)
        existing = s.scalars(select(ExperimentRow).where(ExperimentRow.name == name)).first()
        if existing is not None:
            raise ExperimentExists(name, existing.lifecycle_stage)
        now = _now()
        row = ExperimentRow(
            name=name,
            lifecycle_stage=ACTIVE,
            artifact_location=artifact_location,
            created_at=now,
            updated_at=now,
        )
        s.add(row)
        s.flush()
        s.add_all(
            ExperimentTagRow(experiment_id=row.id, key=k, value=v) for k, v in checked.items()
        )
        return row.id


def get(db: Database, experiment_id: int) -> Experiment:
    with db.read() as s:
        row = s.get(ExperimentRow, experiment_id)
        if row is None and experiment_id == DEFAULT_ID:
            row = _default_row()
        if row is None:
            raise ExperimentNotFound(f"with id {experiment_id}")
        return _record(row, _tags(s, [row.id])[row.id])


def by_name(db: Database, name: str) -> Experiment:
    with db.read() as s:
        row = s.scalars(select(ExperimentRow).where(ExperimentRow.name == name)).first()
        if row is None and name == DEFAULT_NAME and s.get(ExperimentRow, DEFAULT_ID) is None:
            row = _default_row()
        if row is None:
            raise ExperimentNotFound(f"named {name!r}")
        return _record(row, _tags(s, [row.id])[row.id])


def all_experiments(db: Database) -> list[Experiment]:
    """Every experiment, the Default one included, by id."""
    with db.read() as s:
        rows = list(s.scalars(select(ExperimentRow).order_by(ExperimentRow.id)))
        if not any(r.id == DEFAULT_ID for r in rows):
            rows.insert(0, _default_row())
        tags = _tags(s, [r.id for r in rows])
        return [_record(r, tags[r.id]) for r in rows]


def _row(s: Session, experiment_id: int) -> ExperimentRow:
    if experiment_id == DEFAULT_ID:
        _ensure_default(s)
    row = s.get(ExperimentRow, experiment_id)
    if row is None:
        raise ExperimentNotFound(f"with id {experiment_id}")
    return row


def check_active(s: Session, experiment_id: int) -> None:
    """Runs are created in an active experiment only."""
    row = s.get(ExperimentRow, experiment_id)
    if row is None and experiment_id != DEFAULT_ID:
        raise ExperimentNotFound(f"with id {experiment_id}")
    if row is not None and row.lifecycle_stage != ACTIVE:
        raise InvalidExperiment(
            f"experiment {experiment_id}", "it is deleted; restore it to add runs to it"
        )


def set_stage(db: Database, experiment_id: int, stage: str) -> None:
    """Delete (hide) or restore an experiment; its runs stay as they are."""
    if experiment_id == DEFAULT_ID and stage == DELETED:
        raise InvalidExperiment("the Default experiment (0)", "it cannot be deleted")
    with db.write() as s:
        row = _row(s, experiment_id)
        if stage == ACTIVE and row.lifecycle_stage == ACTIVE:
            raise InvalidExperiment(f"experiment {experiment_id}", "it is not deleted")
        row.lifecycle_stage = stage
        row.updated_at = _now()


def rename(db: Database, experiment_id: int, name: str) -> None:
    check_name(name)
    with db.write() as s:
        row = _row(s, experiment_id)
        other = s.scalars(select(ExperimentRow).where(ExperimentRow.name == name)).first()
        if other is not None and other.id != row.id:
            raise ExperimentExists(name, other.lifecycle_stage)
        row.name = name
        row.updated_at = _now()


def set_tag(db: Database, experiment_id: int, key: str, value: str) -> None:
    check_tag(key, value)
    with db.write() as s:
        row = _row(s, experiment_id)
        tag = s.get(ExperimentTagRow, (experiment_id, key))
        if tag is None:
            s.add(ExperimentTagRow(experiment_id=experiment_id, key=key, value=value))
        else:
            tag.value = value
        row.updated_at = _now()


def delete_tag(db: Database, experiment_id: int, key: str) -> None:
    with db.write() as s:
        _row(s, experiment_id)
        gone = s.execute(
            delete(ExperimentTagRow).where(
                ExperimentTagRow.experiment_id == experiment_id, ExperimentTagRow.key == key
            )
        )
        if not getattr(gone, "rowcount", 1):
            raise ExperimentNotFound(f"{experiment_id} tag {key!r}")


def artifact_root(experiment_id: int, location: str) -> str:
    """Where an experiment's runs log files: the location its creator gave, else a folder
    of the server's own artifact proxy (`mlflow-artifacts:/<id>`), as MLflow's server
    started with `--serve-artifacts` does."""
    return location.rstrip("/") or f"mlflow-artifacts:/{experiment_id}"


def to_json(e: Experiment) -> dict[str, Any]:
    """As MLflow's `Experiment` message."""
    return {
        "experiment_id": str(e.id),
        "name": e.name,
        "artifact_location": artifact_root(e.id, e.artifact_location),
        "lifecycle_stage": e.lifecycle_stage,
        "creation_time": int(e.created_at.timestamp() * 1000),
        "last_update_time": int(e.updated_at.timestamp() * 1000),
        "tags": [{"key": k, "value": v} for k, v in e.tags.items()],
    }
