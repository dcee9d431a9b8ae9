"""Indexes for retention and the instance list at millions of attempts: finished instances by
(end_time, id), which `dagkeeper purge` reads oldest first; alerts and commands by instance, which
it deletes by; instances by (state, id) instead of (state), so a page of one state newest first
reads that range. Built CONCURRENTLY: a live database keeps taking writes meanwhile.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NEW = (
    ("ix_wfi_end_time", "workflow_instance", ["end_time", "id"], "end_time IS NOT NULL"),
    ("ix_alert_instance", "alert", ["workflow_instance_id"], "workflow_instance_id IS NOT NULL"),
    ("ix_command_instance", "command", ["instance_id"], "instance_id IS NOT NULL"),
    ("ix_wfi_state_id", "workflow_instance", ["state", "id"], None),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, cols, where in NEW:
            op.create_index(
                name,
                table,
                cols,
                postgresql_where=sa.text(where) if where else None,
                postgresql_concurrently=True,
                if_not_exists=True,
            )
        op.drop_index(
            "ix_wfi_state",
            table_name="workflow_instance",
            postgresql_concurrently=True,
            if_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_wfi_state",
            "workflow_instance",
            ["state"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        for name, table, _, _ in reversed(NEW):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
