"""/task-instances: one attempt, its log (a window of lines, or the whole file, read only from
inside the configured log directory), and the kill and force-success requests."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, MAX_ID, ActionAccepted, DbId, LogWindow, TaskInstanceOut
from common import signals
from common.db import control, runs
from common.db.models import TaskInstance
from common.errors import CoordinationUnavailable, Forbidden, NotFound
from common.states import TASK_TERMINAL

log = logging.getLogger(__name__)

router = APIRouter(prefix="/task-instances", tags=["task instances"], responses=ERROR_RESPONSES)

TERMINAL = {s.value for s in TASK_TERMINAL}


def log_file(log_root: Path, log_path: str | None, task_instance_id: int) -> Path | None:
    """The attempt's log file, resolved (symlinks followed); refuses anything outside
    ``log_root``. None when the attempt has no log yet."""
    if not log_path:
        return None
    root = log_root.resolve()
    path = (root / log_path).resolve()
    if path == root or not path.is_relative_to(root):
        log.warning(
            "api: task instance %d: refusing log path %r outside %s",
            task_instance_id,
            log_path,
            root,
        )
        raise Forbidden(
            f"task instance {task_instance_id}: its log path is outside the log directory",
            {"task_instance_id": task_instance_id},
        )
    return path


def read_window(path: Path, skip: int, limit: int, final: bool) -> tuple[list[str], bool]:
    """Lines ``skip`` .. ``skip+limit`` of the file and whether the end of the file was reached.
    Unless ``final``, a last line without its newline is still being written and is left out."""
    lines: list[str] = []
    with path.open("rb") as fh:
        for i, raw in enumerate(fh):
            if i < skip:
                continue
            if len(lines) >= limit:
                return lines, False
            if not final and not raw.endswith(b"\n"):
                return lines, False
            lines.append(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
    return lines, True


def _load(ctx: ApiContext, task_instance_id: int) -> TaskInstance:
    with ctx.session_factory.begin() as s:
        return runs.get_task_instance(s, task_instance_id)


@router.get("/{task_instance_id}", response_model=TaskInstanceOut)
def get_task_instance(
    task_instance_id: DbId, ctx: ApiContext = Depends(get_ctx)
) -> TaskInstanceOut:
    """One attempt in full (the resolved environment is never shown)."""
    return TaskInstanceOut.from_row(_load(ctx, task_instance_id))


@router.get("/{task_instance_id}/log", response_model=LogWindow)
def get_log(
    task_instance_id: DbId,
    skip: Annotated[int, Query(ge=0, le=MAX_ID, description="lines already read")] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ctx: ApiContext = Depends(get_ctx),
) -> LogWindow:
    """Up to ``limit`` lines after the first ``skip``; poll again with ``skip=next`` until
    ``complete`` (the attempt is finished and every line was returned)."""
    row = _load(ctx, task_instance_id)  # the state is read before the file: no line is missed
    final = row.state in TERMINAL
    path = log_file(ctx.settings.log_path, row.log_path, task_instance_id)
    if path is None or not path.is_file():
        return LogWindow(lines=[], next=skip, complete=final, available=False)
    lines, at_end = read_window(path, skip, limit, final)
    return LogWindow(lines=lines, next=skip + len(lines), complete=final and at_end)


@router.get("/{task_instance_id}/log/download", response_class=FileResponse)
def download_log(task_instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> FileResponse:
    """The whole log file as text/plain."""
    row = _load(ctx, task_instance_id)
    path = log_file(ctx.settings.log_path, row.log_path, task_instance_id)
    if path is None or not path.is_file():
        raise NotFound(
            f"task instance {task_instance_id} has no log file here",
            {"task_instance_id": task_instance_id},
        )
    return FileResponse(
        path,
        media_type="text/plain; charset=utf-8",
        filename=f"task-{row.id}-{row.name}-attempt-{row.attempt}.log",
    )


def _accepted(done: control.Accepted) -> ActionAccepted:
    return ActionAccepted(
        instance_id=done.instance_id,
        task_instance_id=done.task_instance_id,
        state=done.state,
        action=done.action,
    )


@router.post("/{task_instance_id}/kill", response_model=ActionAccepted, status_code=202)
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


@router.post("/{task_instance_id}/force-success", response_model=ActionAccepted, status_code=202)
def force_success(task_instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ActionAccepted:
    """Mark a failed or killed attempt (the task's latest) FORCED_SUCCESS."""
    with ctx.session_factory.begin() as s:
        done = control.force_success(s, task_instance_id)
    log.info("api: task instance %d: %s", task_instance_id, done.action)
    return _accepted(done)
