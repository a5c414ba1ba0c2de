"""Rows to remote records and back: what `push` writes beside the packs, what `pull` reads.

Importing is one write transaction: a pulled version arrives with its run and the model's
registry events, or nothing arrives at all.

Registry events cannot be spliced into this store's hash chain as they were (their ids
and hashes belong to the chain of the store that made them), so each one is appended
here again as a new event of this chain: the same action, model, target, before, after,
actor and reason, its time this store's clock, and `after.origin` naming where it came
from (store id, event id and hash there, its original time, the remote). Its effect on
stages, aliases and tombstones is applied to the rows in the same transaction, so
`audit --verify` replays the chain to the rows as for any local change. An `evaluate`
event brings its evaluations: their rows are made here, and the event appended here names
this store's row ids (its dataset and run linked when they are here too). Events go up in
order and come back in order (by original time), each at most once: an imported event
is never pushed again, and one already imported is recognised by its origin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from modelkeep.errors import VersionConflict
from modelkeep.meta import evaluations
from modelkeep.meta.chain import Write, append, clock
from modelkeep.meta.db import Database
from modelkeep.meta.models import (
    AliasRow,
    ArtifactRow,
    EnvironmentRow,
    EventRow,
    MetricRow,
    ParamRow,
    PushRow,
    RunInputRow,
    RunRow,
    VersionRow,
)
from modelkeep.meta.rows import artifact_locked, holders
from modelkeep.meta.wire import (
    EventRecord,
    MetricRecord,
    RunDoc,
    RunInputRecord,
    VersionRecord,
)

STAGE_ACTIONS = ("register", "promote", "archive", "rollback")


def describe(digest: str, user: str, host: str | None, at: datetime) -> str:
    """One version as a conflict message shows it."""
    when = at.isoformat(timespec="seconds")
    return f"b3:{digest[:16]} (added by {user} on {host or 'an unknown host'} at {when})"


# -- export ---------------------------------------------------------------------------


def version_records(
    db: Database, refs: Iterable[tuple[str, int]], store: str
) -> list[VersionRecord]:
    wanted = set(refs)
    names = {n for n, _ in wanted}
    out: list[VersionRecord] = []
    with db.read() as s:
        rows = s.execute(
            select(ArtifactRow.name, ArtifactRow.type, VersionRow)
            .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
            .where(ArtifactRow.name.in_(names))
        )
        for name, type_, v in rows:
            if (name, v.number) not in wanted:
                continue
            out.append(
                VersionRecord(
                    store=store,
                    name=name,
                    number=v.number,
                    type=type_,
                    kind=v.kind,
                    digest=v.digest,
                    size=v.size,
                    file_count=v.file_count,
                    mode=v.mode,
                    source_name=os.fsdecode(v.source_name),
                    created_at=v.created_at,
                    user=v.user,
                    host=v.host,
                    message=v.message,
                    metadata=json.loads(v.metadata_json or "{}"),
                    run_id=v.run_id,
                )
            )
    return sorted(out, key=lambda r: (r.name, r.number))


def run_docs(db: Database, run_ids: Iterable[str]) -> list[RunDoc]:
    ids = sorted(set(run_ids))
    if not ids:
        return []
    out: list[RunDoc] = []
    with db.read() as s:
        params: dict[str, dict[str, str]] = {}
        for run_id, key, value in s.execute(
            select(ParamRow.run_id, ParamRow.key, ParamRow.value_json).where(
                ParamRow.run_id.in_(ids)
            )
        ):
            params.setdefault(run_id, {})[key] = value
        metrics: dict[str, list[MetricRecord]] = {}
        for m in s.scalars(
            select(MetricRow).where(MetricRow.run_id.in_(ids)).order_by(MetricRow.id)
        ):
            metrics.setdefault(m.run_id, []).append(
                MetricRecord(m.key, m.value, m.step, m.logged_at)
            )
        inputs: dict[str, list[RunInputRecord]] = {}
        for run_id, name, number, digest in s.execute(
            select(RunInputRow.run_id, ArtifactRow.name, VersionRow.number, VersionRow.digest)
            .join(VersionRow, VersionRow.id == RunInputRow.version_id)
            .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
            .where(RunInputRow.run_id.in_(ids))
            .order_by(ArtifactRow.name, VersionRow.number)
        ):
            inputs.setdefault(run_id, []).append(RunInputRecord(name, number, digest))
        for run in s.scalars(select(RunRow).where(RunRow.id.in_(ids))):
            env = s.get(EnvironmentRow, run.env_id) if run.env_id else None
            out.append(
                RunDoc(
                    id=run.id,
                    name=run.name,
                    status=run.status,
                    user=run.user,
                    host=run.host,
                    started_at=run.started_at,
                    ended_at=run.ended_at,
                    exit_code=run.exit_code,
                    error=run.error,
                    command=json.loads(run.command_json or "{}"),
                    code=json.loads(run.code_json or "{}"),
                    env_id=env.id if env else None,
                    environment=json.loads(env.doc_json) if env else None,
                    params=params.get(run.id, {}),
                    metrics=tuple(metrics.get(run.id, [])),
                    inputs=tuple(inputs.get(run.id, [])),
                )
            )
    return out


def native_events(db: Database, models: Iterable[str], store: str) -> dict[str, list[EventRecord]]:
    """Per model, the events appended here by this store itself (not imported), in order."""
    names = sorted(set(models))
    out: dict[str, list[EventRecord]] = {n: [] for n in names}
    with db.read() as s:
        for e in s.scalars(select(EventRow).where(EventRow.model.in_(names)).order_by(EventRow.id)):
            after = json.loads(e.after_json)
            if isinstance(after, dict) and "origin" in after:
                continue
            out[e.model].append(
                EventRecord(
                    store=store,
                    id=e.id,
                    hash=e.hash,
                    at=e.at,
                    actor=e.actor,
                    action=e.action,
                    model=e.model,
                    target=e.target,
                    before=json.loads(e.before_json),
                    after=after,
                    reason=e.reason,
                )
            )
    return out


def pushable(events: Sequence[EventRecord], on_remote: set[tuple[str, int]]) -> list[EventRecord]:
    """The longest prefix of a model's events whose versions are all on the remote: an
    event about a version not pushed yet holds back the later ones, so a store that pulls
    never replays a later change before an earlier one."""
    out: list[EventRecord] = []
    for e in events:
        if not all(ref in on_remote for ref in _refs_of(e)):
            break
        out.append(e)
    return out


def _refs_of(e: EventRecord) -> list[tuple[str, int]]:
    name, colon, number = e.target.rpartition(":v")
    if colon and number.isdigit():
        return [(name, int(number))]
    version = e.after.get("version")
    return [(e.model, version)] if type(version) is int else []


# -- import ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Imported:
    versions: tuple[str, ...]  # refs made here
    renumbered: tuple[tuple[str, str], ...]  # (was, now): this store's unpushed versions
    events: int


@dataclass(frozen=True, slots=True)
class Bundle:
    """Everything read from a remote for one pull, already validated."""

    versions: tuple[VersionRecord, ...]
    runs: tuple[RunDoc, ...]
    events: tuple[EventRecord, ...]


def import_bundle(db: Database, bundle: Bundle, *, store: str, remote: str, host: str) -> Imported:
    """Add what bundle holds that this store lacks, in one transaction (see the header)."""
    with Write(db) as s:
        now = clock(s)
        made, renumbered = _import_versions(s, bundle, remote, now)
        count = _import_events(s, bundle.events, store, remote, now)
        _mark_pushed(s, bundle.versions, remote, host, now)
    return Imported(tuple(made), tuple(renumbered), count)


def _import_versions(
    s: Session, bundle: Bundle, remote: str, now: datetime
) -> tuple[list[str], list[tuple[str, str]]]:
    """Insert the versions this store lacks (bulk: a pull may bring thousands), after the
    runs they name and before the runs' inputs that name them."""
    made: list[str] = []
    renumbered: list[tuple[str, str]] = []
    values: list[dict[str, object]] = []
    by_name: dict[str, list[VersionRecord]] = {}
    for rec in bundle.versions:
        by_name.setdefault(rec.name, []).append(rec)
    for name in sorted(by_name):
        recs = sorted(by_name[name], key=lambda r: r.number)
        art = artifact_locked(s, name, create=recs[0].type, now=min(r.created_at for r in recs))
        if any(r.type != art.type for r in recs):
            raise VersionConflict(
                name,
                remote,
                f"a {recs[0].type}",
                f"a {art.type}",
                "add one of them again under another name",
            )
        here = {
            number: (vid, digest, kind)
            for vid, number, digest, kind in s.execute(
                select(VersionRow.id, VersionRow.number, VersionRow.digest, VersionRow.kind).where(
                    VersionRow.artifact_id == art.id
                )
            )
        }
        top = max([art.latest_number, *(r.number for r in recs)])
        for rec in recs:
            found = here.get(rec.number)
            if found is not None and found[1:] == (rec.digest, rec.kind):
                continue  # the same version, already here
            if found is not None:
                top += 1
                row = s.get(VersionRow, found[0])
                assert row is not None
                renumbered.append(_renumber(s, art.name, row, top, rec, remote))
            values.append(_version_values(art.id, rec))
            made.append(rec.ref)
        art.latest_number = top
    s.flush()
    fresh = _insert_runs(s, bundle.runs)
    if values:
        s.execute(insert(VersionRow), values)
    _insert_inputs(s, fresh)
    return made, renumbered


