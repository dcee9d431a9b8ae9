"""SUB_PROCESS: a master-run task that starts a child workflow instance (owned at once by the same
master, linked to the attempt, one per attempt) and ends with the child's result. Stop and pause
pass down to the child; a resumed attempt takes over its paused predecessor's child."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from core.states import WORKFLOW_TERMINAL, TaskState, WorkflowState
from db import children as q_children
from db import control
from db import instances as q_instances
from db.attempts import AttemptRow
from master.logical import LogicalContext, Verdict

log = logging.getLogger(__name__)

TYPE = "SUB_PROCESS"
# A chain of children deeper than this is refused (a workflow that starts itself, directly or not).
MAX_DEPTH = 64
TERMINAL = tuple(sorted(s.value for s in WORKFLOW_TERMINAL))
W = WorkflowState


def verdict_for(child_id: int, child_state: str, parent_pausing: bool) -> Verdict:
    """Pure: the attempt's verdict from its child's state (None while the child runs, or rests
    paused while the parent is not pausing)."""
    why = f"child instance {child_id} {child_state}"
    if child_state == W.SUCCESS:
        return Verdict(TaskState.SUCCESS, reason=why)
    if child_state == W.FAILURE:
        return Verdict(TaskState.FAILURE, reason=why)
    if child_state == W.STOP:
        return Verdict(TaskState.KILL, reason=why)
    if child_state == W.PAUSE and parent_pausing:
        return Verdict(TaskState.PAUSE, reason=why)
    return Verdict()


def child_params(params: dict[str, str]) -> dict[str, str]:
    """Pure: the parent task's resolved parameters as the child's start-up parameters (the
    built-ins ``system.*`` are left out: the child derives its own from the same schedule time)."""
    return {k: v for k, v in params.items() if not k.startswith("system.")}


def child_options(parent_options: dict[str, object]) -> dict[str, object]:
    """Pure: the run options a child inherits from its parent's run."""
    keep = ("failure_strategy", "worker_group")
    return {k: parent_options[k] for k in keep if parent_options.get(k) is not None}


class SubProcessDriver:
    def start(self, ctx: LogicalContext, s: Session, attempt_id: int, now: datetime) -> Verdict:
        inst = ctx.instance
        since = int(inst.run_options.get("since_task_id") or 0)
        prev = q_children.previous_child(s, inst.id, ctx.task.name, attempt_id)
        if prev is not None:
            prev_id, prev_state, child = prev
            resumable = child is not None and child.state != W.STOP
            if (
                prev_state == TaskState.PAUSE
                and prev_id > since
                and child is not None
                and resumable
            ):
                return self._resume(ctx, s, attempt_id, child)
        wid = ctx.task.model_dump().get("workflow_id")
        if not isinstance(wid, int):
            return Verdict(TaskState.FAILURE, reason="SUB_PROCESS: workflow_id is not an integer")
        depth = q_children.nesting_depth(s, inst.id)
        if depth >= MAX_DEPTH:
            return Verdict(
                TaskState.FAILURE,
                reason=f"SUB_PROCESS: children nest deeper than {MAX_DEPTH} (a workflow that"
                " starts itself?)",
            )
        child_id = q_children.create_child(
            s,
            workflow_id=wid,
            parent=inst,
            task_instance_id=attempt_id,
            params=child_params(ctx.params),
            run_options=child_options(inst.run_options),
            owner=ctx.master_id,
            epoch=ctx.epoch,
        )
        if child_id is None:
            return Verdict(TaskState.FAILURE, reason=f"SUB_PROCESS: workflow {wid} does not exist")
        ctx.new_instances.append(child_id)
        log.info(
            "master %s@%d: instance %d task %s (%d) started child instance %d of workflow %d",
            ctx.master_id,
            ctx.epoch,
            inst.id,
            ctx.task.name,
            attempt_id,
            child_id,
            wid,
        )
        return Verdict()

    def _resume(
        self, ctx: LogicalContext, s: Session, attempt_id: int, child: q_children.ChildRow
    ) -> Verdict:
        """Re-link the paused attempt's child to this attempt and resume it (owned by us)."""
        q_children.relink_child(s, child.id, attempt_id)
        if child.state in TERMINAL:
            return verdict_for(child.id, child.state, False)
        if child.state == W.PAUSE and q_instances.restart(
            s, child.id, [W.PAUSE.value], ctx.master_id, ctx.epoch, new_run=False
        ):
            ctx.new_instances.append(child.id)
        log.info(
            "master %s@%d: instance %d task %s (%d) resumes child instance %d",
            ctx.master_id,
            ctx.epoch,
            ctx.instance.id,
            ctx.task.name,
            attempt_id,
            child.id,
        )
        return Verdict()

    def poll(self, ctx: LogicalContext, s: Session, attempt: AttemptRow, now: datetime) -> Verdict:
        child = q_children.child_of(s, attempt.id)
        if child is None:
            return Verdict(TaskState.FAILURE, reason="SUB_PROCESS: its child instance is missing")
        pausing = ctx.instance.state == W.READY_PAUSE.value
        return verdict_for(child.id, child.state, pausing)

    def cancel(
        self,
        ctx: LogicalContext,
        s: Session,
        attempt: AttemptRow,
        target: TaskState,
        now: datetime,
    ) -> Verdict:
        child = q_children.child_of(s, attempt.id)
        if child is None:
            return Verdict(target, reason="SUB_PROCESS: no child to cancel")
        if child.state in TERMINAL:
            return verdict_for(child.id, child.state, True)
        if target == TaskState.KILL:
            if child.state != W.READY_STOP.value:
                control.stop(s, child.id)  # a paused child stops at once (and settles us)
        elif child.state == W.PAUSE.value:
            return Verdict(TaskState.PAUSE, reason=f"child instance {child.id} PAUSE")
        elif child.state == W.RUNNING.value:
            control.pause(s, child.id)
        log.info(
            "master %s@%d: instance %d task %s (%d): %s passed to child instance %d",
            ctx.master_id,
            ctx.epoch,
            ctx.instance.id,
            attempt.name,
            attempt.id,
            "stop" if target == TaskState.KILL else "pause",
            child.id,
        )
        return Verdict()


DRIVER = SubProcessDriver()
