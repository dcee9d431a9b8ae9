"""Workflow-instance queries for masters; every write is a compare-and-set on state and owner
epoch, so a master whose epoch is stale changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.states import WORKFLOW_TERMINAL, WorkflowState, workflow_sources
from db.notify import notify_owner


@dataclass(frozen=True)
class InstanceRow:
    id: int
    workflow_id: int
    version: int
    state: str
    priority: int
    params: dict[str, Any]
    run_options: dict[str, Any]
    schedule_time: datetime | None
    owner: str | None
    owner_epoch: int | None
    start_time: datetime | None = None
    run_count: int = 1


_COLS = (
    "id, workflow_id, version, state, priority, params, run_options, schedule_time, owner,"
    " owner_epoch, start_time, run_count"
)


def take_ownership(s: Session, instance_id: int, owner: str, epoch: int) -> bool:
    """SUBMITTED -> RUNNING owned by (owner, epoch); False when another master won or it moved."""
    res = s.execute(
        text(
            "UPDATE workflow_instance SET state = 'RUNNING', owner = :o, owner_epoch = :e,"
            " start_time = now() WHERE id = :id AND state = 'SUBMITTED'"
        ),
        {"o": owner, "e": epoch, "id": instance_id},
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def create_owned(
    s: Session,
    *,
    workflow_id: int,
    version: int,
    priority: int,
    params: dict[str, Any],
    command_type: str,
    owner: str,
    epoch: int,
    schedule_id: int | None = None,
    schedule_time: datetime | None = None,
) -> int:
    """Create a RUNNING instance owned by us (for commands that carry no instance row)."""
    row = s.execute(
        text(
            "INSERT INTO workflow_instance (workflow_id, version, state, priority, params,"
            " run_options, command_type, schedule_id, schedule_time, start_time, owner,"
            " owner_epoch) VALUES (:w, :v, 'RUNNING', :p, CAST(:params AS jsonb), '{}', :ct,"
            " :sid, :st, now(), :o, :e) RETURNING id"
        ),
        {
            "w": workflow_id,
            "v": version,
            "p": priority,
            "params": _json(params),
            "ct": command_type,
            "sid": schedule_id,
            "st": schedule_time,
            "o": owner,
            "e": epoch,
        },
    ).scalar_one()
    return int(row)


def load_owned(
    s: Session, owner: str, epoch: int, ids: list[int] | None = None
) -> list[InstanceRow]:
    """Our non-terminal instances (optionally only ``ids``)."""
    sql = (
        f"SELECT {_COLS} FROM workflow_instance WHERE owner = :o AND owner_epoch = :e"
        " AND state NOT IN ('SUCCESS','FAILURE','STOP','PAUSE','SERIAL_WAIT')"
    )
    args: dict[str, Any] = {"o": owner, "e": epoch}
    if ids is not None:
        sql += " AND id = ANY(:ids)"
        args["ids"] = ids
    return [InstanceRow(*r) for r in s.execute(text(sql), args).all()]


def lock_owned(s: Session, ids: list[int], owner: str, epoch: int) -> set[int]:
    """Share-lock those of ``ids`` we still own, so no adopter can take them before we commit."""
    if not ids:
        return set()
    rows = s.execute(
        text(
            "SELECT id FROM workflow_instance WHERE id = ANY(:ids) AND owner = :o"
            " AND owner_epoch = :e AND state NOT IN ('SUCCESS','FAILURE','STOP') FOR SHARE"
        ),
        {"ids": ids, "o": owner, "e": epoch},
    ).scalars()
    return {int(r) for r in rows}


def finish(
    s: Session,
    instance_id: int,
    state: WorkflowState,
    owner: str,
    epoch: int,
    reason: str | None = None,
) -> bool:
    """Move an owned instance to a terminal state, or PAUSE (CAS on allowed source states and
    epoch); the end time is set for terminal states only."""
    res = s.execute(
        text(
            "UPDATE workflow_instance SET state = :st, reason = :r,"
            " end_time = CASE WHEN :terminal THEN now() ELSE end_time END WHERE id = :id"
            " AND owner = :o AND owner_epoch = :e AND state = ANY(:src)"
            " RETURNING parent_task_instance_id"
        ),
        {
            "st": state.value,
            "r": reason,
            "terminal": state in WORKFLOW_TERMINAL,
            "id": instance_id,
            "o": owner,
            "e": epoch,
            "src": list(workflow_sources(state)),
        },
    ).first()
    if res is None:
        return False
    if res[0] is not None:
        settle_parent(s, instance_id, state)
    return True


def set_reason(s: Session, instance_id: int, reason: str | None, owner: str, epoch: int) -> None:
    """Say why an owned instance waits (e.g. for a task group), or clear it with None."""
    s.execute(
        text(
            "UPDATE workflow_instance SET reason = :r WHERE id = :id AND owner = :o"
            " AND owner_epoch = :e AND reason IS DISTINCT FROM :r"
        ),
        {"r": reason, "id": instance_id, "o": owner, "e": epoch},
    )


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def active_owners(s: Session) -> list[tuple[int, str | None, int | None]]:
    """(id, owner, owner_epoch) of every owned, non-terminal instance."""
    rows = s.execute(
        text(
            "SELECT id, owner, owner_epoch FROM workflow_instance WHERE owner IS NOT NULL"
            " AND state NOT IN ('SUCCESS','FAILURE','STOP','SUBMITTED')"
        )
    ).all()
    return [(int(r[0]), r[1], r[2]) for r in rows]


def adopt(
    s: Session,
    instance_id: int,
    old_owner: str | None,
    old_epoch: int | None,
    owner: str,
    epoch: int,
) -> bool:
    """Compare-and-set ownership from a dead (owner, epoch) to ours."""
    res = s.execute(
        text(
            "UPDATE workflow_instance SET owner = :o, owner_epoch = :e WHERE id = :id"
            " AND owner IS NOT DISTINCT FROM :oo AND owner_epoch IS NOT DISTINCT FROM :oe"
            " AND state NOT IN ('SUCCESS','FAILURE','STOP')"
        ),
        {"o": owner, "e": epoch, "id": instance_id, "oo": old_owner, "oe": old_epoch},
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def add_alert(
    s: Session, kind: str, title: str, content: dict[str, Any], instance_id: int | None = None
) -> None:
    s.execute(
        text(
            "INSERT INTO alert (kind, title, content, workflow_instance_id)"
            " VALUES (:k, :t, CAST(:c AS jsonb), :i)"
        ),
        {"k": kind, "t": title, "c": _json(content), "i": instance_id},
    )


def restart(
    s: Session,
    instance_id: int,
    sources: list[str],
    owner: str,
    epoch: int,
    *,
    new_run: bool,
    keep_successes: bool = False,
) -> bool:
    """Take an instance in one of ``sources`` to RUNNING owned by us. ``new_run`` (rerun, recover
    failed) starts a new run of it: attempts so far are hidden from decisions (successes kept with
    ``keep_successes``); otherwise (resume) it carries on where it paused."""
    run_sql = (
        ", run_count = run_count + 1, end_time = NULL, run_options = run_options"
        " || jsonb_build_object('since_task_id', (SELECT coalesce(max(id), 0) FROM task_instance"
        " WHERE workflow_instance_id = :id), 'keep_successes', CAST(:keep AS boolean))"
        if new_run
        else ""
    )
    res = s.execute(
        text(
            "UPDATE workflow_instance SET state = 'RUNNING', owner = :o, owner_epoch = :e,"
            f" start_time = now(), reason = NULL{run_sql} WHERE id = :id AND state = ANY(:src)"
        ),
        {"o": owner, "e": epoch, "id": instance_id, "src": sources, "keep": keep_successes},
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


# SUB_PROCESS children ------------------------------------------------------------------------

# A child's end -> its parent attempt's state (a PAUSE only while the parent is pausing).
CHILD_TO_ATTEMPT = {
    WorkflowState.SUCCESS: "SUCCESS",
    WorkflowState.FAILURE: "FAILURE",
    WorkflowState.STOP: "KILL",
    WorkflowState.PAUSE: "PAUSE",
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
            " WHERE c.id = :child AND t.id = c.parent_task_instance_id AND t.state = 'RUNNING'"
            " AND t.worker_id IS NULL AND p.id = t.workflow_instance_id"
            " AND (:ts <> 'PAUSE' OR p.state = 'READY_PAUSE')"
            " RETURNING t.workflow_instance_id, t.id"
        ),
        {"ts": target, "child": child_id, "r": f"child instance {child_id} {state.value}"},
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
            " AND c.state NOT IN ('SUCCESS','FAILURE','STOP') ORDER BY c.id"
        ),
        {"i": instance_id},
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
            " parent_task_instance_id) SELECT d.id, d.latest_version, 'RUNNING', :p,"
            " CAST(:params AS jsonb), CAST(:ro AS jsonb), 'SUB_PROCESS', :st, now(), :o, :e, :t"
            " FROM workflow_definition d WHERE d.id = :w AND NOT d.deleted RETURNING id"
        ),
        {
            "w": workflow_id,
            "p": parent.priority,
            "params": _json(params),
            "ro": _json(run_options),
            "st": parent.schedule_time,
            "o": owner,
            "e": epoch,
            "t": task_instance_id,
        },
    ).scalar_one_or_none()
    return int(row) if row is not None else None