def _renumber(
    s: Session, name: str, row: VersionRow, number: int, theirs: VersionRecord, remote: str
) -> tuple[str, str]:
    """Move this store's own NAME:vN out of the way of the remote's, if nobody can have
    seen it under that number: not pushed anywhere and no registry event about it."""
    ref = f"{name}:v{row.number}"
    seen = s.scalar(select(func.count()).select_from(PushRow).where(PushRow.version_id == row.id))
    told = s.scalar(
        select(func.count())
        .select_from(EventRow)
        .where(EventRow.model == name, EventRow.target == ref)
    )
    if seen or told:
        raise VersionConflict(
            ref,
            remote,
            describe(theirs.digest, theirs.user, theirs.host, theirs.created_at),
            describe(row.digest, row.user, row.host, row.created_at),
            "both were published: keep one by deleting the other's use, or add this content "
            "again under another name",
        )
    row.number = number
    s.flush()
    return ref, f"{name}:v{number}"


def _version_values(artifact_id: int, rec: VersionRecord) -> dict[str, object]:
    return {
        "artifact_id": artifact_id,
        "number": rec.number,
        "kind": rec.kind,
        "digest": rec.digest,
        "size": rec.size,
        "file_count": rec.file_count,
        "mode": rec.mode,
        "source_name": os.fsencode(rec.source_name),
        "created_at": rec.created_at,
        "user": rec.user,
        "message": rec.message,
        "metadata_json": json.dumps(rec.metadata, sort_keys=True),
        "run_id": rec.run_id,
        "registered": False,
        "stage": "none",
        "deleted_at": None,
        "host": rec.host,
    }


