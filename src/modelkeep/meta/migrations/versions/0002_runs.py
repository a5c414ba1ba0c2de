"""Runs: parameters, metrics, environments, inputs, and the run that produced a version.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelkeep.meta.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("doc_json", sa.Text(), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pid_started", sa.BigInteger(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("command_json", sa.Text(), nullable=False),
        sa.Column("code_json", sa.Text(), nullable=False),
        sa.Column("env_id", sa.String(64), sa.ForeignKey("environments.id"), nullable=True),
    )
    op.create_index("ix_runs_name", "runs", ["name"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    # Before run_inputs exists: SQLite rebuilds the table to add a foreign key.
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("run_id", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_versions_run_id", "runs", ["run_id"], ["id"])
        batch.create_index("ix_versions_run_id", ["run_id"])
    op.create_table(
        "params",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value_json", sa.Text(), nullable=False),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Float(53), nullable=True),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("logged_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_metrics_run_key", "metrics", ["run_id", "key"])
    op.create_table(
        "run_inputs",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("versions.id"), primary_key=True),
    )
    op.create_index("ix_run_inputs_version_id", "run_inputs", ["version_id"])


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_index("ix_versions_run_id")
        batch.drop_constraint("fk_versions_run_id", type_="foreignkey")
        batch.drop_column("run_id")
    for table in ("run_inputs", "metrics", "params", "runs", "environments"):
        op.drop_table(table)
