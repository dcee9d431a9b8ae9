"""Task-attempt queries for masters: read the attempts of instances, insert new attempts in one
set-based statement, pick SUBMITTED attempts in queue order, and mark pushed ones DISPATCHED."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core import task_types
from core.states import TASK_IN_FLIGHT, TASK_UNSTARTED, TaskState, values

T = TaskState
_IN_FLIGHT = values(TASK_IN_FLIGHT)
_UNSTARTED = values(TASK_UNSTARTED)
_LEASED = values({T.DISPATCHED, T.RUNNING})
# inserted rows in these states have not ended (no end time yet)
_UNENDED = values({T.SUBMITTED, T.RUNNING})


@dataclass(frozen=True)
class AttemptRow:
    id: int
    workflow_instance_id: int
    name: str
    attempt: int
    state: str
    output: dict[str, Any]
    end_time: datetime | None
    worker_id: str | None = None
    lease_token: int | None = None
    priority: int = 2
    worker_group: str = "default"
    # a FANOUT sub-execution: the FANOUT attempt it belongs to (never a DAG task of its own)
    parent_id: int | None = None
    # for the master's latency metrics (master/observe.py)
    start_time: datetime | None = None
    submit_time: datetime | None = None


_ROW_COLS = (
    "id, workflow_instance_id, name, attempt, state, output, end_time, worker_id, lease_token,"
    " priority, worker_group, parent_id, start_time, submit_time"
)


@dataclass(frozen=True)
class NewAttempt:
    workflow_instance_id: int
    name: str
    type: str
    attempt: int
    priority: int
    worker_group: str
    spec: dict[str, Any]
    # a row the master decides itself is inserted final (SKIPPED, or a branch node's result)
    state: str = T.SUBMITTED.value
    output: dict[str, Any] | None = None
    reason: str | None = None
    task_group: str | None = None


@dataclass(frozen=True)
class CreatedAttempt:
    id: int
    workflow_instance_id: int
    name: str
    priority: int
    worker_group: str


def load_for_instances(s: Session, instance_ids: list[int]) -> list[AttemptRow]:
    if not instance_ids:
        return []
    rows = s.execute(
        text(f"SELECT {_ROW_COLS} FROM task_instance WHERE workflow_instance_id = ANY(:ids)"),
        {"ids": instance_ids},
    ).all()
    return [AttemptRow(*r) for r in rows]


def insert_many(s: Session, attempts: list[NewAttempt]) -> list[CreatedAttempt]:
    """Insert attempts in one statement (SUBMITTED; final rows the master decided; RUNNING rows
    of master-run types, start time set); an existing (instance, name, attempt) is kept and not
    returned, so a replayed decision cannot create a second row."""
    if not attempts:
        return []
    payload = json.dumps(
        [
            {
                "w": a.workflow_instance_id,
                "n": a.name,
                "t": a.type,
                "a": a.attempt,
                "p": a.priority,
                "g": a.worker_group,
                "s": a.spec,
                "st": a.state,
                "o": a.output or {},
                "r": a.reason,
                "tg": a.task_group,
            }
            for a in attempts
        ]
    )
    rows = s.execute(
        text(
            "INSERT INTO task_instance (workflow_instance_id, name, type, attempt, state,"
            " priority, worker_group, spec, output, reason, task_group, start_time, end_time)"
            " SELECT (x->>'w')::bigint, x->>'n', x->>'t', (x->>'a')::int, x->>'st',"
            " (x->>'p')::smallint, x->>'g', x->'s', x->'o', x->>'r', x->>'tg',"
            " CASE WHEN x->>'st' = :submitted THEN NULL ELSE now() END,"
            " CASE WHEN x->>'st' = ANY(:unended) THEN NULL ELSE now() END"
            " FROM jsonb_array_elements(CAST(:payload AS jsonb)) AS x"
            " ON CONFLICT ON CONSTRAINT uq_task_attempt DO NOTHING"
            " RETURNING id, workflow_instance_id, name, priority, worker_group"
        ),
        {"payload": payload, "submitted": T.SUBMITTED.value, "unended": _UNENDED},
    ).all()
    return [CreatedAttempt(*r) for r in rows]


def mark_dispatched(s: Session, ids: list[int]) -> None:
    if ids:
        s.execute(
            text(
                "UPDATE task_instance SET state = :dispatched, dispatch_time = now()"
                " WHERE id = ANY(:ids) AND state = :submitted"
            ),
            {"ids": ids, "dispatched": T.DISPATCHED.value, "submitted": T.SUBMITTED.value},
        )


def submitted_in_order(
    s: Session, instance_ids: list[int], group: str, limit: int
) -> list[CreatedAttempt]:
    """The first ``limit`` SUBMITTED attempts of ``instance_ids`` in ``group``, in queue-key
    order (workflow priority, instance id, task priority, attempt id)."""
    if not instance_ids or limit <= 0:
        return []
    rows = s.execute(
        text(
            "SELECT t.id, t.workflow_instance_id, t.name, t.priority, t.worker_group"
            " FROM task_instance t JOIN workflow_instance w ON w.id = t.workflow_instance_id"
            " WHERE t.workflow_instance_id = ANY(:ids) AND t.state = :submitted"
            " AND t.worker_group = :g AND t.parent_id IS NULL"
            " ORDER BY w.priority, t.workflow_instance_id, t.priority, t.id LIMIT :n"
        ),
        {"ids": instance_ids, "g": group, "n": limit, "submitted": T.SUBMITTED.value},
    ).all()
    return [CreatedAttempt(*r) for r in rows]


def submitted_counts(s: Session, instance_ids: list[int]) -> dict[tuple[int, str], int]:
    """How many SUBMITTED attempts each of ``instance_ids`` has, per worker group."""
    if not instance_ids:
        return {}
    rows = s.execute(
        text(
            "SELECT workflow_instance_id, worker_group, count(*) FROM task_instance"
            " WHERE workflow_instance_id = ANY(:ids) AND state = :submitted AND parent_id IS NULL"
            " GROUP BY workflow_instance_id, worker_group"
        ),
        {"ids": instance_ids, "submitted": T.SUBMITTED.value},
    ).all()
    return {(int(w), str(g)): int(n) for w, g, n in rows}


def load_versions(s: Session, keys: list[tuple[int, int]]) -> dict[tuple[int, int], dict[str, Any]]:
    """Workflow specs by (workflow_id, version)."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for wid, ver in keys:
        spec = s.execute(
            text("SELECT spec FROM workflow_version WHERE workflow_id = :w AND version = :v"),
            {"w": wid, "v": ver},
        ).scalar_one_or_none()
        if spec is not None:
            out[(wid, ver)] = spec
    return out


