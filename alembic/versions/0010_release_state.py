"""A workflow's release state (ONLINE or OFFLINE): an OFFLINE workflow cannot be run and its
schedules do not fire; every existing workflow is ONLINE.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "workflow_definition",
        sa.Column("release_state", sa.String(10), nullable=False, server_default="ONLINE"),
    )
    op.create_check_constraint(
        "ck_workflow_definition_release_state",
        "workflow_definition",
        "release_state IN ('ONLINE', 'OFFLINE')",
    )


def downgrade() -> None:
    op.drop_constraint("ck_workflow_definition_release_state", "workflow_definition")
    op.drop_column("workflow_definition", "release_state")
