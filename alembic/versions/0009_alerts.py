"""Alert channels (EMAIL or WEBHOOK, secrets encrypted) and alert groups of them, and the
delivery columns of the alert table: each row is an outbox entry the masters' senders claim,
send and mark SENT / FAILED with retries (rows written before this revision count as SKIPPED).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_channel",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("params", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("secret_enc", sa.Text(), nullable=True),
        sa.Column("is_global", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("project", sa.String(100), nullable=False, server_default="default"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('EMAIL', 'WEBHOOK')", name="ck_alert_channel_kind"),
    )
    op.create_table(
        "alert_group",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("project", sa.String(100), nullable=False, server_default="default"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "alert_group_channel",
        sa.Column(
            "group_id",
            sa.BigInteger(),
            sa.ForeignKey("alert_group.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "channel_id",
            sa.BigInteger(),
            sa.ForeignKey("alert_channel.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_index("ix_alert_group_channel_channel", "alert_group_channel", ["channel_id"])
    op.add_column("alert", sa.Column("alert_group", sa.String(100), nullable=True))
    op.add_column(
        "alert", sa.Column("status", sa.String(10), nullable=False, server_default="WAIT")
    )
    op.add_column("alert", sa.Column("tries", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "alert", sa.Column("next_try_at", TS, nullable=False, server_default=sa.func.now())
    )
    op.add_column("alert", sa.Column("sent_at", TS, nullable=True))
    op.add_column("alert", sa.Column("last_error", sa.Text(), nullable=True))
    # channel name -> "SENT" or the last error, so a retry skips the channels that took it
    op.add_column(
        "alert",
        sa.Column("deliveries", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.execute("UPDATE alert SET status = 'SKIPPED'")  # history is not mailed after an upgrade
    op.create_index(
        "ix_alert_due",
        "alert",
        ["next_try_at", "id"],
        postgresql_where=sa.text("status = 'WAIT'"),
    )


def downgrade() -> None:
    op.drop_index("ix_alert_due", table_name="alert")
    for col in ("deliveries", "last_error", "sent_at", "next_try_at", "tries", "status"):
        op.drop_column("alert", col)
    op.drop_column("alert", "alert_group")
    op.drop_table("alert_group_channel")
    op.drop_table("alert_group")
    op.drop_table("alert_channel")
