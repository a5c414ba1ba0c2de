"""Version records on a remote: what lets two stores share versions with no shared database.

A remote holds, beside its packs, one immutable JSON file per immutable thing:

    records/NAME/V-N.json               the version NAME:vN (claims the number N)
    records/NAME/E-STORE-ID.json        registry event ID of store STORE about model NAME
    runs/RUN.json                       the run that produced a version: params, metrics,
                                        code, command, environment, inputs

Names are lowercase, so the upper-case `V-` and `E-` files never collide with the folder of
a namespaced name (`team/fraud` lives in `records/team/fraud/`). Records are written after
the packs they need (a record on a remote promises its bytes are there), and with a
create-exclusive write: a folder links a complete temporary file to the name, S3, GCS and
Azure use conditional writes. So two stores that each made NAME:v3 cannot both publish it:
the second is refused with both versions named. S3-compatible servers that ignore
`If-None-Match` (older MinIO, some gateways) cannot promise this; there the check made
before the upload still refuses every conflict that is not a race.

Pulling reads a model's records (and, for lineage, those of the models its runs used),
validates every field, and imports them in one transaction (meta.exchange).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from modelkeep import meta, sync
from modelkeep.errors import MalformedRemoteRecord, VersionConflict
from modelkeep.meta import exchange, wire
from modelkeep.meta.identity import database_id
from modelkeep.refs import DigestRef, parse_ref
from modelkeep.remotes import Remote
from modelkeep.remotes.backend import MAX_RECORD

if TYPE_CHECKING:
    from modelkeep.parts import Parts

T = TypeVar("T")
RECORDS = "records"
RUNS = "runs"
_VERSION = re.compile(r"records/(?P<name>.+)/V-(?P<number>[1-9][0-9]*)\.json")
_EVENT = re.compile(r"records/(?P<name>.+)/E-(?P<store>[0-9a-f]{32})-(?P<id>[0-9]{12})\.json")


def version_path(name: str, number: int) -> str:
    return f"{RECORDS}/{name}/V-{number}.json"


def event_path(model: str, store: str, event_id: int) -> str:
    return f"{RECORDS}/{model}/E-{store}-{event_id:012d}.json"


def run_path(run_id: str) -> str:
    return f"{RUNS}/{run_id}.json"


# -- push -------------------------------------------------------------------------------


def _conflict_step(name: str) -> str:
    return (
        f"run `modelkeep pull {name}` (it brings theirs under its number and renumbers "
        "yours to the next one), then `modelkeep push` again"
    )


def _conflict(
    remote: Remote, ours: wire.VersionRecord, path: str, data: bytes | None
) -> VersionConflict | None:
    """The conflict between ours and what the remote holds at path (None: the same)."""
    if data is None:
        return None
    theirs = _parse(remote, path, data, wire.parse_version)
    if (theirs.digest, theirs.kind) == (ours.digest, ours.kind):
        return None
    return VersionConflict(
        ours.ref,
        remote.url,
        exchange.describe(theirs.digest, theirs.user, theirs.host, theirs.created_at),
        exchange.describe(ours.digest, ours.user, ours.host, ours.created_at),
        _conflict_step(ours.name),
    )


def check(parts: Parts, remote: Remote, versions: Sequence[meta.Version]) -> None:
    """Refuse, before anything is uploaded, versions whose number the remote holds with
    other content."""
    store = database_id(parts.db)
    recs = exchange.version_records(parts.db, [(v.name, v.number) for v in versions], store)
    paths = [version_path(r.name, r.number) for r in recs]
    found = remote.read_files(paths)
    for rec, path in zip(recs, paths, strict=True):
        problem = _conflict(remote, rec, path, found[path])
        if problem is not None:
            raise problem


def publish(parts: Parts, remote: Remote, versions: Sequence[meta.Version]) -> None:
    """Write the records of versions (whose packs are on the remote): their runs, then
    each version create-exclusive, then every registry event made here that is about
    versions on the remote only (with nothing new to push too: a promotion of a version
    pushed before goes up on the next push). A number another store claimed first raises
    VersionConflict; a record already there with the same content is left as it is."""
    db = parts.db
    store = database_id(db)
    recs = exchange.version_records(db, [(v.name, v.number) for v in versions], store)
    runs = exchange.run_docs(db, {r.run_id for r in recs if r.run_id})
    paths = [run_path(r.id) for r in runs] + [version_path(r.name, r.number) for r in recs]
    there = remote.existing(paths)  # a re-push reads listings only, and writes nothing
    for run in runs:
        if run_path(run.id) not in there:
            remote.put_exclusive(run_path(run.id), wire.canonical(run.to_json()))
    for rec in recs:
        path = version_path(rec.name, rec.number)
        if path in there or not remote.put_exclusive(path, wire.canonical(rec.to_json())):
            problem = _conflict(remote, rec, path, remote.read_files([path])[path])
            if problem is not None:
                raise problem
    on_remote = meta.pushed(db, remote.url) | {(r.name, r.number) for r in recs}
    models = sorted({name for name, _ in on_remote})
    for model, events in exchange.native_events(db, models, store).items():
        if not events:
            continue
        listed = remote.list_files(f"{RECORDS}/{model}")
        for e in exchange.pushable(events, on_remote):
            path = event_path(model, store, e.id)
            if path not in listed:
                remote.put_exclusive(path, wire.canonical(e.to_json()))


# -- pull -------------------------------------------------------------------------------


def _parse(remote: Remote, path: str, data: bytes, parse: Callable[[bytes], T]) -> T:
    try:
        return parse(data)
    except wire.BadRecord as exc:
        raise MalformedRemoteRecord(remote.url, path, str(exc)) from None


def _read(remote: Remote, listing: dict[str, int], paths: list[str]) -> dict[str, bytes]:
    for path in paths:
        if listing.get(path, 0) > MAX_RECORD:
            raise MalformedRemoteRecord(remote.url, path, f"larger than {MAX_RECORD} bytes")
    got = remote.read_files(paths)
    out: dict[str, bytes] = {}
    for path in paths:
        data = got[path]
        if data is None:
            raise MalformedRemoteRecord(remote.url, path, "listed but cannot be read")
        out[path] = data
    return out


def _listing(remote: Remote, names: Iterable[str] | None) -> dict[str, int]:
    if names is None:
        return remote.list_files(RECORDS, recursive=True)
    found: dict[str, int] = {}
    for name in sorted(set(names)):
        found.update(remote.list_files(f"{RECORDS}/{name}"))
    return found


def read_bundle(remote: Remote, names: set[str] | None) -> exchange.Bundle:
    """The records of the models names (None: all), and of every model their runs used or
    their evaluations were measured on, read and validated; MalformedRemoteRecord names the
    first bad file."""
    versions: dict[str, wire.VersionRecord] = {}
    events: dict[str, wire.EventRecord] = {}
    runs: dict[str, wire.RunDoc] = {}
    todo: set[str] | None = names
    done: set[str] = set()
    while todo is None or todo:
        listing = _listing(remote, todo)
        done |= todo or set()
        vpaths = [p for p in sorted(listing) if _VERSION.fullmatch(p)]
        epaths = [p for p in sorted(listing) if _EVENT.fullmatch(p)]
        data = _read(remote, listing, vpaths + epaths)
        for path in vpaths:
            rec = _parse(remote, path, data[path], wire.parse_version)
            if version_path(rec.name, rec.number) != path:
                raise MalformedRemoteRecord(remote.url, path, f"it holds {rec.ref}")
            versions[path] = rec
        for path in epaths:
            ev = _parse(remote, path, data[path], wire.parse_event)
            if event_path(ev.model, ev.store, ev.id) != path:
                raise MalformedRemoteRecord(remote.url, path, "it holds another event")
            events[path] = ev
        wanted = sorted({r.run_id for r in versions.values() if r.run_id} - runs.keys())
        rpaths = [run_path(r) for r in wanted]
        got = remote.read_files(rpaths)
        for run_id, path in zip(wanted, rpaths, strict=True):
            raw = got[path]
            if raw is None or len(raw) > MAX_RECORD:
                owner = next(p for p, r in versions.items() if r.run_id == run_id)
                raise MalformedRemoteRecord(remote.url, owner, f"its run {path} is missing")
            run = _parse(remote, path, raw, wire.parse_run)
            if run.id != run_id:
                raise MalformedRemoteRecord(remote.url, path, f"it holds run {run.id}")
            runs[run_id] = run
        if todo is None:
            break
        used = {i.name for r in runs.values() for i in r.inputs}
        used |= {  # the datasets evaluations were measured on, so they can be linked
            str(e.after["dataset"]).rpartition(":v")[0]
            for e in events.values()
            if e.action == "evaluate" and e.after.get("dataset")
        }
        todo = used - done
    return exchange.Bundle(tuple(versions.values()), tuple(runs.values()), tuple(events.values()))


@dataclass(frozen=True, slots=True)
class Targets:
    names: set[str] | None  # models whose records to read (None: all)
    refs: tuple[str, ...]  # the refs to fetch the bytes of, resolved after the import


def targets(refs: Sequence[str], everything: bool) -> Targets:
    if everything:
        return Targets(None, ())
    names = set()
    for text in refs:
        ref = parse_ref(text)
        if not isinstance(ref, DigestRef):
            names.add(ref.name)
    return Targets(names, tuple(refs))


def pull_records(
    parts: Parts, refs: Sequence[str], remote_name: str | None, *, everything: bool = False
) -> exchange.Imported:
    """Bring the records of refs' models (with everything: of all models) from the remote,
    in one transaction; the bytes are fetched afterwards, by `sync.pull`."""
    want = targets(refs, everything)
    if not everything and not want.names:
        return exchange.Imported((), (), 0)
    remote = sync.open_remote(sync.remote_config(parts.settings, remote_name))
    bundle = read_bundle(remote, want.names)
    if not bundle.versions and not bundle.events:
        return exchange.Imported((), (), 0)
    return exchange.import_bundle(
        parts.db, bundle, store=database_id(parts.db), remote=remote.url, host=parts.settings.host
    )


def on_remote(parts: Parts, remote_name: str | None) -> list[meta.Version]:
    """The versions here that are on the remote (pushed there, or pulled from it)."""
    url = sync.open_remote(sync.remote_config(parts.settings, remote_name)).url
    there = meta.pushed(parts.db, url)
    return [v for v in meta.all_versions(parts.db) if (v.name, v.number) in there]


def with_records(result: sync.PullResult, imported: exchange.Imported) -> sync.PullResult:
    return replace(result, imported=imported.versions, renumbered=imported.renumbered)
