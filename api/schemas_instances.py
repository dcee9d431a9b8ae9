"""Response models of workflow instances and their task attempts (summaries, details, pages),
log windows and the answers to control requests, built from DB rows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api.schemas import Timestamp, priority_name
from api.waiting import NotStartedOut, WaitingReasonOut
from db.models import TaskInstance, WorkflowInstance


class TaskAttemptSummary(BaseModel):
    id: int
    name: str
    type: str
    state: str
    attempt: int
    host: str | None
    worker_group: str
    start_time: Timestamp | None
    end_time: Timestamp | None
    exit_code: int | None
    reason: str | None = None
    task_group: str | None = None
    # why a queued attempt is not running yet (e.g. no live worker in its group)
    waiting: str | None = None
    # every non-running, non-terminal task: a code and a sentence (core/waiting.py)
    waiting_reason: WaitingReasonOut | None = None
    # the child instance a SUB_PROCESS attempt started (GET /instances/{id} fills it in)
    child_instance_id: int | None = None
    # a FANOUT sub-execution: the FANOUT attempt it belongs to and its target host
    parent_id: int | None = None
    target: str | None = None

    @classmethod
    def from_row(cls, t: TaskInstance) -> TaskAttemptSummary:
        return cls(
            id=t.id,
            name=t.name,
            type=t.type,
            state=t.state,
            attempt=t.attempt,
            host=t.host,
            worker_group=t.worker_group,
            start_time=t.start_time,
            end_time=t.end_time,
            exit_code=t.exit_code,
            reason=t.reason,
            task_group=t.task_group,
            parent_id=t.parent_id,
            target=t.target,
        )


class InstanceSummary(BaseModel):
    id: int
    workflow_id: int
    workflow_name: str | None
    version: int
    state: str
    priority: str
    command_type: str
    params: dict[str, Any]
    run_options: dict[str, Any]
    schedule_id: int | None
    schedule_time: Timestamp | None
    submit_time: Timestamp
    start_time: Timestamp | None
    end_time: Timestamp | None
    owner: str | None
    owner_epoch: int | None
    run_count: int
    reason: str | None = None
    # a SUB_PROCESS child: the parent's attempt that started it
    parent_task_instance_id: int | None = None

    @classmethod
    def fields_of(cls, i: WorkflowInstance, name: str | None) -> dict[str, Any]:
        return {
            "id": i.id,
            "workflow_id": i.workflow_id,
            "workflow_name": name,
            "version": i.version,
            "state": i.state,
            "priority": priority_name(i.priority),
            "command_type": i.command_type,
            "params": i.params,
            "run_options": i.run_options,
            "schedule_id": i.schedule_id,
            "schedule_time": i.schedule_time,
            "submit_time": i.submit_time,
            "start_time": i.start_time,
            "end_time": i.end_time,
            "owner": i.owner,
            "owner_epoch": i.owner_epoch,
            "run_count": i.run_count,
            "reason": i.reason,
            "parent_task_instance_id": i.parent_task_instance_id,
        }

    @classmethod
    def from_row(cls, i: WorkflowInstance, name: str | None) -> InstanceSummary:
        return cls(**cls.fields_of(i, name))


class PendingCommandOut(BaseModel):
    """A request on the instance that no master has taken yet (a start, rerun, recover-failed
    or resume): until one does, the instance keeps its state and a second request is a 409."""

    id: int
    type: str
    action: str
    created_at: Timestamp


class InstanceDetail(InstanceSummary):
    tasks: list[TaskAttemptSummary]
    pending_command: PendingCommandOut | None = None
    # tasks of this run without an attempt yet, each with its waiting_reason
    not_started: list[NotStartedOut] = []

    @classmethod
    def from_rows(
        cls, i: WorkflowInstance, name: str | None, tasks: list[TaskInstance]
    ) -> InstanceDetail:
        return cls(**cls.fields_of(i, name), tasks=[TaskAttemptSummary.from_row(t) for t in tasks])


class InstancePage(BaseModel):
    items: list[InstanceSummary]
    total: int


class TaskInstanceOut(TaskAttemptSummary):
    workflow_instance_id: int
    priority: str
    worker_id: str | None
    pid: int | None
    lease_token: int | None
    log_path: str | None
    output: dict[str, Any]
    spec: dict[str, Any]
    submit_time: Timestamp
    dispatch_time: Timestamp | None

    @classmethod
    def from_row(cls, t: TaskInstance) -> TaskInstanceOut:
        # the resolved environment may hold secrets: never shown
        spec = {k: v for k, v in (t.spec or {}).items() if k != "env"}
        return cls(
            **TaskAttemptSummary.from_row(t).model_dump(),
            workflow_instance_id=t.workflow_instance_id,
            priority=priority_name(t.priority),
            worker_id=t.worker_id,
            pid=t.pid,
            lease_token=t.lease_token,
            log_path=t.log_path,
            output=t.output or {},
            spec=spec,
            submit_time=t.submit_time,
            dispatch_time=t.dispatch_time,
        )


class TaskInstancePage(BaseModel):
    items: list[TaskInstanceOut]
    total: int


class LogWindow(BaseModel):
    """``next`` is the ``skip`` of the following request; ``complete`` = no more lines will come."""

    lines: list[str]
    next: int
    complete: bool
    available: bool = True


class ActionAccepted(BaseModel):
    """A control request was taken: the state it left the instance (or attempt) in."""

    instance_id: int
    task_instance_id: int | None = None
    state: str
    action: str
