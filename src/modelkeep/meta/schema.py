"""A new database's schema, made at HEAD in one transaction instead of by the migration chain.

This is Alembic's documented way to start a database ("create_all, then stamp head"):
the tables come from the models, which a test holds equal to what the migrations build,
and the `alembic_version` row says HEAD, so later migrations start from there. Stamping
writes Alembic's table by hand (the same columns and key Alembic makes), so creating a
repository does not import Alembic at all.

On a SQLite file (the default) even SQLAlchemy is not needed: `schema.sql` beside this
module is the DDL `create_all` runs there, generated from the models (`python -m
modelkeep.meta.schema > src/modelkeep/meta/schema.sql`), which a test holds equal to the
models, and `Database.create` runs it with the standard library's sqlite3.
"""

from __future__ import annotations

import sys

from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, String, Table, insert
from sqlalchemy import inspect as inspect_db

from modelkeep.meta.models import Base, DatabaseIdentityRow
from modelkeep.meta.records import new_identity


def _alembic_version() -> Table:
    """Alembic's own bookkeeping table, as `alembic stamp` creates it."""
    return Table(
        "alembic_version",
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )


def create_at_head(conn: Connection, head: str) -> bool:
    """Build every table and stamp head, inside the caller's transaction; False (and
    nothing done) when the database already has tables, which the migrations handle."""
    if inspect_db(conn).get_table_names():
        return False
    Base.metadata.create_all(conn)
    stamp = _alembic_version()
    stamp.create(conn)
    conn.execute(insert(stamp).values(version_num=head))
    database_id, created_at = new_identity()
    conn.execute(insert(DatabaseIdentityRow).values(id=database_id, created_at=created_at))
    return True


def sqlite_script() -> str:
    """The statements `create_at_head` runs on SQLite (tables in dependency order, each with
    its indexes, then Alembic's table), one per paragraph, for `schema.sql`."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = sqlite.dialect()
    statements = []
    for table in [*Base.metadata.sorted_tables, _alembic_version()]:
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)))
    text = "\n\n".join(f"{s.strip()};" for s in statements)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


if __name__ == "__main__":
    sys.stdout.write(sqlite_script())
