"""Initial schema: definitions and versions, schedules, commands, instances, task attempts, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ACTIVE_WF = "state NOT IN ('SUCCESS','FAILURE','STOP')"


def upgrade() -> None:
    op.create_table(
        "workflow_definition",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("latest_version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index(
        "uq_workflow_definition_name_live",
        "workflow_definition",
        ["name"],
        unique=True,
        postgresql_where=sa.text("NOT deleted"),
    )
    op.create_table(
        "workflow_version",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "workflow_id",
            sa.BigInteger,
            sa.ForeignKey("workflow_definition.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("workflow_id", "version", name="uq_workflow_version"),
    )
    op.create_table(
        "schedule",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "workflow_id",
            sa.BigInteger,
            sa.ForeignKey("workflow_definition.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("start_time", TS),
        sa.Column("end_time", TS),
        sa.Column("misfire", sa.String(16), nullable=False, server_default="FIRE_ONCE"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("failure_strategy", sa.String(16), nullable=False, server_default="END"),
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default="2"),
        sa.Column("worker_group", sa.String(100)),
        sa.Column("next_fire_time", TS),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index(
        "ix_schedule_next_fire", "schedule", ["next_fire_time"], postgresql_where=sa.text("enabled")
    )
    op.create_index("ix_schedule_workflow", "schedule", ["workflow_id"])
    op.create_table(
        "command",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("workflow_id", sa.BigInteger),
        sa.Column("version", sa.Integer),
        sa.Column("instance_id", sa.BigInteger),
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default="2"),
        sa.Column("params", JSONB, nullable=False, server_default="{}"),
        sa.Column("schedule_id", sa.BigInteger),
        sa.Column("schedule_time", TS),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("schedule_id", "schedule_time", name="uq_command_schedule_fire"),
    )
    op.create_index("ix_command_claim_order", "command", ["priority", "id"])
    op.create_table(
        "workflow_instance",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "workflow_id", sa.BigInteger, sa.ForeignKey("workflow_definition.id"), nullable=False
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default="2"),
        sa.Column("params", JSONB, nullable=False, server_default="{}"),
        sa.Column("run_options", JSONB, nullable=False, server_default="{}"),
        sa.Column("command_type", sa.String(40), nullable=False),
        sa.Column("schedule_id", sa.BigInteger),
        sa.Column("schedule_time", TS),
        sa.Column("submit_time", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("start_time", TS),
        sa.Column("end_time", TS),
        sa.Column("owner", sa.String(200)),
        sa.Column("owner_epoch", sa.BigInteger),
        sa.Column("run_count", sa.Integer, nullable=False, server_default="1"),
        sa.ForeignKeyConstraint(
            ["workflow_id", "version"],
            ["workflow_version.workflow_id", "workflow_version.version"],
            name="fk_wfi_version",
        ),
    )
    op.create_index("ix_wfi_workflow", "workflow_instance", ["workflow_id", "id"])
    op.create_index("ix_wfi_state", "workflow_instance", ["state"])
    op.create_index(
        "ix_wfi_owner_active",
        "workflow_instance",
        ["owner", "owner_epoch"],
        postgresql_where=sa.text(ACTIVE_WF),
    )
    op.create_table(
        "task_instance",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "workflow_instance_id",
            sa.BigInteger,
            sa.ForeignKey("workflow_instance.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default="2"),
        sa.Column("worker_group", sa.String(100), nullable=False, server_default="default"),
        sa.Column("spec", JSONB, nullable=False, server_default="{}"),
        sa.Column("output", JSONB, nullable=False, server_default="{}"),
        sa.Column("host", sa.String(200)),
        sa.Column("worker_id", sa.String(200)),
        sa.Column("lease_token", sa.BigInteger),
        sa.Column("pid", sa.Integer),
        sa.Column("log_path", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("submit_time", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("dispatch_time", TS),
        sa.Column("start_time", TS),
        sa.Column("end_time", TS),
        sa.UniqueConstraint("workflow_instance_id", "name", "attempt", name="uq_task_attempt"),
    )
    op.create_index(
        "ix_ti_active_state",
        "task_instance",
        ["state"],
        postgresql_where=sa.text("state IN ('SUBMITTED','DISPATCHED','RUNNING')"),
    )
    op.create_index(
        "ix_ti_worker_active",
        "task_instance",
        ["worker_id"],
        postgresql_where=sa.text("state IN ('DISPATCHED','RUNNING')"),
    )
    op.create_table(
        "alert",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("content", JSONB, nullable=False, server_default="{}"),
        sa.Column("workflow_instance_id", sa.BigInteger),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_alert_created", "alert", ["created_at"])


def downgrade() -> None:
    for table in (
        "alert",
        "task_instance",
        "workflow_instance",
        "command",
        "schedule",
        "workflow_version",
        "workflow_definition",
    ):
        op.drop_table(table)
