"""Queries of the DEPENDENT task: find the upstream run an item resolves to (the rule is in
core/dependent.py), name a workflow reference, and read an attempt's start time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.dependent import Resolved
from core.states import TASK_SUCCESSFUL, TaskState, WorkflowState, values

_SUCCESSFUL_TASK = values(TASK_SUCCESSFUL)

# the instance's base time: its schedule time, else (an unscheduled run) its start time
_BASE = "COALESCE(wi.schedule_time, wi.start_time)"

_WORKFLOW_RUN = text(
    "SELECT wi.id, wi.workflow_id, wi.schedule_time, wi.start_time, wi.state, wi.end_time"
    " FROM workflow_instance wi"
    f" WHERE wi.workflow_id = :wid AND wi.state = :success"
    f" AND {_BASE} >= :start AND {_BASE} < :end"
    f" ORDER BY {_BASE} DESC, wi.id DESC LIMIT 1"
)

# with a task: the latest attempt of that task in the instance must have succeeded, whatever
# the instance itself is doing (a rerun's new attempt of the task hides the old success);
# FANOUT sub-executions (parent_id set) are not attempts of a DAG task
_TASK_RUN = text(
    "SELECT wi.id, wi.workflow_id, wi.schedule_time, wi.start_time, wi.state, wi.end_time,"
    " ti.id, ti.state"
    " FROM workflow_instance wi"
    " JOIN LATERAL (SELECT t.id, t.state FROM task_instance t"
    "  WHERE t.workflow_instance_id = wi.id AND t.name = :task"
    "  AND t.parent_id IS NULL"
    "  ORDER BY t.attempt DESC LIMIT 1) ti ON true"
    f" WHERE wi.workflow_id = :wid AND {_BASE} >= :start AND {_BASE} < :end"
    " AND ti.state = ANY(:ok)"
    f" ORDER BY {_BASE} DESC, wi.id DESC LIMIT 1"
)


@dataclass(frozen=True)
class WorkflowRef:
    id: int
    name: str


def find_workflow(s: Session, ref: str | int) -> WorkflowRef | None:
    """The workflow an item names: an int is an id (deleted ones too: their runs still count),
    a string the name of a live workflow."""
    if isinstance(ref, int):
        row = s.execute(
            text("SELECT id, name FROM workflow_definition WHERE id = :id"), {"id": ref}
        ).first()
    else:
        row = s.execute(
            text("SELECT id, name FROM workflow_definition WHERE name = :n AND NOT deleted"),
            {"n": ref},
        ).first()
    return WorkflowRef(int(row[0]), str(row[1])) if row is not None else None


def find_run(
    s: Session, workflow_id: int, task: str | None, start: datetime, end: datetime
) -> Resolved | None:
    """The run of ``workflow_id`` (and ``task``) that counts for the window [start, end), or
    None: the one with the latest base time among the successful ones."""
    params: dict[str, object] = {"wid": workflow_id, "start": start, "end": end}
    if task is None:
        params["success"] = WorkflowState.SUCCESS.value
        row = s.execute(_WORKFLOW_RUN, params).first()
        if row is None:
            return None
        return Resolved(int(row[0]), int(row[1]), row[2], row[3], str(row[4]), row[5])
    params.update(task=task, ok=_SUCCESSFUL_TASK)
    row = s.execute(_TASK_RUN, params).first()
    if row is None:
        return None
    return Resolved(
        int(row[0]), int(row[1]), row[2], row[3], str(row[4]), row[5], int(row[6]), str(row[7])
    )


def attempt_start_time(s: Session, task_instance_id: int) -> datetime | None:
    """When the attempt started (the DEPENDENT timeout counts from it, across failovers)."""
    return s.execute(
        text("SELECT start_time FROM task_instance WHERE id = :id"), {"id": task_instance_id}
    ).scalar_one_or_none()


def note_waiting(s: Session, task_instance_id: int, reason: str) -> bool:
    """Show what a RUNNING DEPENDENT attempt waits for in its reason; True when it changed."""
    res = s.execute(
        text(
            "UPDATE task_instance SET reason = :r WHERE id = :id AND state = :running"
            " AND reason IS DISTINCT FROM :r"
        ),
        {"r": reason, "id": task_instance_id, "running": TaskState.RUNNING.value},
    )
    return res.rowcount == 1  # type: ignore[attr-defined]
