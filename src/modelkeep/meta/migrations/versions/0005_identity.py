"""Identity: a random id for the database, which every store using it records.

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
    table = op.create_table(
        "database_identity",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.bulk_insert(table, [{"id": uuid.uuid4().hex, "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("database_identity")
