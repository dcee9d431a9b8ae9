"""Node epochs: one sequence hands out the epoch (fencing token) of every master and worker
registration, so that an epoch never repeats, not even after ZooKeeper's data is wiped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE node_epoch_seq AS BIGINT START WITH 1 MINVALUE 1 NO CYCLE")
    # Epochs handed out before this revision (ZooKeeper czxids) are never handed out again.
    op.execute(
        "SELECT setval('node_epoch_seq', GREATEST(1,"
        " COALESCE((SELECT max(owner_epoch) FROM workflow_instance), 0),"
        " COALESCE((SELECT max(lease_token) FROM task_instance), 0)))"
    )


def downgrade() -> None:
    op.execute("DROP SEQUENCE node_epoch_seq")
