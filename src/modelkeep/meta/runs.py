"""Runs as rows: parameters written once, every metric value kept, inputs and outputs.

A run's status moves only from running to finished, failed or killed. A run whose owning
process died without saying so is found by `reap` (the caller decides what "alive" means)
and marked killed, so no run stays "running" forever. Reading runs is `meta.run_reads`,
whose names this module also offers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from modelkeep.errors import (
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
    RunRow,
    VersionRow,
)
from modelkeep.meta.run_reads import KILLED, RUNNING, dead_runs


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
    dead = dead_runs(db, alive)
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
