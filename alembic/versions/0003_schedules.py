"""Schedules and backfill: one workflow instance per (schedule, fire time) even after the command
row is deleted, and the backfill tables (a request and its dates, each linked to its instance).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_index(
        "uq_wfi_schedule_fire",
        "workflow_instance",
        ["schedule_id", "schedule_time"],
        unique=True,
        postgresql_where=sa.text("schedule_id IS NOT NULL"),
    )
    op.create_table(
        "backfill",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "workflow_id",
            sa.BigInteger,
            sa.ForeignKey("workflow_definition.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("parallelism", sa.Integer, nullable=False),
        sa.Column("sort_order", sa.String(4), nullable=False, server_default="ASC"),
        sa.Column("state", sa.String(16), nullable=False, server_default="RUNNING"),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("cron", sa.String(200)),
        sa.Column("priority", sa.SmallInteger),
        sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("run_options", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("end_time", TS),
        sa.CheckConstraint("parallelism >= 1", name="ck_backfill_parallelism"),
    )
    op.create_index(
        "ix_backfill_running", "backfill", ["id"], postgresql_where=sa.text("state = 'RUNNING'")
    )
    op.create_table(
        "backfill_run",
        sa.Column(
            "backfill_id",
            sa.BigInteger,
            sa.ForeignKey("backfill.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("schedule_time", TS, nullable=False),
        sa.Column("instance_id", sa.BigInteger, unique=True),
        sa.Column("submitted_at", TS),
    )


def downgrade() -> None:
    op.drop_table("backfill_run")
    op.drop_index("ix_backfill_running", table_name="backfill")
    op.drop_table("backfill")
    op.drop_index("uq_wfi_schedule_fire", table_name="workflow_instance")
