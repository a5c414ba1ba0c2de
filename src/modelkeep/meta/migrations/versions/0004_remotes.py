"""Remotes: the host that added a version, and the remotes each version was pushed to.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelkeep.meta.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("versions", sa.Column("host", sa.String(255), nullable=True))
    op.create_table(
        "pushes",
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("versions.id"), primary_key=True),
        sa.Column("remote", sa.String(1024), primary_key=True),
        sa.Column("pushed_at", UTCDateTime(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pushes")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("host")
