"""Command-table queries for masters: claim with FOR UPDATE SKIP LOCKED, take ownership, delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class ClaimedCommand:
    id: int
    type: str
    workflow_id: int | None
    version: int | None
    instance_id: int | None
    priority: int
    params: dict[str, Any]
    schedule_id: int | None
    schedule_time: datetime | None


def lock_pending(s: Session, limit: int) -> list[ClaimedCommand]:
    """Lock up to ``limit`` commands in claim order; rows locked by other masters are skipped."""
    rows = s.execute(
        text(
            "SELECT id, type, workflow_id, version, instance_id, priority, params, schedule_id,"
            " schedule_time FROM command ORDER BY priority, id LIMIT :n FOR UPDATE SKIP LOCKED"
        ),
        {"n": limit},
    ).all()
    return [ClaimedCommand(*r) for r in rows]


def delete(s: Session, ids: list[int]) -> None:
    if ids:
        s.execute(text("DELETE FROM command WHERE id = ANY(:ids)"), {"ids": ids})
