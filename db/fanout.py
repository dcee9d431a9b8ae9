"""FANOUT sub-execution queries: insert one task_instance row per target under its FANOUT attempt
(``parent_id``, ``target``), read them back (for the driver and the API), mark the pushed ones
DISPATCHED and fail unclaimed ones. Never commit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.states import TASK_UNSTARTED, TaskState, values

T = TaskState
_UNSTARTED = values(TASK_UNSTARTED)


@dataclass(frozen=True)
class NewSub:
    host: str
    name: str
    spec: dict[str, Any]
    state: str = T.SUBMITTED.value  # or FAILURE, with a reason, for a target known dead at start
    reason: str | None = None


@dataclass(frozen=True)
class SubRow:
    """One sub-execution as the driver and the API see it."""

    id: int
    host: str
    name: str
    state: str
    params: dict[str, str]
    worker_id: str | None
    worker_host: str | None
    lease_token: int | None
    priority: int
    submit_time: datetime | None
    dispatch_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    exit_code: int | None
    output: dict[str, Any]
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "worker_id": self.worker_id,
            "worker_host": self.worker_host,
            "params": self.params,
            "state": self.state,
            "submit_time": self.submit_time,
            "dispatch_time": self.dispatch_time,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "exit_code": self.exit_code,
            "output": self.output,
            "reason": self.reason,
        }


def parent_of(s: Session, attempt_id: int) -> tuple[int, int, str] | None:
    """(attempt number, priority, worker group) of a FANOUT attempt."""
    row = s.execute(
        text("SELECT attempt, priority, worker_group FROM task_instance WHERE id = :id"),
        {"id": attempt_id},
    ).one_or_none()
    return None if row is None else (int(row[0]), int(row[1]), str(row[2]))


def insert_subs(s: Session, instance_id: int, parent_id: int, subs: list[NewSub]) -> list[int]:
    """One row per target (type SHELL, the parent's attempt number, priority and group); a
    replayed start inserts nothing twice (unique per parent and target). Returns the new ids."""
    parent = parent_of(s, parent_id)
    if parent is None or not subs:
        return []
    attempt, priority, group = parent
    payload = json.dumps(
        [{"n": x.name, "h": x.host, "s": x.spec, "st": x.state, "r": x.reason} for x in subs]
    )
    rows = s.execute(
        text(
            "INSERT INTO task_instance (workflow_instance_id, name, type, attempt, state,"
            " priority, worker_group, spec, output, reason, parent_id, target, start_time,"
            " end_time)"
            " SELECT :w, x->>'n', 'SHELL', :a, x->>'st', :p, :g, x->'s', '{}'::jsonb, x->>'r',"
            " :parent, x->>'h',"
            " CASE WHEN x->>'st' = :submitted THEN NULL ELSE now() END,"
            " CASE WHEN x->>'st' = :submitted THEN NULL ELSE now() END"
            " FROM jsonb_array_elements(CAST(:payload AS jsonb)) AS x"
            " ON CONFLICT DO NOTHING RETURNING id"
        ),
        {
            "w": instance_id,
            "a": attempt,
            "p": priority,
            "g": group,
            "parent": parent_id,
            "payload": payload,
            "submitted": T.SUBMITTED.value,
        },
    ).scalars()
    return [int(i) for i in rows]


_SUB_COLS = (
    "id, target, name, state, COALESCE(spec->'fanout'->'params', '{}'::jsonb), worker_id, host,"
    " lease_token, priority, submit_time, dispatch_time, start_time, end_time, exit_code,"
    " output, reason"
)


def subs_of(s: Session, parent_id: int) -> list[SubRow]:
    """The sub-executions of one FANOUT attempt, in target order of creation."""
    rows = s.execute(
        text(f"SELECT {_SUB_COLS} FROM task_instance WHERE parent_id = :p ORDER BY id"),
        {"p": parent_id},
    ).all()
    return [_sub(r) for r in rows]


def _sub(r: Any) -> SubRow:
    return SubRow(
        id=int(r[0]),
        host=str(r[1] or ""),
        name=str(r[2]),
        state=str(r[3]),
        params={str(k): str(v) for k, v in (r[4] or {}).items()},
        worker_id=r[5],
        worker_host=r[6],
        lease_token=r[7],
        priority=int(r[8]),
        submit_time=r[9],
        dispatch_time=r[10],
        start_time=r[11],
        end_time=r[12],
        exit_code=r[13],
        output=dict(r[14] or {}),
        reason=r[15],
    )


def mark_dispatched(s: Session, ids: list[int]) -> None:
    if ids:
        s.execute(
            text(
                "UPDATE task_instance SET state = :dispatched, dispatch_time = now()"
                " WHERE id = ANY(:ids) AND state = :submitted AND parent_id IS NOT NULL"
            ),
            {"ids": ids, "dispatched": T.DISPATCHED.value, "submitted": T.SUBMITTED.value},
        )


def fail_unstarted(s: Session, ids: list[int], state: str, reason: str) -> list[int]:
    """Unstarted sub-executions -> ``state`` (FAILURE: never claimed; KILL: cancelled) with
    ``reason``; a worker that claims one later finds it not startable. Returns those moved."""
    if not ids:
        return []
    rows = s.execute(
        text(
            "UPDATE task_instance SET state = :st, end_time = now(), reason = :r"
            " WHERE id = ANY(:ids) AND state = ANY(:unstarted)"
            " AND parent_id IS NOT NULL RETURNING id"
        ),
        {"ids": ids, "st": state, "r": reason, "unstarted": _UNSTARTED},
    ).scalars()
    return [int(i) for i in rows]
