"""Users, roles, projects, hashed API tokens and the audit log. Everything that exists moves into
the project "default" (workflows, datasources and task groups get a ``project`` column, instances,
schedules and backfills follow their workflow); the bootstrap admin "admin" is the user the old
single token now acts as.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ROLES = "'admin','editor','operator','viewer'"
GRANT_ROLES = "'editor','operator','viewer'"
OWNED = ("workflow_definition", "datasource", "task_group")


def upgrade() -> None:
    op.create_table(
        "project",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("run_as_user", sa.String(64), nullable=True),
        sa.Column("os_users", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.execute(
        "INSERT INTO project (name, description) "
        "VALUES ('default', 'everything that existed before projects')"
    )
    op.create_table(
        "app_user",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("bootstrap", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(f"role IN ({ROLES})", name="ck_app_user_role"),
    )
    op.create_index(
        "uq_app_user_bootstrap",
        "app_user",
        ["bootstrap"],
        unique=True,
        postgresql_where=sa.text("bootstrap"),
    )
    op.execute("INSERT INTO app_user (name, role, bootstrap) VALUES ('admin', 'admin', true)")
    op.create_table(
        "project_grant",
        sa.Column(
            "project",
            sa.String(100),
            sa.ForeignKey("project.name", ondelete="CASCADE", onupdate="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("app_user.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(f"role IN ({GRANT_ROLES})", name="ck_project_grant_role"),
    )
    op.create_index("ix_project_grant_user", "project_grant", ["user_id"])
    op.create_table(
        "api_token",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("app_user.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("last_used_at", TS, nullable=True),
    )
    op.create_index("ix_api_token_user", "api_token", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(100), nullable=False),
        sa.Column("resource_ids", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("project", sa.String(100), nullable=True),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("client", sa.String(100), nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor_at", "audit_log", ["actor", "at"])
    op.create_index("ix_audit_log_action_at", "audit_log", ["action", "at"])
    for table in OWNED:
        op.add_column(
            table,
            sa.Column("project", sa.String(100), nullable=False, server_default="default"),
        )
        op.create_foreign_key(
            f"fk_{table}_project",
            table,
            "project",
            ["project"],
            ["name"],
            onupdate="CASCADE",
        )
        op.create_index(f"ix_{table}_project", table, ["project"])


def downgrade() -> None:
    for table in OWNED:
        op.drop_index(f"ix_{table}_project", table_name=table)
        op.drop_constraint(f"fk_{table}_project", table, type_="foreignkey")
        op.drop_column(table, "project")
    op.drop_table("audit_log")
    op.drop_table("api_token")
    op.drop_table("project_grant")
    op.drop_table("app_user")
    op.drop_table("project")