@dataclass(frozen=True)
class InFlightRow:
    id: int
    workflow_instance_id: int
    state: str
    worker_group: str
    lease_token: int | None
    dispatch_time: datetime | None
    parent_id: int | None = None  # a FANOUT sub-execution (queued on its host's queue)


def in_flight_of(s: Session, instance_ids: list[int]) -> list[InFlightRow]:
    """DISPATCHED and RUNNING attempts of ``instance_ids``."""
    if not instance_ids:
        return []
    rows = s.execute(
        text(
            "SELECT id, workflow_instance_id, state, worker_group, lease_token, dispatch_time,"
            " parent_id FROM task_instance WHERE workflow_instance_id = ANY(:ids)"
            " AND state = ANY(:leased)"
            # a master-run attempt (RUNNING, no worker) is its master's, never lost
            " AND NOT (state = :running AND worker_id IS NULL AND type = ANY(:logical))"
        ),
        {
            "ids": instance_ids,
            "leased": _LEASED,
            "running": T.RUNNING.value,
            "logical": task_types.master_run_types(),
        },
    ).all()
    return [InFlightRow(*r) for r in rows]


def mark_need_fault_tolerance(s: Session, row: InFlightRow) -> bool:
    """CAS an attempt whose lease is gone to NEED_FAULT_TOLERANCE (state and token unchanged)."""
    res = s.execute(
        text(
            "UPDATE task_instance SET state = :nft, end_time = now()"
            " WHERE id = :id AND state = :st AND lease_token IS NOT DISTINCT FROM :tok"
            " AND NOT (state = :running AND worker_id IS NULL AND type = ANY(:logical))"
        ),
        {
            "nft": T.NEED_FAULT_TOLERANCE.value,
            "running": T.RUNNING.value,
            "id": row.id,
            "st": row.state,
            "tok": row.lease_token,
            "logical": task_types.master_run_types(),
        },
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def load_by_ids(s: Session, ids: list[int]) -> list[AttemptRow]:
    """Specific attempts (those a notification said changed)."""
    if not ids:
        return []
    rows = s.execute(
        text(f"SELECT {_ROW_COLS} FROM task_instance WHERE id = ANY(:ids)"),
        {"ids": ids},
    ).all()
    return [AttemptRow(*r) for r in rows]


def cancel_unstarted(s: Session, ids: list[int], state: str, reason: str) -> list[int]:
    """SUBMITTED/DISPATCHED attempts -> ``state`` (KILL or PAUSE); a worker that claims one later
    finds it not startable. Returns the ids that moved."""
    if not ids:
        return []
    rows = s.execute(
        text(
            "UPDATE task_instance SET state = :st, end_time = now(), reason = :r"
            " WHERE id = ANY(:ids) AND state = ANY(:unstarted) RETURNING id"
        ),
        {"st": state, "r": reason, "ids": ids, "unstarted": _UNSTARTED},
    ).scalars()
    return [int(r) for r in rows]


def force_kill(s: Session, task_instance_id: int, lease_token: int | None, reason: str) -> bool:
    """RUNNING -> KILL without the worker (it did not answer a kill request in time, or is gone);
    conditional on the lease token, so the worker's later report is rejected."""
    res = s.execute(
        text(
            "UPDATE task_instance SET state = :kill, end_time = now(), reason = :r"
            " WHERE id = :id AND state = :running AND lease_token IS NOT DISTINCT FROM :tok"
        ),
        {
            "id": task_instance_id,
            "tok": lease_token,
            "r": reason,
            "kill": T.KILL.value,
            "running": T.RUNNING.value,
        },
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def task_group_free_slots(s: Session, groups: list[str]) -> dict[str, tuple[int, int]]:
    """(capacity, in use) per task group, counted from live attempts. Takes a transaction-scoped
    advisory lock per group (in name order, so two masters cannot deadlock), so that the caller's
    inserts in this transaction cannot overrun a limit. A group that does not exist is absent."""
    out: dict[str, tuple[int, int]] = {}
    for g in sorted(set(groups)):
        s.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('dagkeeper.task_group'), hashtext(:g))"),
            {"g": g},
        )
        cap = s.execute(
            text("SELECT capacity FROM task_group WHERE name = :g"), {"g": g}
        ).scalar_one_or_none()
        if cap is None:
            continue
        used = s.execute(
            text(
                "SELECT count(*) FROM task_instance WHERE task_group = :g"
                " AND state = ANY(:in_flight)"
            ),
            {"g": g, "in_flight": _IN_FLIGHT},
        ).scalar_one()
        out[g] = (int(cap), int(used))
    return out


def finish_master_run(
    s: Session, task_instance_id: int, state: str, output: dict[str, Any], reason: str | None
) -> bool:
    """RUNNING -> ``state`` for a master-run attempt (no worker holds it); the caller holds the
    instance locked as its owner, so this write is fenced by the owner's epoch."""
    res = s.execute(
        text(
            "UPDATE task_instance SET state = :st, end_time = now(), reason = :r,"
            " output = output || CAST(:o AS jsonb) WHERE id = :id AND state = :running"
            " AND worker_id IS NULL"
        ),
        {
            "st": state,
            "r": reason or None,
            "o": json.dumps(output),
            "id": task_instance_id,
            "running": T.RUNNING.value,
        },
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def params_of(s: Session, ids: list[int]) -> dict[int, dict[str, str]]:
    """The resolved parameters a master-run attempt was started with (its spec's params)."""
    if not ids:
        return {}
    rows = s.execute(
        text("SELECT id, spec->'params' FROM task_instance WHERE id = ANY(:ids)"), {"ids": ids}
    ).all()
    return {int(i): {str(k): str(v) for k, v in (p or {}).items()} for i, p in rows}
