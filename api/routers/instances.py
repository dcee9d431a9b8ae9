"""/instances: list workflow instances with filters, read one with every task attempt, and the
control requests (stop, pause, resume, rerun, recover-failed)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from api import waiting
from api.auth import Principal
from api.auth_scope import authorize, instance_target, read_scope
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, MAX_ID, DbId, Offset
from api.schemas_instances import (
    ActionAccepted,
    InstanceDetail,
    InstancePage,
    InstanceSummary,
    PendingCommandOut,
    TaskInstanceOut,
    TaskInstancePage,
)
from core.errors import ValidationError
from core.states import WORKFLOW_TERMINAL, WorkflowState
from db import children as q_children
from db import control, runs
from db.models import TaskInstance, WorkflowInstance

log = logging.getLogger(__name__)

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
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> InstancePage:
    """Workflow instances of the caller's projects, newest first."""
    states = parse_states(state)
    with ctx.session_factory.begin() as s:
        rows, total = runs.list_instances(
            s,
            workflow_id=workflow_id,
            states=states,
            limit=limit,
            offset=offset,
            projects=read_scope(me),
        )
        names = runs.workflow_names(s, (i.workflow_id for i in rows))
        items = [InstanceSummary.from_row(i, names.get(i.workflow_id)) for i in rows]
    return InstancePage(items=items, total=total)


@router.get(
    "/{instance_id}",
    response_model=InstanceDetail,
    dependencies=[Depends(authorize("read", instance_target))],
)
def get_instance(instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> InstanceDetail:
    """One instance with every attempt of every task (id, name, type, state, attempt, host,
    times, exit code)."""
    with ctx.session_factory.begin() as s:
        instance = runs.get_instance(s, instance_id)
        tasks, _ = runs.instance_tasks(s, instance_id)
        names = runs.workflow_names(s, [instance.workflow_id])
        detail = InstanceDetail.from_rows(instance, names.get(instance.workflow_id), tasks)
        subs = [t.id for t in detail.tasks if t.type == "SUB_PROCESS"]
        children = q_children.children_of(s, subs) if subs else {}
        for t in detail.tasks:
            t.child_instance_id = children.get(t.id)
        pending = control.pending_commands(s, [instance_id]).get(instance_id)
        if pending is not None:
            detail.pending_command = PendingCommandOut(**vars(pending))
    explain_waiting(ctx, instance, tasks, detail)
    return detail


def explain_waiting(ctx: ApiContext, inst: WorkflowInstance, rows: list[TaskInstance],
                    detail: InstanceDetail) -> None:  # fmt: skip
    """``waiting_reason`` on every waiting task of a live instance (api/waiting.py)."""
    if inst.state in WORKFLOW_TERMINAL:
        return
    zk = ctx.zk if ctx.zk_connected() else None
    with ctx.session_factory() as s:
        waiting.explain(s, zk, inst, rows, detail, ctx.settings.master.queue_high_water)


@router.get(
    "/{instance_id}/tasks",
    response_model=TaskInstancePage,
    dependencies=[Depends(authorize("read", instance_target))],
)
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


# -- control --------------------------------------------------------------------------------------

_ACTIONS: dict[str, Callable[[Session, int], control.Accepted]] = {
    "stop": control.stop,
    "pause": control.pause,
    "resume": control.resume,
    "rerun": control.rerun,
    "recover-failed": control.recover_failed,
}


def _act(action: str, instance_id: int, ctx: ApiContext) -> ActionAccepted:
    with ctx.session_factory.begin() as s:
        done = _ACTIONS[action](s, instance_id)
    log.info("api: instance %d: %s (%s)", instance_id, done.action, done.state)
    return ActionAccepted(instance_id=done.instance_id, state=done.state, action=done.action)


@router.post(
    "/{instance_id}/stop",
    response_model=ActionAccepted,
    status_code=202,
    dependencies=[Depends(authorize("run", instance_target))],
)
def stop_instance(instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ActionAccepted:
    """Stop: queued tasks are cancelled, running ones killed; the instance reaches STOP even
    when a worker is gone (running tasks are forced to KILL after ``master.kill_grace_s``)."""
    return _act("stop", instance_id, ctx)


@router.post(
    "/{instance_id}/pause",
    response_model=ActionAccepted,
    status_code=202,
    dependencies=[Depends(authorize("run", instance_target))],
)
def pause_instance(instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ActionAccepted:
    """Pause: nothing new starts, running tasks finish, then the instance rests in PAUSE."""
    return _act("pause", instance_id, ctx)


@router.post(
    "/{instance_id}/resume",
    response_model=ActionAccepted,
    status_code=202,
    dependencies=[Depends(authorize("run", instance_target))],
)
def resume_instance(instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ActionAccepted:
    """Resume a PAUSE instance where it stopped."""
    return _act("resume", instance_id, ctx)


@router.post(
    "/{instance_id}/rerun",
    response_model=ActionAccepted,
    status_code=202,
    dependencies=[Depends(authorize("run", instance_target))],
)
def rerun_instance(instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ActionAccepted:
    """Run a finished instance again from the start (a new run; earlier attempts are kept)."""
    return _act("rerun", instance_id, ctx)


@router.post(
    "/{instance_id}/recover-failed",
    response_model=ActionAccepted,
    status_code=202,
    dependencies=[Depends(authorize("run", instance_target))],
)
def recover_instance(instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ActionAccepted:
    """Run a FAILURE or STOP instance again from its failed, killed and skipped tasks, keeping
    the tasks that succeeded."""
    return _act("recover-failed", instance_id, ctx)
