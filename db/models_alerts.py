"""SQLAlchemy models of alert delivery (revision 0009): channels (EMAIL or WEBHOOK, secrets
encrypted at rest) and alert groups of channels; the alert rows themselves are in db.models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import DEFAULT_PROJECT, TS, Base

CHANNEL_KINDS = ("EMAIL", "WEBHOOK")


class AlertChannel(Base):
    """One way to deliver: an SMTP server and recipients, or a webhook URL. ``params`` holds
    the visible settings; ``secret_enc`` the encrypted JSON of the secret ones (an SMTP
    password, a webhook's HMAC key). A global channel also gets failover alerts and every
    alert that no group claims."""

    __tablename__ = "alert_channel"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    secret_enc: Mapped[str | None] = mapped_column(Text)
    is_global: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    project: Mapped[str] = mapped_column(String(100), nullable=False, default=DEFAULT_PROJECT)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    __table_args__ = (
        CheckConstraint("kind IN ('EMAIL', 'WEBHOOK')", name="ck_alert_channel_kind"),
    )


class AlertGroup(Base):
    """A named set of channels; a workflow's ``alert_group`` names one."""

    __tablename__ = "alert_group"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    project: Mapped[str] = mapped_column(String(100), nullable=False, default=DEFAULT_PROJECT)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())


class AlertGroupChannel(Base):
    __tablename__ = "alert_group_channel"
    group_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("alert_group.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("alert_channel.id", ondelete="CASCADE"), primary_key=True
    )