def _insert_runs(s: Session, runs: Sequence[RunDoc]) -> list[RunDoc]:
    """The runs this store lacks, with parameters, metrics and environments; returned so
    their inputs can be linked once the versions are in."""
    ids = [r.id for r in runs]
    have = set(s.scalars(select(RunRow.id).where(RunRow.id.in_(ids)))) if ids else set()
    fresh = [r for r in runs if r.id not in have]
    if not fresh:
        return []
    envs = {r.env_id: r.environment for r in fresh if r.env_id and r.environment is not None}
    have_envs = set(s.scalars(select(EnvironmentRow.id).where(EnvironmentRow.id.in_(list(envs)))))
    env_rows = [
        {"id": k, "doc_json": json.dumps(v, sort_keys=True)}
        for k, v in envs.items()
        if k not in have_envs
    ]
    if env_rows:
        s.execute(insert(EnvironmentRow), env_rows)
    s.execute(
        insert(RunRow),
        [
            {
                "id": run.id,
                "name": run.name,
                "status": run.status,
                "user": run.user,
                "host": run.host,
                "pid": 0,
                "pid_started": None,
                "started_at": run.started_at,
                "heartbeat_at": run.ended_at or run.started_at,
                "ended_at": run.ended_at,
                "exit_code": run.exit_code,
                "error": run.error,
                "command_json": json.dumps(run.command, sort_keys=True),
                "code_json": json.dumps(run.code, sort_keys=True),
                "env_id": run.env_id,
            }
            for run in fresh
        ],
    )
    params = [
        {"run_id": run.id, "key": k, "value_json": v}
        for run in fresh
        for k, v in run.params.items()
    ]
    if params:
        s.execute(insert(ParamRow), params)
    metrics = [
        {"run_id": run.id, "key": m.key, "value": m.value, "step": m.step, "logged_at": m.logged_at}
        for run in fresh
        for m in run.metrics
    ]
    if metrics:
        s.execute(insert(MetricRow), metrics)
    return fresh


def _insert_inputs(s: Session, runs: Sequence[RunDoc]) -> None:
    """Link each run to the versions it used that this store has (with the same content);
    an input it does not have is left out of lineage."""
    wanted = {(i.name, i.number, i.digest) for run in runs for i in run.inputs}
    if not wanted:
        return
    ids = {
        (name, number, digest): vid
        for name, number, digest, vid in s.execute(
            select(ArtifactRow.name, VersionRow.number, VersionRow.digest, VersionRow.id)
            .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
            .where(ArtifactRow.name.in_(sorted({n for n, _, _ in wanted})))
        )
    }
    links = {
        (run.id, ids[(i.name, i.number, i.digest)])
        for run in runs
        for i in run.inputs
        if (i.name, i.number, i.digest) in ids
    }
    if links:
        s.execute(insert(RunInputRow), [{"run_id": r, "version_id": v} for r, v in sorted(links)])


