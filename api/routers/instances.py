"""/instances: list workflow instances with filters, read one with every task attempt."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import ApiContext, get_ctx
from api.schemas import (
    ERROR_RESPONSES,
    MAX_ID,
    DbId,
    InstanceDetail,
    InstancePage,
    InstanceSummary,
    Offset,
    TaskInstanceOut,
    TaskInstancePage,
)
from common.db import runs
from common.errors import ValidationError
from common.states import WorkflowState

router = APIRouter(prefix="/instances", tags=["instances"], responses=ERROR_RESPONSES)


def parse_states(raw: list[str] | None) -> list[str] | None:
    """``state=RUNNING&state=FAILURE`` or ``state=RUNNING,FAILURE``, case-insensitive."""
    if not raw:
        return None
    names = [p.strip().upper() for item in raw for p in item.split(",") if p.strip()]
    unknown = sorted({n for n in names if n not in WorkflowState.__members__})
    if unknown:
        allowed = ", ".join(s.value for s in WorkflowState)
        raise ValidationError(
            f"unknown workflow state(s): {', '.join(unknown)} (expected one of {allowed})",
            [{"code": "unknown_state", "message": "not a workflow state", "states": unknown}],
        )
    return names or None


@router.get("", response_model=InstancePage)
def list_instances(
    workflow_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    state: Annotated[list[str] | None, Query(description="state name(s), comma list")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Offset = 0,
    ctx: ApiContext = Depends(get_ctx),
) -> InstancePage:
    """Workflow instances, newest first."""
    states = parse_states(state)
    with ctx.session_factory.begin() as s:
        rows, total = runs.list_instances(
            s, workflow_id=workflow_id, states=states, limit=limit, offset=offset
        )
        names = runs.workflow_names(s, (i.workflow_id for i in rows))
        items = [InstanceSummary.from_row(i, names.get(i.workflow_id)) for i in rows]
    return InstancePage(items=items, total=total)


@router.get("/{instance_id}", response_model=InstanceDetail)
def get_instance(instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> InstanceDetail:
    """One instance with every attempt of every task (id, name, type, state, attempt, host,
    times, exit code)."""
    with ctx.session_factory.begin() as s:
        instance = runs.get_instance(s, instance_id)
        tasks, _ = runs.instance_tasks(s, instance_id)
        names = runs.workflow_names(s, [instance.workflow_id])
        return InstanceDetail.from_rows(instance, names.get(instance.workflow_id), tasks)


@router.get("/{instance_id}/tasks", response_model=TaskInstancePage)
def list_instance_tasks(
    instance_id: DbId,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Offset = 0,
    ctx: ApiContext = Depends(get_ctx),
) -> TaskInstancePage:
    """The instance's task attempts in full, in creation order."""
    with ctx.session_factory.begin() as s:
        runs.get_instance(s, instance_id)
        rows, total = runs.instance_tasks(s, instance_id, limit=limit, offset=offset)
        items = [TaskInstanceOut.from_row(t) for t in rows]
    return TaskInstancePage(items=items, total=total)
