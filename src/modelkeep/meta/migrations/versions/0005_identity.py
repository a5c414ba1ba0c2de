"""Identity: a random id for the database, which every store using it records.

The id names the data, so it outlives a downgrade (the table stays, unknown to older
releases) and an upgrade after one finds it again: stores bound to it stay usable.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from modelkeep.meta.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if not sa.inspect(conn).has_table("database_identity"):
        op.create_table(
            "database_identity",
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("created_at", UTCDateTime(), nullable=False),
        )
    table = sa.table(
        "database_identity", sa.column("id", sa.String(32)), sa.column("created_at", UTCDateTime())
    )
    if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0:
        op.bulk_insert(table, [{"id": uuid.uuid4().hex, "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    """Keep the table: the id belongs to the data, and stores record it."""
