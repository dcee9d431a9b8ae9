"""GET /alerts: the alert rows masters and workers write (WORKFLOW_TIMEOUT, TASK_TIMEOUT,
MASTER_FAILOVER, COMMAND_NOT_CARRIED_OUT, ...), newest first, read only (one alert with its
delivery: api/routers/alert_config.py)."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.auth import Principal
from api.auth_scope import authorize, read_scope
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, MAX_ID, Limit, Offset, Timestamp
from core.validation import Moment
from db import alerts as q
from db.models import Alert

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=ERROR_RESPONSES)


class AlertOut(BaseModel):
    id: int
    kind: str
    title: str
    content: dict[str, Any]
    workflow_instance_id: int | None
    created_at: Timestamp

    @classmethod
    def from_row(cls, a: Alert) -> AlertOut:
        return cls(
            id=a.id,
            kind=a.kind,
            title=a.title,
            content=a.content or {},
            workflow_instance_id=a.workflow_instance_id,
            created_at=a.created_at,
        )


class AlertPage(BaseModel):
    items: list[AlertOut]
    total: int


@router.get("", response_model=AlertPage)
def list_alerts(
    kind: Annotated[str | None, Query(max_length=40, description="e.g. TASK_TIMEOUT")] = None,
    instance_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    since: Annotated[Moment | None, Query(description="created at or after")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> AlertPage:
    """Alerts of the caller's projects newest first; ``kind``, ``instance_id`` and ``since``
    filter. One alert's delivery: GET /alerts/{id}."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without an offset is UTC
    with ctx.session_factory.begin() as s:
        rows, total = q.list_page(
            s,
            kind=kind.upper() if kind else None,
            instance_id=instance_id,
            since=since,
            limit=limit,
            offset=offset,
            projects=read_scope(me),
        )
        return AlertPage(items=[AlertOut.from_row(a) for a in rows], total=total)
