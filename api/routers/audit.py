"""/audit: the audit log, newest first, filtered by actor, action (a name, or a prefix ending in
'*') and time (admin only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.auth import Principal
from api.auth_schemas import AuditOut, AuditPage
from api.auth_scope import authorize
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, Limit, Offset
from core.errors import ValidationError
from db import audit as q

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES)


@router.get("", response_model=AuditPage)
def list_audit(
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[datetime | None, Query(description="at or after (with an offset)")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    _: Principal = Depends(authorize("admin")),
    ctx: ApiContext = Depends(get_ctx),
) -> AuditPage:
    """One row per mutation request: actor, time, action (the route's name, e.g.
    ``create_workflow``), resource and ids, project, result, HTTP status, client address."""
    if since is not None and since.tzinfo is None:
        raise ValidationError(
            "since: give a time with an offset (e.g. 2026-01-31T00:00:00Z)",
            [{"loc": ["query", "since"], "message": "time without an offset"}],
        )
    with ctx.session_factory() as s:
        rows, total = q.page(s, actor=actor, action=action, since=since, limit=limit, offset=offset)
        items = [
            AuditOut(
                id=r.id,
                at=r.at,
                actor=r.actor,
                actor_id=r.actor_id,
                action=r.action,
                resource=r.resource,
                resource_ids=r.resource_ids,
                project=r.project,
                result=r.result,
                status=r.status,
                client=r.client,
                method=r.method,
                path=r.path,
            )
            for r in rows
        ]
    return AuditPage(items=items, total=total)
