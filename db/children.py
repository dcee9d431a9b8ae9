"""SUB_PROCESS child instances: create one linked to its parent attempt (owned at once), find or
relink it, and, in the transaction that ends a child, settle the parent attempt and wake its owner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.states import WORKFLOW_TERMINAL, TaskState, WorkflowState, values
from db.notify import notify_owner

if TYPE_CHECKING:
    from db.instances import InstanceRow

W = WorkflowState
# The states the statements below bind by name (each call passes them all: **_S).
_S: dict[str, Any] = {
    "running": W.RUNNING.value,
    "ready_pause": W.READY_PAUSE.value,
    "task_running": TaskState.RUNNING.value,
    "terminal": values(WORKFLOW_TERMINAL),
}


# A child's end -> its parent attempt's state (a PAUSE only while the parent is pausing).
CHILD_TO_ATTEMPT: dict[WorkflowState, TaskState] = {
    W.SUCCESS: TaskState.SUCCESS,
    W.FAILURE: TaskState.FAILURE,
    W.STOP: TaskState.KILL,
    W.PAUSE: TaskState.PAUSE,
}


def settle_parent(s: Session, child_id: int, state: WorkflowState) -> bool:
    """In the transaction that ended a child instance: finish its parent SUB_PROCESS attempt
    (still RUNNING) with the child's result and wake the parent's master. A paused child pauses
    its attempt only while the parent instance is pausing; otherwise the attempt waits."""
    target = CHILD_TO_ATTEMPT.get(state)
    if target is None:
        return False
    row = s.execute(
        text(
            "UPDATE task_instance t SET state = :ts, end_time = now(), reason = :r"
            " FROM workflow_instance c, workflow_instance p"
            " WHERE c.id = :child AND t.id = c.parent_task_instance_id AND t.state = :task_running"
            " AND t.worker_id IS NULL AND p.id = t.workflow_instance_id"
            " AND (:paused = false OR p.state = :ready_pause)"
            " RETURNING t.workflow_instance_id, t.id"
        ),
        {
            "ts": target.value,
            "paused": target == TaskState.PAUSE,
            "child": child_id,
            "r": f"child instance {child_id} {state.value}",
            **_S,
        },
    ).first()
    if row is None:
        return False
    notify_owner(s, int(row[0]), int(row[1]))
    return True


@dataclass(frozen=True)
class ChildRow:
    id: int
    state: str
    owner: str | None
    owner_epoch: int | None


def child_of(s: Session, task_instance_id: int) -> ChildRow | None:
    """The child instance of a SUB_PROCESS attempt (at most one: a unique index)."""
    r = s.execute(
        text(
            "SELECT id, state, owner, owner_epoch FROM workflow_instance"
            " WHERE parent_task_instance_id = :t"
        ),
        {"t": task_instance_id},
    ).first()
    return ChildRow(int(r[0]), str(r[1]), r[2], r[3]) if r is not None else None


def children_of(s: Session, task_instance_ids: list[int]) -> dict[int, int]:
    """attempt id -> its child instance id, for those of ``task_instance_ids`` that have one."""
    if not task_instance_ids:
        return {}
    rows = s.execute(
        text(
            "SELECT parent_task_instance_id, id FROM workflow_instance"
            " WHERE parent_task_instance_id = ANY(:ids)"
        ),
        {"ids": task_instance_ids},
    ).all()
    return {int(p): int(c) for p, c in rows}


def live_children(s: Session, instance_id: int) -> list[int]:
    """Non-terminal child instances of any attempt of ``instance_id``."""
    rows = s.execute(
        text(
            "SELECT c.id FROM workflow_instance c JOIN task_instance t"
            " ON t.id = c.parent_task_instance_id WHERE t.workflow_instance_id = :i"
            " AND c.state <> ALL(:terminal) ORDER BY c.id"
        ),
        {"i": instance_id, **_S},
    ).scalars()
    return [int(r) for r in rows]


def previous_child(
    s: Session, instance_id: int, name: str, before_id: int
) -> tuple[int, str, ChildRow | None] | None:
    """The latest earlier attempt of task ``name`` (id, state) and its child, if any."""
    r = s.execute(
        text(
            "SELECT id, state FROM task_instance WHERE workflow_instance_id = :i AND name = :n"
            " AND id < :b ORDER BY attempt DESC LIMIT 1"
        ),
        {"i": instance_id, "n": name, "b": before_id},
    ).first()
    if r is None:
        return None
    return int(r[0]), str(r[1]), child_of(s, int(r[0]))


def relink_child(s: Session, child_id: int, task_instance_id: int) -> None:
    """Hand a paused attempt's child to the attempt that resumes it."""
    s.execute(
        text("UPDATE workflow_instance SET parent_task_instance_id = :t WHERE id = :c"),
        {"t": task_instance_id, "c": child_id},
    )


def nesting_depth(s: Session, instance_id: int) -> int:
    """How many SUB_PROCESS parents ``instance_id`` has above it (0 for a top-level run)."""
    return int(
        s.execute(
            text(
                "WITH RECURSIVE up(id, parent, depth) AS ("
                " SELECT id, parent_task_instance_id, 0 FROM workflow_instance WHERE id = :i"
                " UNION ALL SELECT w.id, w.parent_task_instance_id, up.depth + 1"
                " FROM up JOIN task_instance t ON t.id = up.parent"
                " JOIN workflow_instance w ON w.id = t.workflow_instance_id WHERE up.depth < 1000)"
                " SELECT max(depth) FROM up"
            ),
            {"i": instance_id},
        ).scalar_one()
    )


def create_child(
    s: Session,
    *,
    workflow_id: int,
    parent: InstanceRow,
    task_instance_id: int,
    params: dict[str, Any],
    run_options: dict[str, Any],
    owner: str,
    epoch: int,
) -> int | None:
    """Create a SUB_PROCESS child: RUNNING, owned by (owner, epoch) at once, of the workflow's
    latest version, with the parent's schedule time and priority, linked to the parent attempt.
    None when the workflow does not exist (or was deleted)."""
    row = s.execute(
        text(
            "INSERT INTO workflow_instance (workflow_id, version, state, priority, params,"
            " run_options, command_type, schedule_time, start_time, owner, owner_epoch,"
            " parent_task_instance_id) SELECT d.id, d.latest_version, :running, :p,"
            " CAST(:params AS jsonb), CAST(:ro AS jsonb), 'SUB_PROCESS', :st, now(), :o, :e, :t"
            " FROM workflow_definition d WHERE d.id = :w AND NOT d.deleted RETURNING id"
        ),
        {
            "w": workflow_id,
            "p": parent.priority,
            "params": json.dumps(params),
            "ro": json.dumps(run_options),
            "st": parent.schedule_time,
            "o": owner,
            "e": epoch,
            "t": task_instance_id,
            **_S,
        },
    ).scalar_one_or_none()
    return int(row) if row is not None else None
