"""/task-instances: one attempt, its log (a window of lines, a follow stream or a download: live
from the worker's log server, else from PostgreSQL, see ``api.logs``), and the kill and
force-success requests."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response, StreamingResponse

from api import logs
from api.auth_scope import authorize, task_instance_target
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, MAX_ID, DbId
from api.schemas_fanout import SubExecutionPage, TaskInstanceWithSubs, sub_executions, with_subs
from api.schemas_instances import ActionAccepted, LogWindow, TaskInstanceOut
from coord import signals
from core.errors import CoordinationUnavailable, NotFound
from core.states import TASK_TERMINAL
from db import control, runs
from db.models import TaskInstance

log = logging.getLogger(__name__)

router = APIRouter(prefix="/task-instances", tags=["task instances"], responses=ERROR_RESPONSES)

TERMINAL = {s.value for s in TASK_TERMINAL}


def _load(ctx: ApiContext, task_instance_id: int) -> TaskInstance:
    with ctx.session_factory.begin() as s:
        return runs.get_task_instance(s, task_instance_id)


@router.get(
    "/{task_instance_id}",
    response_model=TaskInstanceWithSubs,
    dependencies=[Depends(authorize("read", task_instance_target))],
)
def get_task_instance(
    task_instance_id: DbId, ctx: ApiContext = Depends(get_ctx)
) -> TaskInstanceOut:
    """One attempt in full (the resolved environment is never shown); a FANOUT attempt with
    its sub-executions."""
    with ctx.session_factory.begin() as s:
        return with_subs(s, runs.get_task_instance(s, task_instance_id))


@router.get(
    "/{task_instance_id}/sub-executions",
    response_model=SubExecutionPage,
    dependencies=[Depends(authorize("read", task_instance_target))],
)
def get_sub_executions(
    task_instance_id: DbId, ctx: ApiContext = Depends(get_ctx)
) -> SubExecutionPage:
    """The sub-executions of a FANOUT attempt: host, params, state, times, exit code, output."""
    with ctx.session_factory.begin() as s:
        runs.get_task_instance(s, task_instance_id)  # 404 for an unknown id
        items = sub_executions(s, task_instance_id)
    return SubExecutionPage(parent_id=task_instance_id, items=items, total=len(items))


@router.get(
    "/{task_instance_id}/log",
    response_model=LogWindow,
    responses={200: {"content": {"text/plain": {}}, "description": "with follow=true: a stream"}},
    dependencies=[Depends(authorize("read", task_instance_target))],
)
def get_log(
    task_instance_id: DbId,
    skip: Annotated[int, Query(ge=0, le=MAX_ID, description="lines already read")] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    follow: Annotated[bool, Query(description="stream lines until the attempt is over")] = False,
    ctx: ApiContext = Depends(get_ctx),
) -> LogWindow | StreamingResponse:
    """Up to ``limit`` lines after the first ``skip``; poll again with ``skip=next`` until
    ``complete`` (the attempt is finished and every line was returned). With ``follow=true``,
    a text/plain stream of the lines from ``skip`` on that ends when the attempt is over."""
    row = _load(ctx, task_instance_id)  # the state is read before the log: no line is missed
    if follow:
        stream = logs.follow(ctx, task_instance_id, skip, lambda i: _load(ctx, i))
        return StreamingResponse(stream, media_type="text/plain; charset=utf-8")
    return logs.window(ctx, row, skip, limit)


@router.get(
    "/{task_instance_id}/log/download",
    response_class=StreamingResponse,
    dependencies=[Depends(authorize("read", task_instance_target))],
)
def download_log(task_instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Response:
    """The whole log as text/plain."""
    row = _load(ctx, task_instance_id)
    body = logs.download(ctx, row)
    if body is None:
        raise NotFound(
            f"task instance {task_instance_id} has no log", {"task_instance_id": task_instance_id}
        )
    name = f"task-{row.id}-{row.name}-attempt-{row.attempt}.log"
    if isinstance(body, Path):
        return FileResponse(body, media_type="text/plain; charset=utf-8", filename=name)
    return StreamingResponse(
        body,
        media_type="text/plain; charset=utf-8",
        # a task name may be in any script: RFC 5987's UTF-8 form, as FileResponse does
        headers={"Content-Disposition": f"attachment; filename*=utf-8''{quote(name)}"},
    )


def _accepted(done: control.Accepted) -> ActionAccepted:
    return ActionAccepted(
        instance_id=done.instance_id,
        task_instance_id=done.task_instance_id,
        state=done.state,
        action=done.action,
    )


@router.post(
    "/{task_instance_id}/kill",
    response_model=ActionAccepted,
    status_code=202,
    dependencies=[Depends(authorize("run", task_instance_target))],
)
def kill(task_instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ActionAccepted:
    """Kill an attempt: a queued one at once; a running one by its worker (SIGTERM, then SIGKILL
    after the worker's kill grace), which records KILL; if its worker is gone, at once."""
    if not ctx.zk_connected(wait_s=2.0):
        raise CoordinationUnavailable("ZooKeeper is unreachable; cannot reach the worker")
    lease = ctx.zk.client.exists(ctx.zk.paths.lease(task_instance_id)) is not None
    with ctx.session_factory.begin() as s:
        done = control.kill_task(s, task_instance_id, lease)
    if done.kill_worker:
        signals.request_kill(ctx.zk, done.kill_worker, task_instance_id, "api")
    log.info("api: task instance %d: %s", task_instance_id, done.action)
    return _accepted(done)


@router.post(
    "/{task_instance_id}/force-success",
    response_model=ActionAccepted,
    status_code=202,
    dependencies=[Depends(authorize("run", task_instance_target))],
)
def force_success(task_instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ActionAccepted:
    """Mark a failed or killed attempt (the task's latest) FORCED_SUCCESS."""
    with ctx.session_factory.begin() as s:
        done = control.force_success(s, task_instance_id)
    log.info("api: task instance %d: %s", task_instance_id, done.action)
    return _accepted(done)
