"""MLflow 3's logged models as rows: what `mlflow.<flavor>.log_model` makes before (and
whether or not) the model is registered. Its files are MLflow artifacts in its own folder,
`<experiment>/models/<id>/artifacts/`; registering it makes a modelkeep version of them.

A logged model belongs to the account that made it (only it, or an admin, writes to it),
moves from PENDING to READY or FAILED once (`finalize`), and a delete hides it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.errors import InvalidArgument, LoggedModelNotFound
from modelkeep.meta import experiments
from modelkeep.meta.db import Database
from modelkeep.meta.models import ExperimentRow, LoggedModelRow, RunRow

PENDING, READY, FAILED = "PENDING", "READY", "FAILED"
STATUSES = (PENDING, READY, FAILED)
MAX_TAGS = MAX_PARAMS = 1000  # on one model
MAX_VALUE = 6000


@dataclass(frozen=True, slots=True)
class LoggedModel:
    id: str
    experiment_id: int
    name: str
    status: str
    status_message: str
    model_type: str
    source_run_id: str | None
    user: str
    created_at: datetime
    updated_at: datetime
    deleted: bool
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _pairs(given: Mapping[str, str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in given.items():
        experiments.check_tag(key, "")  # MLflow's key rule, shared with experiment tags
        if not isinstance(value, str) or len(value) > MAX_VALUE:
            raise InvalidArgument(f"{what} {key!r} must be text of at most {MAX_VALUE} characters")
        out[key] = value
    return out


def _now() -> datetime:
    return datetime.now(UTC)


def create(
    db: Database,
    experiment_id: int,
    name: str,
    user: str,
    *,
    source_run_id: str | None = None,
    model_type: str = "",
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> LoggedModel:
    """A new PENDING logged model in an active experiment; name defaults to a random one."""
    name = name or f"model-{uuid.uuid4().hex[:8]}"
    if len(name) > 255 or not name.isprintable():
        raise InvalidArgument(f"logged model name {name[:40]!r} must be 1-255 printable characters")
    if len(model_type) > 255:
        raise InvalidArgument("model_type is at most 255 characters")
    checked_params = _pairs(params or {}, "param")
    checked_tags = _pairs(tags or {}, "tag")
    with db.write() as s:
        experiments.check_active(s, experiment_id)
        if source_run_id is not None and s.get(RunRow, source_run_id) is None:
            raise InvalidArgument(f"source_run_id {source_run_id!r} names no run")
        now = _now()
        row = LoggedModelRow(
            id=f"m-{uuid.uuid4().hex}",
            experiment_id=experiment_id or None,
            name=name,
            run_id=source_run_id,
            source_run_id=source_run_id,
            status=PENDING,
            status_message="",
            model_type=model_type,
            user=user,
            created_at=now,
            updated_at=now,
            params_json=json.dumps(checked_params, sort_keys=True),
            tags_json=json.dumps(checked_tags, sort_keys=True),
        )
        s.add(row)
        s.flush()
        return _of(s, row)


def get(db: Database, model_id: str, *, deleted: bool = False) -> LoggedModel:
    with db.read() as s:
        row = s.get(LoggedModelRow, model_id) if isinstance(model_id, str) else None
        if row is None or (row.deleted_at is not None and not deleted):
            raise LoggedModelNotFound(str(model_id))
        return _of(s, row)


def _change(db: Database, model_id: str, change: object) -> LoggedModel:
    with db.write() as s:
        row = s.get(LoggedModelRow, model_id) if isinstance(model_id, str) else None
        if row is None or row.deleted_at is not None:
            raise LoggedModelNotFound(str(model_id))
        change(row)  # type: ignore[operator]
        row.updated_at = _now()
        return _of(s, row)


def finalize(db: Database, model_id: str, status: str) -> LoggedModel:
    if status not in (READY, FAILED):
        raise InvalidArgument(f"a logged model is finalized as READY or FAILED, not {status!r}")

    def apply(row: LoggedModelRow) -> None:
        row.status = status

    return _change(db, model_id, apply)


def set_tags(db: Database, model_id: str, tags: Mapping[str, str]) -> LoggedModel:
    checked = _pairs(tags, "tag")

    def apply(row: LoggedModelRow) -> None:
        merged = {**json.loads(row.tags_json), **checked}
        if len(merged) > MAX_TAGS:
            raise InvalidArgument(f"a logged model has at most {MAX_TAGS} tags")
        row.tags_json = json.dumps(merged, sort_keys=True)

    return _change(db, model_id, apply)


def delete_tag(db: Database, model_id: str, key: str) -> LoggedModel:
    def apply(row: LoggedModelRow) -> None:
        tags = json.loads(row.tags_json)
        if key not in tags:
            raise LoggedModelNotFound(f"{model_id} tag {key!r}")
        del tags[key]
        row.tags_json = json.dumps(tags, sort_keys=True)

    return _change(db, model_id, apply)


def log_params(db: Database, model_id: str, params: Mapping[str, str]) -> LoggedModel:
    """Params are written once, as a run's: the same value again is a no-op."""
    checked = _pairs(params, "param")

    def apply(row: LoggedModelRow) -> None:
        stored = json.loads(row.params_json)
        for key, value in checked.items():
            if stored.get(key, value) != value:
                raise InvalidArgument(
                    f"param {key!r} of {model_id} is {stored[key]!r} already; params do not change"
                )
        merged = {**stored, **checked}
        if len(merged) > MAX_PARAMS:
            raise InvalidArgument(f"a logged model has at most {MAX_PARAMS} params")
        row.params_json = json.dumps(merged, sort_keys=True)

    return _change(db, model_id, apply)


def delete(db: Database, model_id: str) -> LoggedModel:
    def apply(row: LoggedModelRow) -> None:
        row.deleted_at = _now()

    return _change(db, model_id, apply)


def search(
    db: Database, experiment_ids: Sequence[int], where: Mapping[str, str] | None = None
) -> list[LoggedModel]:
    """The live logged models of the experiments, newest first, whose attributes equal
    `where` (name, status, model_type, source_run_id)."""
    query = select(LoggedModelRow).where(LoggedModelRow.deleted_at.is_(None))
    named = [i for i in experiment_ids if i != experiments.DEFAULT_ID]
    if experiments.DEFAULT_ID in experiment_ids:
        query = query.where(
            LoggedModelRow.experiment_id.in_(named) | LoggedModelRow.experiment_id.is_(None)
        )
    else:
        query = query.where(LoggedModelRow.experiment_id.in_(named))
    for key, value in (where or {}).items():
        query = query.where(getattr(LoggedModelRow, key) == value)
    with db.read() as s:
        rows = s.scalars(query.order_by(LoggedModelRow.created_at.desc(), LoggedModelRow.id))
        return [_of(s, r) for r in rows]


def _of(s: Session, row: LoggedModelRow) -> LoggedModel:
    experiment = row.experiment_id or experiments.DEFAULT_ID
    stored = s.get(ExperimentRow, row.experiment_id) if row.experiment_id else None
    root = experiments.artifact_root(experiment, stored.artifact_location if stored else "")
    return LoggedModel(
        id=row.id,
        experiment_id=experiment,
        name=row.name,
        status=row.status,
        status_message=row.status_message,
        model_type=row.model_type,
        source_run_id=row.source_run_id,
        user=row.user,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted=row.deleted_at is not None,
        artifact_uri=f"{root}/models/{row.id}/artifacts",
        params=json.loads(row.params_json),
        tags=json.loads(row.tags_json),
    )
