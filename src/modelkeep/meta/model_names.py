"""A registered model's own life as rows: created empty, renamed, unregistered, and given a
version made of files that are already in the store.

MLflow's registry creates a model before it has a version, renames it, and deletes it;
modelkeep's registry knew a model only through its versions. Each change here is one
write transaction with its event in the hash chain (`model-create`, `rename`,
`unregister`, `register`), by the acting account. A rename is the one change of an
artifact's name (its only mutable field): the events before it keep the old name, and the
`rename` event tells `verify` and `history` that the two names are one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from modelkeep.errors import (
    NotRegistered,
    RegisteredModelExists,
    RunNotFound,
    TypeMismatch,
)
from modelkeep.meta.chain import Write, append, clock
from modelkeep.meta.db import Database, session_query
from modelkeep.meta.model_tags import (
    add_model_tags,
    add_version_tags,
    check_description,
    clear_model,
)
from modelkeep.meta.models import ArtifactRow, RunRow, VersionRow
from modelkeep.meta.records import Version, version_of
from modelkeep.meta.registry import refuse_held, tombstone
from modelkeep.meta.rows import artifact_locked, artifact_locked_in, create_version, ref_of

RENAME = "rename"


def create(
    db: Database, name: str, actor: str, *, description: str = "", tags: dict[str, str]
) -> None:
    """Register a model with no version yet (MLflow's create_registered_model). An
    unregistered artifact of type model of that name becomes the registered model."""
    check_description(description)
    with Write(db) as s:
        now = clock(s)
        art = artifact_locked(s, name, create="model", now=now)
        if art.type != "model":
            raise TypeMismatch(name, art.type, "model")
        if art.registered:
            raise RegisteredModelExists(name)
        art.registered = True
        art.description = description
        add_model_tags(s, art.id, tags)
        after: dict[str, Any] = {"registered": True}
        if description:
            after["description"] = description
        if tags:
            after["tags"] = tags
        append(s, actor, "model-create", name, name, {}, after, "", now)


def rename(db: Database, name: str, new_name: str, actor: str) -> None:
    """Give a registered model a new name; its versions, stages, aliases and tags follow."""
    with Write(db) as s:
        now = clock(s)
        art = artifact_locked(s, name)
        if not art.registered:
            raise NotRegistered(name)
        taken = s.scalars(select(ArtifactRow.id).where(ArtifactRow.name == new_name)).first()
        if taken is not None:
            raise RegisteredModelExists(new_name)
        art.name = new_name
        append(s, actor, RENAME, new_name, new_name, {"name": name}, {"name": new_name}, "", now)


def delete_model(db: Database, name: str, actor: str, reason: str) -> list[Version]:
    """Tombstone every registered version of model name (each with its event, as `delete`
    does), then unregister it: its description and tags go; its name can be registered
    again, and numbers continue after the deleted versions'. One transaction: a version
    in staging or production (checked under the lock) refuses it all, and a failure
    leaves every version as it was."""
    with Write(db) as s:
        now = clock(s)
        art = artifact_locked(s, name)
        if not art.registered:
            raise NotRegistered(name)
        live = s.scalars(
            select(VersionRow)
            .where(
                VersionRow.artifact_id == art.id,
                VersionRow.registered.is_(True),
                VersionRow.deleted_at.is_(None),
            )
            .order_by(VersionRow.number)
        ).all()
        refuse_held(art, live, f", then delete {name!r}")
        gone = [tombstone(s, art, row, actor, reason, now) for row in live]
        art.registered = False
        clear_model(s, art)
        append(s, actor, "unregister", name, name, {"registered": True},
               {"registered": False}, reason, now)  # fmt: skip
        return gone


@dataclass(frozen=True, slots=True)
class NewTree:
    """A folder of stored files to become a registered version (see `register_tree`)."""

    digest: str  # hex tree id
    size: int
    file_count: int
    source_name: str
    message: str
    origin: str  # where the files came from, for the event (an MLflow source URI)
    metadata: dict[str, Any]
    run_id: str | None
    host: str | None
    store_id: str | None
    description: str
    tags: dict[str, str]


def register_tree(db: Database, name: str, new: NewTree, actor: str) -> tuple[Version, bool]:
    """The next version of registered model name, registered, with its description and
    tags, in one transaction with its `register` event; True if it is new.

    Content equal to a live version of name is that version (as `add`), registered if it
    was not. The run is the one that logged the files: it must exist, and may have ended
    (MLflow registers a run's model after the run, as often as during it).
    """
    check_description(new.description)
    with Write(db) as s:
        now = clock(s)
        art = artifact_locked_in(session_query(s), name)
        if not art.registered:
            raise NotRegistered(name)
        if new.run_id is not None and s.get(RunRow, new.run_id) is None:
            raise RunNotFound(new.run_id)
        same = s.scalars(
            select(VersionRow)
            .where(
                VersionRow.artifact_id == art.id,
                VersionRow.digest == new.digest,
                VersionRow.kind == "dir",
                VersionRow.deleted_at.is_(None),
            )
            .order_by(VersionRow.number.desc())
            .limit(1)
        ).one_or_none()
        if same is not None and same.registered:
            return version_of(art, same), False
        if same is not None:
            same.registered = True
            same.stage_changed_at = now
        row = same or create_version(
            s,
            art,
            kind="dir",
            digest=new.digest,
            size=new.size,
            file_count=new.file_count,
            mode=0,
            source_name=new.source_name,
            user=actor,
            message=new.message,
            metadata=new.metadata,
            run_id=new.run_id,
            host=new.host,
            store_id=new.store_id,
            now=now,
            registered=True,
            description=new.description,
        )
        if same is None:
            add_version_tags(s, row.id, new.tags)
        after: dict[str, Any] = {"stage": row.stage, "source": new.origin}
        append(s, actor, "register", name, ref_of(art, row), {}, after, "", now)
        return version_of(art, row), same is None