def _mark_pushed(
    s: Session, recs: Sequence[VersionRecord], remote: str, host: str, now: datetime
) -> None:
    """What came from a remote is on it: recorded as pushed there, as a push would."""
    wanted = {(r.name, r.number) for r in recs}
    if not wanted:
        return
    ids = [
        vid
        for name, number, vid in s.execute(
            select(ArtifactRow.name, VersionRow.number, VersionRow.id)
            .join(VersionRow, VersionRow.artifact_id == ArtifactRow.id)
            .where(ArtifactRow.name.in_(sorted({n for n, _ in wanted})))
        )
        if (name, number) in wanted
    ]
    done = set(
        s.scalars(
            select(PushRow.version_id).where(PushRow.remote == remote, PushRow.version_id.in_(ids))
        )
    )
    rows = [
        {"version_id": vid, "remote": remote, "pushed_at": now, "host": host}
        for vid in sorted(set(ids) - done)
    ]
    if rows:
        s.execute(insert(PushRow), rows)


def _known_origins(s: Session, models: set[str], store: str) -> set[tuple[str, int]]:
    known: set[tuple[str, int]] = set()
    for eid, after_json in s.execute(
        select(EventRow.id, EventRow.after_json).where(EventRow.model.in_(models))
    ):
        after = json.loads(after_json)
        origin = after.get("origin") if isinstance(after, dict) else None
        if isinstance(origin, dict):
            known.add((str(origin.get("store")), int(origin.get("id") or 0)))
        else:
            known.add((store, eid))
    return known


def _import_events(
    s: Session, events: Sequence[EventRecord], store: str, remote: str, now: datetime
) -> int:
    if not events:
        return 0
    known = _known_origins(s, {e.model for e in events}, store)
    fresh = [e for e in events if e.store != store and (e.store, e.id) not in known]
    count = 0
    for e in sorted(fresh, key=lambda e: (e.at, e.store, e.id)):
        # Each its own microsecond, so stage holders order as the events do.
        at = now + timedelta(microseconds=count + 1)
        if e.action == evaluations.ACTION:  # rows of its own, under this store's ids
            after = evaluations.import_event(s, e.target, e.after, e.actor, at)
        else:
            after = dict(e.after) if _apply(s, e, at) else None
        if after is not None:
            after["origin"] = {
                "store": e.store,
                "id": e.id,
                "hash": e.hash,
                "at": e.at.isoformat(timespec="microseconds"),
                "remote": remote,
            }
            append(s, e.actor, e.action, e.model, e.target, e.before, after, e.reason, at)
            count += 1
    return count


def _apply(s: Session, e: EventRecord, at: datetime) -> bool:
    """Make e's change to the rows; False (and nothing appended) if its version is not here."""
    art = s.scalars(select(ArtifactRow).where(ArtifactRow.name == e.model)).one_or_none()
    if art is None:
        return False
    number = _number(e)
    row = None
    if number is not None:
        row = s.scalars(
            select(VersionRow).where(VersionRow.artifact_id == art.id, VersionRow.number == number)
        ).one_or_none()
        if row is None:
            return False
    if e.action in STAGE_ACTIONS and row is not None:
        stage = str(e.after["stage"])
        if stage == "production":
            old = holders(s, art).get("production")
            if old is not None and old.id != row.id:  # replaced here as it was there
                _archive(s, art, old, e, at)
        values: dict[str, object] = {"stage": stage, "stage_changed_at": at}
        if e.action == "register":
            values["registered"] = True
            art.registered = True
        s.execute(update(VersionRow).where(VersionRow.id == row.id).values(**values))
    elif e.action == "alias-set" and row is not None:
        alias = e.target.partition("@")[2]
        link = s.get(AliasRow, (art.id, alias))
        if link is None:
            s.add(AliasRow(artifact_id=art.id, alias=alias, version_id=row.id))
        else:
            link.version_id = row.id
    elif e.action == "alias-remove":
        alias = e.target.partition("@")[2]
        s.execute(delete(AliasRow).where(AliasRow.artifact_id == art.id, AliasRow.alias == alias))
    elif e.action == "delete" and row is not None:
        s.execute(delete(AliasRow).where(AliasRow.version_id == row.id))
        s.execute(update(VersionRow).where(VersionRow.id == row.id).values(deleted_at=at))
    s.flush()
    return True


def _archive(s: Session, art: ArtifactRow, old: VersionRow, e: EventRecord, at: datetime) -> None:
    """A production holder here that the pulled promotion displaces: archived by an event
    of this store's own, as a local promotion would."""
    ref = f"{art.name}:v{old.number}"
    s.execute(
        update(VersionRow)
        .where(VersionRow.id == old.id)
        .values(stage="archived", stage_changed_at=at)
    )
    append(
        s,
        e.actor,
        "archive",
        art.name,
        ref,
        {"stage": "production"},
        {"stage": "archived"},
        f"replaced in production by {e.target} (pulled)",
        at,
    )


def _number(e: EventRecord) -> int | None:
    _name, colon, number = e.target.rpartition(":v")
    if colon and number.isdigit():
        return int(number)
    if e.action == "alias-set":
        return int(e.after["version"])
    return None
