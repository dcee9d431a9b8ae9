"""User requests on a workflow instance or a task attempt (stop, pause, resume, rerun, recover
failed, kill, force success), checked against the transition tables and persisted as a desired
state or a command that the owning master drives to its end; the command still waiting for a
master (at most one per instance), and the trace of one a master could not carry out. Never
commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, text
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from core.states import (
    WORKFLOW_TERMINAL,
    CommandType,
    TaskState,
    WorkflowState,
    can_transition_task,
    can_transition_workflow,
)
from db import children as q_children
from db import instances as q_instances
from db.models import Command, TaskInstance, WorkflowInstance
from db.notify import notify_masters, notify_owner

W = WorkflowState
T = TaskState
C = CommandType

# what the user asked for, by command type (the request names of /instances/{id}/...)
ACTIONS = {
    C.START_PROCESS.value: "start",
    C.SCHEDULER.value: "scheduled start",
    C.COMPLEMENT_DATA.value: "backfill",
    C.START_CURRENT_TASK_PROCESS.value: "start",
    C.RECOVER_SUSPENDED_PROCESS.value: "resume",
    C.REPEAT_RUNNING.value: "rerun",
    C.START_FAILURE_TASK_PROCESS.value: "recover-failed",
}
DROPPED_ALERT = "COMMAND_NOT_CARRIED_OUT"


@dataclass(frozen=True)
class PendingCommand:
    """A command row of an instance that no master has taken yet."""

    id: int
    type: str
    action: str
    created_at: datetime


def pending_commands(s: Session, instance_ids: list[int]) -> dict[int, PendingCommand]:
    """The oldest waiting command of each instance that has one."""
    if not instance_ids:
        return {}
    rows = s.execute(
        text(
            "SELECT DISTINCT ON (instance_id) instance_id, id, type, created_at FROM command"
            " WHERE instance_id = ANY(:ids) ORDER BY instance_id, id"
        ),
        {"ids": list(instance_ids)},
    ).all()
    return {
        int(r[0]): PendingCommand(int(r[1]), str(r[2]), ACTIONS.get(str(r[2]), str(r[2])), r[3])
        for r in rows
    }


def state_of(s: Session, instance_id: int) -> str | None:
    """The instance's state, None if it does not exist."""
    row = s.execute(
        text("SELECT state FROM workflow_instance WHERE id = :i"), {"i": instance_id}
    ).first()
    return None if row is None else str(row[0])


def note_not_carried_out(s: Session, command_id: int, kind: str, instance_id: int, why: str) -> str:
    """Leave a trace the user sees of a command a master could not carry out: the instance's
    ``reason`` and an alert row (``COMMAND_NOT_CARRIED_OUT``). Returns the reason."""
    action = ACTIONS.get(kind, kind)
    reason = f"{action} request (command {command_id}) not carried out: {why}"
    s.execute(
        text("UPDATE workflow_instance SET reason = :r WHERE id = :i"),
        {"r": reason, "i": instance_id},
    )
    content = {"command_id": command_id, "type": kind, "action": action, "reason": why}
    q_instances.add_alert(
        s, DROPPED_ALERT, f"instance {instance_id}: {reason}", content, instance_id
    )
    return reason


@dataclass(frozen=True)
class Accepted:
    """What a request did: the state it left the instance (or attempt) in, and how."""

    instance_id: int
    state: str
    action: str
    task_instance_id: int | None = None
    # a running attempt whose worker must be asked to kill it (the caller does it via ZooKeeper)
    kill_worker: str | None = None
    lease_token: int | None = None


def _lock_instance(s: Session, instance_id: int) -> WorkflowInstance:
    row = s.get(WorkflowInstance, instance_id, with_for_update=True)
    if row is None:
        raise NotFound(f"workflow instance {instance_id} not found", {"instance_id": instance_id})
    return row


def _refuse(row: WorkflowInstance, what: str, why: str) -> Conflict:
    return Conflict(
        f"cannot {what} instance {row.id}: it is {row.state}; {why}",
        {"instance_id": row.id, "state": row.state},
    )


def _set_state(row: WorkflowInstance, state: WorkflowState, reason: str) -> None:
    row.state = state.value
    row.reason = reason
    if state in WORKFLOW_TERMINAL:
        row.end_time = func.now()  # type: ignore[assignment]


def stop(s: Session, instance_id: int) -> Accepted:
    """An instance not yet running stops at once; a running one is asked to (READY_STOP): its
    master cancels queued attempts, kills running ones and records STOP by a deadline."""
    row = _lock_instance(s, instance_id)
    state = W(row.state)
    if state == W.READY_STOP:
        return Accepted(row.id, row.state, "already stopping")
    if state in (W.SUBMITTED, W.SERIAL_WAIT, W.PAUSE):
        _set_state(row, W.STOP, f"stopped while {state.value}")
        s.execute(text("DELETE FROM command WHERE instance_id = :i"), {"i": row.id})
        s.flush()
        # no master drives it: end its parent SUB_PROCESS attempt, stop its paused children
        q_children.settle_parent(s, row.id, W.STOP)
        for child in q_children.live_children(s, row.id):
            stop(s, child)
        return Accepted(row.id, W.STOP.value, "stopped")
    if not can_transition_workflow(state, W.READY_STOP):
        raise _refuse(row, "stop", "it has already finished")
    _set_state(row, W.READY_STOP, "stop requested")
    notify_owner(s, row.id)
    return Accepted(row.id, W.READY_STOP.value, "stopping")


