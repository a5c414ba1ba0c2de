"""Copy every record of one metadata database into another, empty one (`modelkeep migrate`).

Generic over the typed models: every table of `models.py` is copied, so a table added
later moves without a change here. Tables go in foreign-key order (parents first), each
in primary-key order and in batches, with their primary keys kept: every reference (a
version's run, an alias's or a push's version, a run's environment) stays right, and the
registry's hash chain, which hashes event ids and times, verifies on the target as it
did on the source. PostgreSQL's sequences are then set past the copied ids, so the next
version or metric gets a fresh one.

The source is read in one snapshot; the target is written in one transaction, so a
failure or a kill at any moment leaves the target as it was (its schema at most, which
still counts as empty). The source is only read.

Not copied: the database's identity row. The target keeps the id its own migration made,
so a store can tell the two databases apart afterwards (see `modelkeep/migrate.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Table, func, insert, inspect, select, text
from sqlalchemy.orm import Session

from modelkeep.errors import MigrateCheckFailed, TargetNotEmpty
from modelkeep.meta.db import Database
from modelkeep.meta.models import Base, DatabaseIdentityRow
from modelkeep.progress import NULL_PROGRESS, Progress

IDENTITY = str(DatabaseIdentityRow.__tablename__)
SCHEMA = "alembic_version"
BATCH = 2000


def tables() -> list[Table]:
    """The tables that hold records, parents before the tables that refer to them."""
    return [t for t in Base.metadata.sorted_tables if t.name != IDENTITY]


@dataclass(frozen=True, slots=True)
class Holdings:
    """What a database already holds: records of ours, or tables that are not ours."""

    rows: tuple[tuple[str, int], ...] = ()  # (table, rows) of each non-empty table of ours
    foreign: tuple[str, ...] = ()  # tables modelkeep does not know

    @property
    def empty(self) -> bool:
        return not self.rows and not self.foreign

    def describe(self) -> str:
        parts = [", ".join(f"{name}: {n}" for name, n in self.rows)] if self.rows else []
        if self.foreign:
            shown = ", ".join(self.foreign[:5]) + (", …" if len(self.foreign) > 5 else "")
            parts.append(f"tables modelkeep does not know: {shown}")
        return "; ".join(parts) or "nothing"


def holdings(db: Database) -> Holdings:
    """What db holds, before its schema is made: a schema alone (ours) counts as empty."""
    with db.read() as s:
        present = set(inspect(s.connection()).get_table_names())
        ours = {t.name for t in tables()} | {IDENTITY, SCHEMA}
        counts = _counts(s, [t for t in tables() if t.name in present])
    rows = tuple((name, n) for name, n in counts.items() if n)
    return Holdings(rows, tuple(sorted(present - ours)))


def existing_id(db: Database) -> str | None:
    """The database's id if it has one already; never makes one (unlike `database_id`)."""
    with db.read() as s:
        if not inspect(s.connection()).has_table(IDENTITY):
            return None
        return s.scalars(
            select(DatabaseIdentityRow.id).order_by(DatabaseIdentityRow.created_at).limit(1)
        ).first()


def _counts(s: Session, which: list[Table]) -> dict[str, int]:
    return {t.name: int(s.scalar(select(func.count()).select_from(t)) or 0) for t in which}


def copy(
    source: Database, target: Database, progress: Progress = NULL_PROGRESS, batch: int = BATCH
) -> dict[str, int]:
    """Copy every record of source into target (schema made, no records): rows per table.

    Raises TargetNotEmpty (records arrived since `holdings`) or MigrateCheckFailed (the
    counts differ), with the target transaction rolled back; database errors come out as
    DatabaseError, from the one seam in `db.py`.
    """
    with source.read() as src, target.write() as dst:
        if src.get_bind().dialect.name == "postgresql":  # one snapshot across the tables
            src.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        found = _counts(dst, tables())
        if any(found.values()):
            held = Holdings(tuple((k, n) for k, n in found.items() if n))
            raise TargetNotEmpty(target.display_url, held.describe())
        expected = _counts(src, tables())
        progress.start(sum(expected.values()), "copying records")
        try:
            copied = {t.name: _copy_table(src, dst, t, progress, batch) for t in tables()}
        finally:
            progress.finish()
        if dst.get_bind().dialect.name == "postgresql":
            _reset_sequences(dst)
        after = _counts(dst, tables())
        for name, n in expected.items():
            if copied[name] != n or after[name] != n:
                detail = f"{name}: {n} row(s) read, {after[name]} written"
                raise MigrateCheckFailed(target.display_url, detail)
    return copied


def _copy_table(src: Session, dst: Session, table: Table, progress: Progress, batch: int) -> int:
    """One table, streamed in primary-key order, inserted batch by batch with its keys."""
    query = select(table).order_by(*table.primary_key.columns)
    result = src.connection().execution_options(yield_per=batch).execute(query)
    done = 0
    for part in result.partitions(batch):
        rows: list[dict[str, Any]] = [dict(r._mapping) for r in part]
        dst.connection().execute(insert(table), rows)
        done += len(rows)
        progress.advance(len(rows))
    return done


def _reset_sequences(dst: Session) -> None:
    """Set each serial id's sequence past the largest id copied (they were given, not drawn)."""
    quote = dst.get_bind().dialect.identifier_preparer.quote
    for table in tables():
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer):
            continue
        name, column = quote(table.name), quote(keys[0].name)
        dst.execute(
            text(
                f"SELECT setval(seq, COALESCE((SELECT MAX({column}) FROM {name}), 0) + 1, false) "
                "FROM (SELECT pg_get_serial_sequence(:table, :column) AS seq) AS s "
                "WHERE seq IS NOT NULL"
            ),
            {"table": table.name, "column": keys[0].name},
        )
