"""Serial execution of a workflow's runs (SERIAL_WAIT, SERIAL_DISCARD, SERIAL_PRIORITY): the
admission check when a master claims a run, and the promotion of the next waiting run when one
ends. Both hold a transaction-scoped advisory lock per workflow, so they never interleave."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.states import SERIAL_EXECUTION, ExecutionType, WorkflowState, values

W = WorkflowState
# States in which a run of a workflow counts as running for serial execution.
ACTIVE = frozenset({W.RUNNING, W.READY_PAUSE, W.PAUSE, W.READY_STOP, W.FAILOVER})
SERIAL_TYPES = frozenset(e.value for e in SERIAL_EXECUTION)
# The states the statements below bind by name (each call passes them all: **_S).
_S: dict[str, Any] = {
    "active": values(ACTIVE),
    "waiting": W.SERIAL_WAIT.value,
    "submitted": W.SUBMITTED.value,
    "running": W.RUNNING.value,
    "stop": W.STOP.value,
}


def lock_workflow(s: Session, workflow_id: int) -> None:
    s.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('dagkeeper.serial'), :w)"),
        {"w": int(workflow_id) % 2_000_000_000},
    )


def execution_type(s: Session, workflow_id: int, version: int) -> str:
    value = s.execute(
        text(
            "SELECT spec->>'execution_type' FROM workflow_version"
            " WHERE workflow_id = :w AND version = :v"
        ),
        {"w": workflow_id, "v": version},
    ).scalar_one_or_none()
    return str(value or ExecutionType.PARALLEL).upper()


def _blocker(s: Session, workflow_id: int, instance_id: int) -> int | None:
    """Another run of the workflow that is running, or waiting ahead of ``instance_id``."""
    row = s.execute(
        text(
            "SELECT id FROM workflow_instance WHERE workflow_id = :w AND id <> :i"
            " AND (state = ANY(:active) OR (state = :waiting AND id < :i))"
            " ORDER BY id LIMIT 1"
        ),
        {"w": workflow_id, "i": instance_id, **_S},
    ).scalar_one_or_none()
    return int(row) if row is not None else None


def admit(s: Session, workflow_id: int, version: int, instance_id: int) -> tuple[str, str] | None:
    """For a SUBMITTED run about to start: None to start it now, else (new state, reason) —
    SERIAL_WAIT while another run is active, or STOP for SERIAL_DISCARD — already written."""
    kind = execution_type(s, workflow_id, version)
    if kind not in SERIAL_TYPES:
        return None
    lock_workflow(s, workflow_id)
    blocker = _blocker(s, workflow_id, instance_id)
    if blocker is None:
        return None
    if kind == ExecutionType.SERIAL_DISCARD:
        state, reason = W.STOP.value, f"discarded: run {blocker} of this workflow is running"
    else:
        state, reason = W.SERIAL_WAIT.value, f"waiting for run {blocker} of this workflow"
    res = s.execute(
        text(
            "UPDATE workflow_instance SET state = :st, reason = :r,"
            " end_time = CASE WHEN :st = :stop THEN now() ELSE NULL END"
            " WHERE id = :i AND state = :submitted"
        ),
        {"st": state, "r": reason, "i": instance_id, **_S},
    )
    return (state, reason) if res.rowcount == 1 else None  # type: ignore[attr-defined]


def promote_next(s: Session, workflow_id: int, kind: str, owner: str, epoch: int) -> int | None:
    """When no run of the workflow is active, start its next waiting run (oldest first, or by
    priority for SERIAL_PRIORITY) as RUNNING owned by (owner, epoch). Returns its id."""
    lock_workflow(s, workflow_id)
    active = s.execute(
        text("SELECT 1 FROM workflow_instance WHERE workflow_id = :w AND state = ANY(:a) LIMIT 1"),
        {"w": workflow_id, "a": values(ACTIVE)},
    ).first()
    if active is not None:
        return None
    order = "priority, id" if kind == ExecutionType.SERIAL_PRIORITY else "id"
    nxt = s.execute(
        text(
            "SELECT id FROM workflow_instance WHERE workflow_id = :w AND state = :waiting"
            f" ORDER BY {order} LIMIT 1 FOR UPDATE"
        ),
        {"w": workflow_id, **_S},
    ).scalar_one_or_none()
    if nxt is None:
        return None
    s.execute(
        text(
            "UPDATE workflow_instance SET state = :running, owner = :o, owner_epoch = :e,"
            " start_time = now(), reason = NULL WHERE id = :i AND state = :waiting"
        ),
        {"o": owner, "e": epoch, "i": nxt, **_S},
    )
    return int(nxt)


def stalled(s: Session) -> list[tuple[int, int]]:
    """(workflow id, version) of workflows with waiting runs and none active (a promotion that
    was missed, e.g. a run stopped while SUBMITTED)."""
    rows = s.execute(
        text(
            "SELECT DISTINCT w.workflow_id, w.version FROM workflow_instance w"
            " WHERE w.state = :waiting AND NOT EXISTS (SELECT 1 FROM workflow_instance a"
            " WHERE a.workflow_id = w.workflow_id AND a.state = ANY(:active))"
        ),
        _S,
    ).all()
    return [(int(r[0]), int(r[1])) for r in rows]
