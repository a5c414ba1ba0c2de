"""Move a store's records to another metadata database and switch the store to it.

`modelkeep migrate --to postgresql://HOST/DB` takes a one-laptop store to a team's
server; `--to sqlite` (or `--to sqlite:///PATH`) brings it back. The steps, and what a
failure or a kill leaves after each:

1. Checks, changing nothing: MODELKEEP_DATABASE_URL is not set (it would override the
   switch), config.toml can be rewritten, no run is still running (its metrics would go
   to the old database), the target is another database and holds no records.
2. The target's schema is made: it still counts as empty.
3. Every record is copied in one target transaction (`meta/transfer.py`) and committed.
   Killed before the commit, the target is empty again; the source was only read.
4. The copy is checked against the source: the same rows per table, and the audit chain
   with the same events, the same head and the same verdict. A mismatch empties the
   target again and switches nothing.
5. The store is bound to the target (`ownership.move`, one atomic file).
6. The old default SQLite file, `.modelkeep/meta.sqlite`, is renamed
   `meta.sqlite.moved-TIME` (kept, never deleted), so that `--to sqlite` can later come
   back to the default path and nothing opens the stale copy by default.
7. `database_url` is written to `.modelkeep/config.toml` (atomic), or removed for the
   default SQLite file.

Killed between 5 and 7, the store already belongs to the target while the config names
the old database: `modelkeep migrate --to` the same URL again sees that the target is
this store's database and does 6 and 7 only.

Identity: the target keeps the id its own migration made; the old database's id is not
copied. The store records the target's id, so from then on `gc`, `cache prune`, `fsck`
and `add` refuse the old database with this store (WrongDatabase) instead of deleting
or adding against a stale copy. Using the old database again is an explicit step:
rename the kept file back, point database_url at it and delete the store's
`database.json`, or better, migrate to a new empty database. A PostgreSQL or a
non-default SQLite file that was the source is left as it was (a team may still use it).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from modelkeep import config, meta, ownership
from modelkeep.capture.process import alive
from modelkeep.errors import BadMigrateTarget, MigrateCheckFailed, MigrateRefused, TargetNotEmpty
from modelkeep.meta import transfer
from modelkeep.meta.identity import database_id
from modelkeep.parts import Parts
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.redact import mask_url
from modelkeep.store import identity

DEFAULT_FILE = "meta.sqlite"


@dataclass(frozen=True, slots=True)
class Moved:
    """What a migrate did: from where to where (credentials masked), what it copied."""

    source: str
    target: str
    database_id: str  # the target's: the store now records it
    rows: tuple[tuple[str, int], ...]  # (table, rows copied)
    events: int  # registry events, verified on the target
    head: str  # the audit chain's head on the target: the same as the source's
    kept: str | None  # where the old default SQLite file was kept, if it was renamed
    finished: bool = False  # an interrupted switch was completed; nothing was copied now

    @property
    def records(self) -> int:
        return sum(n for _, n in self.rows)

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "database_id": self.database_id,
            "rows": dict(self.rows),
            "records": self.records,
            "events": self.events,
            "head": self.head,
            "kept": self.kept,
            "finished": self.finished,
        }


def default_url(settings: config.Settings) -> str:
    """The URL of the default SQLite file, spelled as `config.load` spells it."""
    return f"sqlite:///{settings.control_dir / DEFAULT_FILE}"


def target_url(settings: config.Settings, to: str) -> str:
    """The URL `--to` names, normalised: `sqlite` is the default file, a relative SQLite
    path is taken from the working directory, `postgresql://` gets the psycopg driver."""
    text = to.strip()
    if text in ("sqlite", "sqlite:", "sqlite://"):
        return default_url(settings)
    shown = mask_url(text)
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise BadMigrateTarget(shown, "not a database URL") from exc
    backend = url.drivername.partition("+")[0]
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise BadMigrateTarget(shown, "an in-memory database is lost when the command ends")
        path = Path(url.database).expanduser().absolute()
        if not path.parent.is_dir():
            raise BadMigrateTarget(shown, f"folder {str(path.parent)!r} does not exist")
        if path.is_dir():
            raise BadMigrateTarget(shown, f"{str(path)!r} is a folder; name a file in it")
        return f"sqlite:///{path}"
    if backend in ("postgresql", "postgres"):
        if not url.database:
            raise BadMigrateTarget(shown, "name the database: postgresql://HOST/DB")
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)
    raise BadMigrateTarget(
        shown, f"{backend!r} is not a database modelkeep keeps metadata in (SQLite, PostgreSQL)"
    )


def move(parts: Parts, to: str, progress: Progress = NULL_PROGRESS) -> Moved:
    """Copy every record of the store's database into the empty database `to`, check the
    copy, then switch the store and its config to it (see the module's docstring).

    Leaves parts.db closed when the old default SQLite file was renamed: the caller
    opens the new database (`Repo.migrate` does).
    """
    if config.database_url_from_env() is not None:
        raise MigrateRefused(
            f"{config.DATABASE_URL_ENV} is set, and it overrides database_url in "
            ".modelkeep/config.toml, so the switch would not take effect",
            f"unset {config.DATABASE_URL_ENV} (write the URL as database_url in "
            ".modelkeep/config.toml), then migrate",
        )
    url = target_url(parts.settings, to)
    setting = None if url == default_url(parts.settings) else url
    config.set_database_url(parts.root, setting, dry_run=True)  # refused now, not after
    source = parts.db
    target = meta.Database(url)
    try:
        _check_no_live_run(source)
        target_id = transfer.existing_id(target)
        if target_id is not None and target_id == database_id(source):
            raise MigrateRefused(
                f"this store already uses {mask_url(url)}", "there is nothing to move"
            )
        held = transfer.holdings(target)
        if not held.empty:
            if target_id is not None and _bound_id(parts) == target_id:
                return _finish(parts, target, url)
            raise TargetNotEmpty(mask_url(url), held.describe())
        target.migrate()
        rows = transfer.copy(source, target, progress)
        verified = _check(source, target)
        kept = _switch(parts, target, url)
        return Moved(
            mask_url(parts.settings.database_url),
            mask_url(url),
            database_id(target),
            tuple(rows.items()),
            verified.events,
            verified.head,
            kept,
        )
    finally:
        target.close()


def _check_no_live_run(db: meta.Database) -> None:
    meta.reap(db, alive)
    live = meta.find_runs(db, status="running", limit=1)
    if live:
        run = live[0]
        raise MigrateRefused(
            f"run {run.name!r} ({run.short_id}, by {run.user} on {run.host}) is still "
            "running and would log to the old database",
            "wait for it to end (or stop it), then migrate",
        )


def _bound_id(parts: Parts) -> str | None:
    bound = identity.read(parts.store.root)
    return bound.database_id if bound is not None else None


def _check(source: meta.Database, target: meta.Database) -> meta.Verification:
    """The target's audit chain must verify as the source's does: else empty the target
    again (it was empty before, and nothing uses it yet) and switch nothing."""
    before, after = meta.verify(source), meta.verify(target)
    same = (before.events, before.head, before.problems) == (
        after.events,
        after.head,
        after.problems,
    )
    if not same:
        _empty(target)
        detail = (
            f"audit chain: {before.events} event(s) ending {before.head[:12]} in the source, "
            f"{after.events} ending {after.head[:12]} in the copy"
        )
        raise MigrateCheckFailed(mask_url(target.url), detail)
    return after


def _empty(db: meta.Database) -> None:
    with db.write() as s:
        for table in reversed(transfer.tables()):
            s.execute(delete(table))


def _switch(parts: Parts, target: meta.Database, url: str) -> str | None:
    """Steps 5-7: bind the store, keep the old default file aside, write the config."""
    ownership.move(parts.store, target)
    kept = _retire(parts)
    is_default = url == default_url(parts.settings)
    config.set_database_url(parts.root, None if is_default else url)
    return kept


def _finish(parts: Parts, target: meta.Database, url: str) -> Moved:
    """A switch killed after binding the store: do the rest, copy nothing."""
    kept = _retire(parts) if not transfer.holdings(parts.db).empty else None
    config.set_database_url(parts.root, None if url == default_url(parts.settings) else url)
    verified = meta.verify(target)
    counts = transfer.holdings(target).rows
    return Moved(
        mask_url(parts.settings.database_url),
        mask_url(url),
        database_id(target),
        counts,
        verified.events,
        verified.head,
        kept,
        finished=True,
    )


def _retire(parts: Parts) -> str | None:
    """Rename the old default SQLite file (with its WAL) to meta.sqlite.moved-TIME."""
    if parts.settings.database_url != default_url(parts.settings):
        return None
    path = parts.settings.control_dir / DEFAULT_FILE
    if not path.exists():
        return None
    parts.db.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # the WAL into the file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    kept = path.with_name(f"{DEFAULT_FILE}.moved-{stamp}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        old = Path(f"{path}{suffix}")
        if old.exists():
            old.replace(Path(f"{kept}{suffix}"))
    return str(kept)
