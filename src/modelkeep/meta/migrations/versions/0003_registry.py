"""The model registry: stages, aliases, tombstones and the hash-chained event log.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelkeep.meta.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_PRODUCTION = sa.text("stage = 'production'")


def upgrade() -> None:
    # Plain ADD COLUMNs with constant defaults: SQLite needs no table rebuild for these.
    for table in ("artifacts", "versions"):
        op.add_column(
            table, sa.Column("registered", sa.Boolean(), nullable=False, server_default="0")
        )
    op.add_column(
        "versions", sa.Column("stage", sa.String(16), nullable=False, server_default="none")
    )
    op.add_column("versions", sa.Column("stage_changed_at", UTCDateTime(), nullable=True))
    op.add_column("versions", sa.Column("deleted_at", UTCDateTime(), nullable=True))
    op.create_index("ix_versions_stage", "versions", ["artifact_id", "stage"])
    op.create_index(
        "uq_versions_production",
        "versions",
        ["artifact_id"],
        unique=True,
        sqlite_where=_PRODUCTION,
        postgresql_where=_PRODUCTION,
    )
    op.create_table(
        "aliases",
        sa.Column("artifact_id", sa.Integer(), sa.ForeignKey("artifacts.id"), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("versions.id"), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("target", sa.String(160), nullable=False),
        sa.Column("before_json", sa.Text(), nullable=False),
        sa.Column("after_json", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_events_model", "events", ["model", "target"])
    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("chain_head", "events", "aliases"):
        op.drop_table(table)
    op.drop_index("uq_versions_production", "versions")
    op.drop_index("ix_versions_stage", "versions")
    with op.batch_alter_table("versions") as batch:
        for column in ("deleted_at", "stage_changed_at", "stage", "registered"):
            batch.drop_column(column)
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("registered")
