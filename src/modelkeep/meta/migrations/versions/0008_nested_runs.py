"""Nested runs (a run's parent) and run attachments.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelkeep.meta.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_runs_parent_id", "runs", ["parent_id"], ["id"])
        batch.create_index("ix_runs_parent_id", ["parent_id"])
    op.create_table(
        "run_attachments",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("store_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_run_attachments_digest", "run_attachments", ["digest"])


def downgrade() -> None:
    op.drop_table("run_attachments")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_parent_id")
        batch.drop_constraint("fk_runs_parent_id", type_="foreignkey")
        batch.drop_column("parent_id")
