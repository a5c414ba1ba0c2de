"""Indexes for the registry listing at scale (1,000 models, 100,000 versions).

`models` counts each model's registered versions and finds the versions that hold a stage.
Measured on 100,000 versions (benchmarks/bench_registry_scale.py): the stages were found by a
scan of the whole versions table, and the counts read every version row; with these, the
stage holders are an index search and the counts an index-only scan.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_versions_stage_artifact", "versions", ["stage", "artifact_id"])
    op.create_index("ix_versions_listing", "versions", ["artifact_id", "registered", "deleted_at"])


def downgrade() -> None:
    op.drop_index("ix_versions_listing", table_name="versions")
    op.drop_index("ix_versions_stage_artifact", table_name="versions")
