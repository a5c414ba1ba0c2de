"""Descriptions and tags of registered models and their versions, as rows (0011).

MLflow's registry gives a model and each of its versions a free-text description and
key/value tags; modelkeep keeps them beside the registry state (`artifacts.description`,
`versions.description`, `model_tags`, `version_tags`). A version's description may change,
unlike its message. Every change is a registry event in the hash chain, by the acting
account, like a stage or alias change (`describe`, `tag-set`, `tag-remove`); replaying the
log ignores them, since they change no stage, alias or tombstone.

The reading half (`registered`) gathers what MLflow's registered-model and model-version
documents show: versions, stages, aliases, descriptions, tags and times, in a few queries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, true
from sqlalchemy.orm import Session

from modelkeep.errors import InvalidArgument, NotRegistered, TagNotFound
from modelkeep.meta.chain import Write, append, clock
from modelkeep.meta.db import Database
from modelkeep.meta.models import (
    AliasRow,
    ArtifactRow,
    EventRow,
    ModelTagRow,
    VersionRow,
    VersionTagRow,
)
from modelkeep.meta.rows import artifact, artifact_locked, ref_of, version_row

MAX_DESCRIPTION = 20_000  # characters
MAX_TAG_KEY = 250
MAX_TAG_VALUE = 5000


def check_description(text: str) -> str:
    if len(text) > MAX_DESCRIPTION:
        raise InvalidArgument(
            f"a description is at most {MAX_DESCRIPTION:,} characters, this one {len(text):,}"
        )
    return text


def check_tag(key: str, value: str | None = None) -> None:
    if not key or len(key) > MAX_TAG_KEY or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidArgument(
            f"a tag key is 1-{MAX_TAG_KEY} characters without control characters, not {key[:40]!r}"
        )
    if value is not None and len(value) > MAX_TAG_VALUE:
        raise InvalidArgument(
            f"tag {key!r}: a value is at most {MAX_TAG_VALUE:,} characters, this one {len(value):,}"
        )


def _registered(s: Session, name: str) -> ArtifactRow:
    art = artifact_locked(s, name)
    if not art.registered:
        raise NotRegistered(name)
    return art


# -- writing ------------------------------------------------------------------------------


def describe_model(db: Database, name: str, text: str, actor: str, reason: str = "") -> None:
    check_description(text)
    with Write(db) as s:
        now = clock(s)
        art = _registered(s, name)
        before, art.description = art.description, text
        if before != text:
            append(s, actor, "describe", name, name, {"description": before},
                   {"description": text}, reason, now)  # fmt: skip


def describe_version(
    db: Database, name: str, number: int, text: str, actor: str, reason: str = ""
) -> None:
    check_description(text)
    with Write(db) as s:
        now = clock(s)
        art = _registered(s, name)
        row = version_row(s, art, number)
        before, row.description = row.description, text
        if before != text:
            append(s, actor, "describe", name, ref_of(art, row), {"description": before},
                   {"description": text}, reason, now)  # fmt: skip


def set_model_tag(
    db: Database, name: str, key: str, value: str, actor: str, reason: str = ""
) -> None:
    check_tag(key, value)
    with Write(db) as s:
        now = clock(s)
        art = _registered(s, name)
        row = s.get(ModelTagRow, (art.id, key))
        before = row.value if row else None
        if row is None:
            s.add(ModelTagRow(artifact_id=art.id, key=key, value=value))
        else:
            row.value = value
        append(s, actor, "tag-set", name, name, {key: before}, {key: value}, reason, now)


def delete_model_tag(db: Database, name: str, key: str, actor: str) -> None:
    check_tag(key)
    with Write(db) as s:
        now = clock(s)
        art = _registered(s, name)
        row = s.get(ModelTagRow, (art.id, key))
        if row is None:
            raise TagNotFound(name, key)
        s.delete(row)
        append(s, actor, "tag-remove", name, name, {key: row.value}, {key: None}, "", now)


def set_version_tag(
    db: Database, name: str, number: int, key: str, value: str, actor: str, reason: str = ""
) -> None:
    check_tag(key, value)
    with Write(db) as s:
        now = clock(s)
        art = _registered(s, name)
        version = version_row(s, art, number)
        row = s.get(VersionTagRow, (version.id, key))
        before = row.value if row else None
        if row is None:
            s.add(VersionTagRow(version_id=version.id, key=key, value=value))
        else:
            row.value = value
        append(s, actor, "tag-set", name, ref_of(art, version), {key: before}, {key: value},
               reason, now)  # fmt: skip


def delete_version_tag(db: Database, name: str, number: int, key: str, actor: str) -> None:
    check_tag(key)
    with Write(db) as s:
        now = clock(s)
        art = _registered(s, name)
        version = version_row(s, art, number)
        row = s.get(VersionTagRow, (version.id, key))
        if row is None:
            raise TagNotFound(ref_of(art, version), key)
        s.delete(row)
        append(s, actor, "tag-remove", name, ref_of(art, version), {key: row.value},
               {key: None}, "", now)  # fmt: skip


def add_version_tags(s: Session, version_id: int, tags: dict[str, str]) -> None:
    """Tags of a version being made, in its transaction (its event records them)."""
    for key, value in tags.items():
        check_tag(key, value)
        s.add(VersionTagRow(version_id=version_id, key=key, value=value))


def add_model_tags(s: Session, artifact_id: int, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        check_tag(key, value)
        row = s.get(ModelTagRow, (artifact_id, key))
        if row is None:
            s.add(ModelTagRow(artifact_id=artifact_id, key=key, value=value))
        else:
            row.value = value


def clear_model(s: Session, art: ArtifactRow) -> None:
    """Forget a model's description and tags (it is being unregistered)."""
    s.execute(delete(ModelTagRow).where(ModelTagRow.artifact_id == art.id))
    art.description = ""


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionDoc:
    """A registered version as MLflow's registry shows it."""

    name: str
    number: int
    created_at: datetime
    updated_at: datetime
    user: str
    stage: str
    description: str
    run_id: str | None
    metadata: dict[str, Any]
    tags: dict[str, str]
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModelDoc:
    """A registered model as MLflow's registry shows it: versions oldest first."""

    name: str
    created_at: datetime
    updated_at: datetime
    description: str
    tags: dict[str, str]
    aliases: dict[str, int]
    versions: tuple[VersionDoc, ...] = field(default=())


