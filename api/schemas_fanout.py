"""Response models of FANOUT sub-executions: each target's host, parameters, state, times and
result, shown on the FANOUT attempt and under /task-instances/{id}/sub-executions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.schemas import Timestamp
from api.schemas_instances import TaskInstanceOut
from db import fanout as q_fanout
from db.models import TaskInstance


class SubExecutionOut(BaseModel):
    id: int
    host: str  # the target host
    worker_id: str | None  # the worker that ran it (its host is worker_host)
    worker_host: str | None
    params: dict[str, str]
    state: str
    submit_time: Timestamp | None
    dispatch_time: Timestamp | None
    start_time: Timestamp | None
    end_time: Timestamp | None
    exit_code: int | None
    output: dict[str, Any]
    reason: str | None


class SubExecutionPage(BaseModel):
    parent_id: int
    items: list[SubExecutionOut]
    total: int


class TaskInstanceWithSubs(TaskInstanceOut):
    """An attempt; a FANOUT attempt also lists its sub-executions (a sub-execution names its
    FANOUT attempt and target host in ``parent_id`` and ``target``, as in every summary)."""

    sub_executions: list[SubExecutionOut] | None = None


def sub_executions(s: Session, parent_id: int) -> list[SubExecutionOut]:
    return [SubExecutionOut(**r.as_dict()) for r in q_fanout.subs_of(s, parent_id)]


def with_subs(s: Session, row: TaskInstance) -> TaskInstanceWithSubs:
    base = TaskInstanceOut.from_row(row).model_dump()
    subs = sub_executions(s, row.id) if row.type == "FANOUT" else None
    return TaskInstanceWithSubs(**base, sub_executions=subs)
