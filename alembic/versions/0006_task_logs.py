"""Task logs kept in PostgreSQL: ``task_log_chunk`` holds each attempt's log as it is shipped by
its worker, in order (``seq``), as raw bytes cut at line ends; ``first_line`` and ``line_count``
(newlines in ``data``) let a window of lines be read without the chunks before it. Rows go with
their task instance (ON DELETE CASCADE).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_log_chunk",
        sa.Column(
            "task_instance_id",
            sa.BigInteger,
            sa.ForeignKey("task_instance.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("first_line", sa.BigInteger, nullable=False),
        sa.Column("line_count", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("task_instance_id", "seq", name="pk_task_log_chunk"),
    )


def downgrade() -> None:
    op.drop_table("task_log_chunk")
