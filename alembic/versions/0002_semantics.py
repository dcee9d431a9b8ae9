"""Workflow semantics: task groups (shared concurrency limits), reasons on instances and attempts,
and the parent link of sub-workflow instances.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "task_group",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("capacity >= 1", name="ck_task_group_capacity"),
    )
    op.add_column("task_instance", sa.Column("task_group", sa.String(100)))
    op.add_column("task_instance", sa.Column("reason", sa.Text))
    op.create_index(
        "ix_ti_task_group_active",
        "task_instance",
        ["task_group"],
        postgresql_where=sa.text(
            "task_group IS NOT NULL AND state IN ('SUBMITTED','DISPATCHED','RUNNING')"
        ),
    )
    op.add_column("workflow_instance", sa.Column("reason", sa.Text))
    op.add_column("workflow_instance", sa.Column("parent_task_instance_id", sa.BigInteger))
    op.create_index(
        "uq_wfi_parent_task",
        "workflow_instance",
        ["parent_task_instance_id"],
        unique=True,
        postgresql_where=sa.text("parent_task_instance_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_wfi_parent_task", table_name="workflow_instance")
    op.drop_column("workflow_instance", "parent_task_instance_id")
    op.drop_column("workflow_instance", "reason")
    op.drop_index("ix_ti_task_group_active", table_name="task_instance")
    op.drop_column("task_instance", "reason")
    op.drop_column("task_instance", "task_group")
    op.drop_table("task_group")