def pause(s: Session, instance_id: int) -> Accepted:
    """Ask a running instance to pause: nothing new starts, running tasks finish, queued ones
    are held; it then rests in PAUSE until resumed."""
    row = _lock_instance(s, instance_id)
    state = W(row.state)
    if state in (W.READY_PAUSE, W.PAUSE):
        return Accepted(row.id, row.state, "already pausing")
    if not can_transition_workflow(state, W.READY_PAUSE):
        raise _refuse(row, "pause", "only a RUNNING instance can be paused")
    _set_state(row, W.READY_PAUSE, "pause requested")
    notify_owner(s, row.id)
    return Accepted(row.id, W.READY_PAUSE.value, "pausing")


def _command(
    s: Session, row: WorkflowInstance, kind: CommandType, what: str, allowed: set[W], why: str
) -> Accepted:
    if W(row.state) not in allowed:
        raise _refuse(row, what, why)
    pending = pending_commands(s, [row.id]).get(row.id)
    if pending is not None:
        raise Conflict(
            f"cannot {what} instance {row.id}: its {pending.action} request (command"
            f" {pending.id}) is still waiting for a master; try again once it has been taken",
            {"instance_id": row.id, "state": row.state, "pending_command": pending.action},
        )
    s.add(
        Command(
            type=kind.value,
            workflow_id=row.workflow_id,
            version=row.version,
            instance_id=row.id,
            priority=row.priority,
            params={},
        )
    )
    s.flush()
    notify_masters(s)
    return Accepted(row.id, row.state, f"{what} requested")


def resume(s: Session, instance_id: int) -> Accepted:
    row = _lock_instance(s, instance_id)
    return _command(
        s,
        row,
        CommandType.RECOVER_SUSPENDED_PROCESS,
        "resume",
        {W.PAUSE},
        "only a PAUSE instance can be resumed",
    )


def rerun(s: Session, instance_id: int) -> Accepted:
    row = _lock_instance(s, instance_id)
    return _command(
        s,
        row,
        CommandType.REPEAT_RUNNING,
        "rerun",
        {W.SUCCESS, W.FAILURE, W.STOP},
        "only a finished instance can be run again",
    )


def recover_failed(s: Session, instance_id: int) -> Accepted:
    row = _lock_instance(s, instance_id)
    return _command(
        s,
        row,
        CommandType.START_FAILURE_TASK_PROCESS,
        "recover",
        {W.FAILURE, W.STOP},
        "only a FAILURE or STOP instance can be recovered",
    )


# --- one attempt --------------------------------------------------------------------------------


def _lock_attempt(s: Session, task_instance_id: int) -> TaskInstance:
    row = s.get(TaskInstance, task_instance_id, with_for_update=True)
    if row is None:
        raise NotFound(
            f"task instance {task_instance_id} not found", {"task_instance_id": task_instance_id}
        )
    return row


def kill_task(s: Session, task_instance_id: int, lease_alive: bool | None) -> Accepted:
    """A queued attempt is KILLed at once; a running one is killed by its worker (the caller
    signals it after commit), or here when its lease is gone (``lease_alive`` False)."""
    t = _lock_attempt(s, task_instance_id)
    state = T(t.state)
    if state in (T.SUBMITTED, T.DISPATCHED, T.DELAY_EXECUTION):
        t.state, t.reason = T.KILL.value, "killed by request before it ran"
        t.end_time = func.now()  # type: ignore[assignment]
        notify_owner(s, t.workflow_instance_id, t.id)
        return Accepted(t.workflow_instance_id, T.KILL.value, "killed", t.id)
    if state != T.RUNNING:
        raise Conflict(
            f"cannot kill task instance {t.id}: it is {t.state}, not running",
            {"task_instance_id": t.id, "state": t.state},
        )
    if lease_alive is False or not t.worker_id:
        t.state, t.reason = T.KILL.value, "killed by request; its worker was gone"
        if not t.worker_id:
            t.reason = "killed by request"
        t.end_time = func.now()  # type: ignore[assignment]
        notify_owner(s, t.workflow_instance_id, t.id)
        child = q_children.child_of(s, t.id) if not t.worker_id else None
        if child is not None and W(child.state) not in WORKFLOW_TERMINAL:
            s.flush()
            stop(s, child.id)  # a SUB_PROCESS attempt's child stops with it
        return Accepted(t.workflow_instance_id, T.KILL.value, "killed", t.id)
    return Accepted(
        t.workflow_instance_id,
        t.state,
        "kill requested",
        t.id,
        kill_worker=t.worker_id,
        lease_token=t.lease_token,
    )


def force_success(s: Session, task_instance_id: int) -> Accepted:
    """Mark the latest, failed or killed attempt of a task FORCED_SUCCESS; its downstream tasks
    then run (in a running instance), or after recover-failed (in a finished one)."""
    t = _lock_attempt(s, task_instance_id)
    if not can_transition_task(T(t.state), T.FORCED_SUCCESS):
        raise Conflict(
            f"cannot force success of task instance {t.id}: it is {t.state}"
            " (only FAILURE or KILL can be forced)",
            {"task_instance_id": t.id, "state": t.state},
        )
    later = s.execute(
        text(
            "SELECT max(attempt) FROM task_instance WHERE workflow_instance_id = :w AND name = :n"
        ),
        {"w": t.workflow_instance_id, "n": t.name},
    ).scalar_one()
    if later is not None and int(later) > t.attempt:
        raise Conflict(
            f"cannot force success of task instance {t.id}: attempt {later} of '{t.name}'"
            " came after it",
            {"task_instance_id": t.id},
        )
    t.state, t.reason = T.FORCED_SUCCESS.value, "success forced by request"
    notify_owner(s, t.workflow_instance_id, t.id)
    return Accepted(t.workflow_instance_id, t.state, "forced success", t.id)
