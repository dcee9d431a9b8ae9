"""Workflow-instance queries for masters; every write is a compare-and-set on state and owner
epoch, so a master whose epoch is stale changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.states import WORKFLOW_TERMINAL, WorkflowState, values, workflow_sources
from db.children import settle_parent

W = WorkflowState
# The states the statements below bind by name (each call passes them all: **_S).
_S: dict[str, Any] = {
    "running": W.RUNNING.value,
    "submitted": W.SUBMITTED.value,
    "terminal": values(WORKFLOW_TERMINAL),
    # not what an owner drives: terminal, or resting (paused, waiting its serial turn)
    "not_driven": values(WORKFLOW_TERMINAL | {W.PAUSE, W.SERIAL_WAIT}),
    # not what a failover adopts: terminal, or SUBMITTED (no owner yet)
    "not_adoptable": values(WORKFLOW_TERMINAL | {W.SUBMITTED}),
}


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
            "UPDATE workflow_instance SET state = :running, owner = :o, owner_epoch = :e,"
            " start_time = now() WHERE id = :id AND state = :submitted"
        ),
        {"o": owner, "e": epoch, "id": instance_id, **_S},
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
            " owner_epoch) VALUES (:w, :v, :running, :p, CAST(:params AS jsonb), '{}', :ct,"
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
            **_S,
        },
    ).scalar_one()
    return int(row)


def load_owned(
    s: Session, owner: str, epoch: int, ids: list[int] | None = None
) -> list[InstanceRow]:
    """Our non-terminal instances (optionally only ``ids``)."""
    sql = (
        f"SELECT {_COLS} FROM workflow_instance WHERE owner = :o AND owner_epoch = :e"
        " AND state <> ALL(:not_driven)"
    )
    args: dict[str, Any] = {"o": owner, "e": epoch, **_S}
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
            " AND owner_epoch = :e AND state <> ALL(:terminal) FOR SHARE"
        ),
        {"ids": ids, "o": owner, "e": epoch, **_S},
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
            " AND state <> ALL(:not_adoptable)"
        ),
        _S,
    ).all()
    return [(int(r[0]), r[1], r[2]) for r in rows]


def release_owned(s: Session, owner: str, epoch: int) -> list[int]:
    """A graceful stop hands its instances over: each keeps its owner's name but loses the
    epoch (NULL), so no write of ``(owner, epoch)`` changes it any more and, (owner, NULL) being
    no live registration, a live master adopts it at once (``adopt``). The ids released."""
    rows = s.execute(
        text(
            "UPDATE workflow_instance SET owner_epoch = NULL WHERE owner = :o AND owner_epoch = :e"
            " AND state <> ALL(:not_adoptable) RETURNING id"
        ),
        {"o": owner, "e": epoch, **_S},
    ).scalars()
    return sorted(int(r) for r in rows)


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
            " AND state <> ALL(:terminal)"
        ),
        {"o": owner, "e": epoch, "id": instance_id, "oo": old_owner, "oe": old_epoch, **_S},
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
            "UPDATE workflow_instance SET state = :running, owner = :o, owner_epoch = :e,"
            f" start_time = now(), reason = NULL{run_sql} WHERE id = :id AND state = ANY(:src)"
        ),
        {"o": owner, "e": epoch, "id": instance_id, "src": sources, "keep": keep_successes, **_S},
    )
    return res.rowcount == 1  # type: ignore[attr-defined]
