"""Queries on runs: submitting a run (SUBMITTED instance + command + the masters' wake-up in
the caller's transaction), and reading workflow instances and task attempts. Never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from core.errors import NotFound, ValidationError
from core.states import CommandType, Priority, WorkflowState
from db import releases
from db.models import (
    Command,
    TaskInstance,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowVersion,
)
from db.notify import notify_masters


def _check_start_nodes(spec: dict[str, Any], start_nodes: Iterable[str]) -> None:
    names = {str(t.get("name")) for t in spec.get("tasks", []) if isinstance(t, dict)}
    unknown = sorted(set(start_nodes) - names)
    if unknown:
        raise ValidationError(
            f"start_nodes names unknown task(s): {', '.join(unknown)}",
            [{"code": "unknown_task", "message": "not in the workflow", "tasks": unknown}],
        )


def submit_run(
    s: Session,
    workflow_id: int,
    *,
    params: dict[str, str] | None = None,
    priority: Priority | None = None,
    run_options: dict[str, Any] | None = None,
    command_type: CommandType = CommandType.START_PROCESS,
) -> WorkflowInstance:
    """Insert a SUBMITTED instance of the latest version and its command, then wake the masters.

    The definition row is locked FOR SHARE so that a concurrent delete waits for us (and then
    sees this instance). ``priority`` defaults to the spec's priority.
    """
    definition = s.scalar(
        select(WorkflowDefinition)
        .where(WorkflowDefinition.id == workflow_id, WorkflowDefinition.deleted.is_(False))
        .with_for_update(read=True)
    )
    if definition is None:
        raise NotFound(f"workflow {workflow_id} not found", {"workflow_id": workflow_id})
    releases.check_online(definition)
    version = s.scalar(
        select(WorkflowVersion).where(
            WorkflowVersion.workflow_id == workflow_id,
            WorkflowVersion.version == definition.latest_version,
        )
    )
    if version is None:  # impossible with the schema's invariants; fail loudly
        raise NotFound(f"workflow {workflow_id} has no version {definition.latest_version}")
    options = dict(run_options or {})
    if options.get("start_nodes"):
        _check_start_nodes(version.spec, options["start_nodes"])
    pri = priority if priority is not None else Priority.parse(version.spec.get("priority", 2))
    start_params = dict(params or {})
    instance = WorkflowInstance(
        workflow_id=workflow_id,
        version=version.version,
        state=WorkflowState.SUBMITTED.value,
        priority=int(pri),
        params=start_params,
        run_options=options,
        command_type=command_type.value,
        run_count=1,
    )
    s.add(instance)
    s.flush()
    s.add(
        Command(
            type=command_type.value,
            workflow_id=workflow_id,
            version=version.version,
            instance_id=instance.id,
            priority=int(pri),
            params=start_params,
        )
    )
    s.flush()
    notify_masters(s)
    s.refresh(instance)
    return instance


def get_instance(s: Session, instance_id: int) -> WorkflowInstance:
    row = s.get(WorkflowInstance, instance_id)
    if row is None:
        raise NotFound(f"workflow instance {instance_id} not found", {"instance_id": instance_id})
    return row


def list_instances(
    s: Session,
    *,
    workflow_id: int | None = None,
    states: Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
    projects: list[str] | None = None,
) -> tuple[list[WorkflowInstance], int]:
    """Instances, newest first, with the total count matching the filters (``projects``: of
    those projects' workflows only; None = all)."""
    cond: list[ColumnElement[bool]] = []
    if projects is not None:
        wf = select(WorkflowDefinition.id).where(WorkflowDefinition.project.in_(projects))
        cond.append(WorkflowInstance.workflow_id.in_(wf))
    if workflow_id is not None:
        cond.append(WorkflowInstance.workflow_id == workflow_id)
    if states:
        cond.append(WorkflowInstance.state.in_(list(states)))
    total = s.scalar(select(func.count()).select_from(WorkflowInstance).where(*cond)) or 0
    rows = s.scalars(
        select(WorkflowInstance)
        .where(*cond)
        .order_by(WorkflowInstance.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def workflow_names(s: Session, workflow_ids: Iterable[int]) -> dict[int, str]:
    """Names of the given workflows, deleted ones included (instances outlive a delete)."""
    ids = sorted(set(workflow_ids))
    if not ids:
        return {}
    rows = s.execute(
        select(WorkflowDefinition.id, WorkflowDefinition.name).where(WorkflowDefinition.id.in_(ids))
    ).all()
    return {int(r[0]): str(r[1]) for r in rows}


def instance_tasks(
    s: Session, instance_id: int, limit: int | None = None, offset: int = 0
) -> tuple[list[TaskInstance], int]:
    """Every attempt of every task of the instance, in creation order, with the total."""
    cond = TaskInstance.workflow_instance_id == instance_id
    q = select(TaskInstance).where(cond).order_by(TaskInstance.id).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    rows = list(s.scalars(q).all())
    if limit is None and offset == 0:
        return rows, len(rows)
    total = s.scalar(select(func.count()).select_from(TaskInstance).where(cond)) or 0
    return rows, int(total)


def get_task_instance(s: Session, task_instance_id: int) -> TaskInstance:
    row = s.get(TaskInstance, task_instance_id)
    if row is None:
        raise NotFound(
            f"task instance {task_instance_id} not found", {"task_instance_id": task_instance_id}
        )
    return row
