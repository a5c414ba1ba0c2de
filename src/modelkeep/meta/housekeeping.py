"""Run housekeeping: tags, a note, a new name, soft delete and restore.

A run's params and metrics are fixed once it ends; what a team says about it afterwards
is not. Tags are short key/value strings to filter and sort by (`team=fraud`), the note
is free text, and a delete only hides the run: its rows, metrics and attachments stay,
so a version it produced (or used) keeps its lineage, and `restore` brings it back.

Who deleted a run and why are kept as tags under the reserved `modelkeep.` prefix, which
users cannot set, so a soft delete needs no column beyond `runs.deleted_at`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from modelkeep.errors import (
    InvalidArgument,
    InvalidRunName,
    InvalidTag,
    RunNotDeleted,
    RunNotFound,
    RunStillRunning,
)
from modelkeep.meta.db import Database
from modelkeep.meta.models import (
    ArtifactRow,
    RunInputRow,
    RunOutputRow,
    RunRow,
    RunTagRow,
    VersionRow,
)
from modelkeep.meta.run_reads import DELETE_REASON, DELETED_BY, RESERVED, RUNNING, RunRecord


@dataclass(frozen=True, slots=True)
class RunDeletion:
    """A deleted run, and the versions whose lineage still shows it."""

    run: RunRecord
    kept_for: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run.to_json(), "kept_for": list(self.kept_for)}


MAX_TAG_KEY = 255  # as a param's key
MAX_TAG_VALUE = 5000  # as MLflow's
MAX_NOTE = 100_000
MAX_RUN_NAME = 255
# No blank and none of = ! < >, so `--where "tags.KEY = VALUE"` can name every key.
_TAG_KEY = re.compile(r"[^\s=!<>]+")


def check_tag_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidTag(str(key), "a tag key is non-empty text")
    if len(key) > MAX_TAG_KEY:
        raise InvalidTag(key[:40] + "…", f"a key is at most {MAX_TAG_KEY} characters")
    if not _TAG_KEY.fullmatch(key):
        raise InvalidTag(key, "a key has no blanks and none of '=', '!', '<', '>'")
    if key.startswith(RESERVED):
        raise InvalidTag(key, f"keys starting with {RESERVED!r} are modelkeep's own")
    return key


def check_tag_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidTag(key, f"a tag value is text, not {type(value).__name__}")
    if len(value) > MAX_TAG_VALUE:
        raise InvalidTag(key, f"its value is {len(value)} characters; the limit is {MAX_TAG_VALUE}")
    return value


def check_run_name(name: object) -> str:
    """A run name as start_run takes it: printable text, 1-255 characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRunName(str(name), "it is empty")
    if len(name) > MAX_RUN_NAME:
        raise InvalidRunName(name[:40] + "…", f"it is {len(name)} characters long")
    if not name.isprintable():
        raise InvalidRunName(name, "it holds a control character (a newline, a tab)")
    if name != name.strip():
        raise InvalidRunName(name, "it starts or ends with a blank")
    return name


def run_row(s: Session, run_id: str) -> RunRow:
    row = s.get(RunRow, run_id)
    if row is None:
        raise RunNotFound(run_id)
    return row


def set_tags(
    db: Database, run_id: str, tags: Mapping[str, str], remove: Sequence[str] = ()
) -> None:
    """Set (or replace) tags and remove others, in one transaction; removing a tag the
    run does not have is not an error."""
    checked = {check_tag_key(k): check_tag_value(k, v) for k, v in tags.items()}
    gone = [check_tag_key(k) for k in remove]
    both = sorted(set(checked) & set(gone))
    if both:
        raise InvalidArgument(f"tag {both[0]!r} is both set and removed; give it once")
    with db.write() as s:
        run_row(s, run_id)
        write_tags(s, run_id, checked)
        if gone:
            s.execute(delete(RunTagRow).where(RunTagRow.run_id == run_id, RunTagRow.key.in_(gone)))


def write_tags(s: Session, run_id: str, tags: Mapping[str, str]) -> None:
    if not tags:
        return
    existing = {
        row.key: row
        for row in s.scalars(
            select(RunTagRow).where(RunTagRow.run_id == run_id, RunTagRow.key.in_(list(tags)))
        )
    }
    for key, value in tags.items():
        if key in existing:
            existing[key].value = value
        else:
            s.add(RunTagRow(run_id=run_id, key=key, value=value))


def set_note(db: Database, run_id: str, note: str) -> None:
    if len(note) > MAX_NOTE:
        raise InvalidArgument(
            f"the note is {len(note)} characters; the limit is {MAX_NOTE}: attach a longer "
            "text to the run instead (`modelkeep runs attach RUN notes.md`)"
        )
    with db.write() as s:
        run_row(s, run_id).note = note


def rename(db: Database, run_id: str, name: str) -> None:
    check_run_name(name)
    with db.write() as s:
        run_row(s, run_id).name = name


def delete_run(db: Database, run_id: str, actor: str, reason: str = "") -> tuple[str, ...]:
    """Hide a run that has ended; the versions whose lineage still shows it are returned.
    Deleting a deleted run again changes nothing."""
    with db.write() as s:
        row = run_row(s, run_id)
        if row.status == RUNNING:
            raise RunStillRunning(run_id)
        if row.deleted_at is None:
            row.deleted_at = datetime.now(UTC)
            write_tags(s, run_id, {DELETED_BY: actor, DELETE_REASON: reason})
        return lineage_refs(s, run_id)


def restore_run(db: Database, run_id: str) -> None:
    with db.write() as s:
        row = run_row(s, run_id)
        if row.deleted_at is None:
            raise RunNotDeleted(run_id)
        row.deleted_at = None
        s.execute(
            delete(RunTagRow).where(
                RunTagRow.run_id == run_id, RunTagRow.key.in_([DELETED_BY, DELETE_REASON])
            )
        )


def lineage_refs(s: Session, run_id: str) -> tuple[str, ...]:
    """The versions whose lineage needs this run: those it or a run nested in it produced,
    and those it used (it is an input edge of their downstream lineage)."""
    family, level = [run_id], [run_id]
    while level:  # the runs nested in it, at any depth
        level = list(s.scalars(select(RunRow.id).where(RunRow.parent_id.in_(level))))
        family += level
    produced = select(ArtifactRow.name, VersionRow.number).join(
        ArtifactRow, ArtifactRow.id == VersionRow.artifact_id
    )
    refs = {
        f"{name}:v{number}"
        for name, number in s.execute(produced.where(VersionRow.run_id.in_(family)))
    }
    again = produced.join(RunOutputRow, RunOutputRow.version_id == VersionRow.id)
    refs |= {  # added again: content equal to an existing version
        f"{name}:v{number}"
        for name, number in s.execute(again.where(RunOutputRow.run_id.in_(family)))
    }
    used = produced.join(RunInputRow, RunInputRow.version_id == VersionRow.id)
    refs |= {
        f"{name}:v{number}" for name, number in s.execute(used.where(RunInputRow.run_id == run_id))
    }
    return tuple(sorted(refs))