def registered(
    db: Database, names: Iterable[str] | None = None, number: int | None = None
) -> list[ModelDoc]:
    """Every registered model (or those of names that are), by name, with its registered,
    live versions (only version `number`, if given: one version read, not all)."""
    with db.read() as s:
        query = select(ArtifactRow).where(ArtifactRow.registered).order_by(ArtifactRow.name)
        if names is not None:
            query = query.where(ArtifactRow.name.in_(list(names)))
        arts = list(s.scalars(query))
        ids = [a.id for a in arts]
        if not ids:
            return []
        updated = dict(
            s.execute(
                select(EventRow.model, func.max(EventRow.at))
                .where(EventRow.model.in_([a.name for a in arts]))
                .group_by(EventRow.model)
            ).all()
        )
        versions: dict[int, list[VersionRow]] = {i: [] for i in ids}
        for row in s.scalars(
            select(VersionRow)
            .where(
                VersionRow.artifact_id.in_(ids),
                VersionRow.registered,
                VersionRow.deleted_at.is_(None),
                VersionRow.number == number if number is not None else true(),
            )
            .order_by(VersionRow.number)
        ):
            versions[row.artifact_id].append(row)
        version_ids = [v.id for vs in versions.values() for v in vs]
        vtags: dict[int, dict[str, str]] = {}
        for vid, key, value in s.execute(
            select(VersionTagRow.version_id, VersionTagRow.key, VersionTagRow.value)
            .where(VersionTagRow.version_id.in_(version_ids))
            .order_by(VersionTagRow.key)
        ):
            vtags.setdefault(vid, {})[key] = value
        mtags: dict[int, dict[str, str]] = {}
        for aid, key, value in s.execute(
            select(ModelTagRow.artifact_id, ModelTagRow.key, ModelTagRow.value)
            .where(ModelTagRow.artifact_id.in_(ids))
            .order_by(ModelTagRow.key)
        ):
            mtags.setdefault(aid, {})[key] = value
        aliases: dict[int, dict[str, int]] = {}
        by_version: dict[int, list[str]] = {}
        for aid, alias, vid, number in s.execute(
            select(AliasRow.artifact_id, AliasRow.alias, VersionRow.id, VersionRow.number)
            .join(VersionRow, VersionRow.id == AliasRow.version_id)
            .where(AliasRow.artifact_id.in_(ids))
            .order_by(AliasRow.alias)
        ):
            aliases.setdefault(aid, {})[alias] = number
            by_version.setdefault(vid, []).append(alias)
        out = []
        for art in arts:
            docs = tuple(
                VersionDoc(
                    name=art.name,
                    number=v.number,
                    created_at=v.created_at,
                    updated_at=max(v.created_at, v.stage_changed_at or v.created_at),
                    user=v.user,
                    stage=v.stage,
                    description=v.description,
                    run_id=v.run_id,
                    metadata=_metadata(v.metadata_json),
                    tags=vtags.get(v.id, {}),
                    aliases=tuple(by_version.get(v.id, [])),
                )
                for v in versions[art.id]
            )
            times = [art.created_at, *(d.updated_at for d in docs)]
            if art.name in updated:
                times.append(updated[art.name])
            out.append(
                ModelDoc(
                    name=art.name,
                    created_at=art.created_at,
                    updated_at=max(times),
                    description=art.description,
                    tags=mtags.get(art.id, {}),
                    aliases=aliases.get(art.id, {}),
                    versions=docs,
                )
            )
        return out


def one(db: Database, name: str, number: int | None = None) -> ModelDoc:
    """The registered model called name (with only version `number`, if given);
    ArtifactNotFound (naming similar ones) if none."""
    found = registered(db, [name], number)
    if not found:
        with db.read() as s:
            art = artifact(s, name)  # raises ArtifactNotFound when there is no such name
        raise NotRegistered(art.name)
    return found[0]


def _metadata(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
