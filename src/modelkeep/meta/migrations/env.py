"""Alembic environment: run with a connection handed over by modelkeep.meta.db."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from modelkeep.meta.models import Base

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Several machines may open a fresh shared database at once: migrate one at a time.
        connection.execute(text("SELECT pg_advisory_xact_lock(7160250515)"))
    context.run_migrations()
