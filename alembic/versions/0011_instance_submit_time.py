"""An index on workflow_instance (submit_time, id): the instances list filtered by a time
range (the web UI's Instances page) reads that range, not the whole table.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_wfi_submit_time", "workflow_instance", ["submit_time", "id"])


def downgrade() -> None:
    op.drop_index("ix_wfi_submit_time", table_name="workflow_instance")
