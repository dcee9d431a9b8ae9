"""The audit log: one row per mutation request (who, when, action, resource ids, result, client
address; never a body), the admin's filtered read, and the retention cut."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from db.models_auth import AuditEntry


@dataclass(frozen=True)
class Entry:
    actor: str
    actor_id: int | None
    action: str
    resource: str
    resource_ids: dict[str, Any]
    project: str | None
    result: str
    status: int
    client: str | None
    method: str
    path: str


def write(s: Session, e: Entry) -> None:
    s.add(AuditEntry(**vars(e)))


def page(
    s: Session,
    *,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[AuditEntry], int]:
    """Rows newest first; ``action`` matches a whole action name, or a prefix ending in '*'."""
    cond: list[ColumnElement[bool]] = []
    if actor:
        cond.append(AuditEntry.actor == actor)
    if action:
        cond.append(
            AuditEntry.action.startswith(action[:-1], autoescape=True)
            if action.endswith("*")
            else AuditEntry.action == action
        )
    if since is not None:
        cond.append(AuditEntry.at >= since)
    total = s.scalar(select(func.count()).select_from(AuditEntry).where(*cond)) or 0
    rows = s.scalars(
        select(AuditEntry).where(*cond).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)


def cut(s: Session, retention_days: int, now: datetime | None = None) -> int:
    """Delete rows older than the retention (0 = keep all); how many went."""
    if retention_days <= 0:
        return 0
    before = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    res = s.execute(delete(AuditEntry).where(AuditEntry.at < before))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
