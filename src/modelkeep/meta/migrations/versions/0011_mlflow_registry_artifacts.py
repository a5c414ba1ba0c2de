"""MLflow artifacts, logged models, and descriptions and tags of models and versions.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelkeep.meta.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlflow_artifacts",
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("store_id", sa.String(32), nullable=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "logged_models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiments.id"), index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=True, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False, server_default=""),
        sa.Column("model_type", sa.String(255), nullable=False, server_default=""),
        sa.Column("source_run_id", sa.String(32), nullable=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.Column("params_json", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("tags_json", sa.Text(), nullable=False, server_default="{}"),
    )
    op.create_table(
        "model_tags",
        sa.Column("artifact_id", sa.Integer(), sa.ForeignKey("artifacts.id"), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "version_tags",
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("versions.id"), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("description")
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("description")
    op.drop_table("version_tags")
    op.drop_table("model_tags")
    op.drop_table("logged_models")
    op.drop_table("mlflow_artifacts")
