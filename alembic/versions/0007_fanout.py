"""FANOUT sub-executions: a task_instance row may belong to a FANOUT attempt (``parent_id``,
one row per target host in ``target``); such rows are dispatched to their host's queue and are
never DAG tasks. One sub-execution per (parent, target).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "task_instance",
        sa.Column(
            "parent_id",
            sa.BigInteger(),
            sa.ForeignKey("task_instance.id", ondelete="CASCADE"),
            nullable=True,
        ),
    )
    op.add_column("task_instance", sa.Column("target", sa.String(200), nullable=True))
    op.create_index(
        "uq_ti_parent_target",
        "task_instance",
        ["parent_id", "target"],
        unique=True,
        postgresql_where=sa.text("parent_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_ti_parent_target", table_name="task_instance")
    op.drop_column("task_instance", "target")
    op.drop_column("task_instance", "parent_id")
