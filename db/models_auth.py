"""SQLAlchemy models of the user surface (revision 0008): projects, users, per-project grants,
API tokens (SHA-256 hashes only) and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.roles import GRANT_ROLES, Role
from db.models import TS, Base


def _in(values: tuple[str, ...] | list[str]) -> str:
    return ",".join(f"'{v}'" for v in values)


ROLE_CHECK = f"role IN ({_in([r.value for r in Role])})"
GRANT_ROLE_CHECK = f"role IN ({_in([r.value for r in GRANT_ROLES])})"


class Project(Base):
    """Groups workflows, schedules, datasources and task groups; may name the OS users its SHELL
    tasks run as on workers that allow them (``run_as_user`` the default, ``os_users`` all the
    users its tasks may choose)."""

    __tablename__ = "project"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    run_as_user: Mapped[str | None] = mapped_column(String(64))
    os_users: Mapped[list[str]] = mapped_column(JSONB, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())


class AppUser(Base):
    """A person or a robot; ``bootstrap`` marks the one admin the bootstrap token acts as."""

    __tablename__ = "app_user"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    bootstrap: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    __table_args__ = (
        CheckConstraint(ROLE_CHECK, name="ck_app_user_role"),
        Index(
            "uq_app_user_bootstrap", "bootstrap", unique=True, postgresql_where=text("bootstrap")
        ),
    )


class ProjectGrant(Base):
    __tablename__ = "project_grant"
    project: Mapped[str] = mapped_column(
        String(100),
        ForeignKey("project.name", ondelete="CASCADE", onupdate="CASCADE"),
        primary_key=True,
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    __table_args__ = (
        CheckConstraint(GRANT_ROLE_CHECK, name="ck_project_grant_role"),
        Index("ix_project_grant_user", "user_id"),
    )


class ApiToken(Base):
    """A user's bearer token: only its SHA-256 is stored; expiry and revocation are read on every
    request."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    last_used_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (Index("ix_api_token_user", "user_id"),)


class AuditEntry(Base):
    """One mutation request: who, when, what, on which ids, the result and the client address.
    Never a request body, so never a secret."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    actor: Mapped[str] = mapped_column(String(100), nullable=False)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    resource: Mapped[str] = mapped_column(String(100), nullable=False)
    resource_ids: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    project: Mapped[str | None] = mapped_column(String(100))
    result: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    client: Mapped[str | None] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(8), nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_at", "actor", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
    )
