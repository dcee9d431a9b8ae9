"""``waiting_reason`` for GET /instances/{id} (and the doctor's report): the snapshot the pure
rules of core.waiting read — the instance's spec and attempts, live workers and queue entries
per group, held-back positions, task-group use and holders, the owner's liveness, the serial
predecessor — gathered in a few reads, then written onto the answer."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from kazoo.exceptions import KazooException, NoNodeError
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from coord import membership
from coord.queue import parse_key
from coord.zk import ZkClient
from core import task_types, waiting
from core.errors import ValidationError
from core.spec import parse_workflow_spec
from core.states import TASK_IN_FLIGHT, WORKFLOW_ACTIVE, TaskState, WorkflowState, values
from db.models import TaskInstance, WorkflowInstance

log = logging.getLogger(__name__)


class WaitingReasonOut(BaseModel):
    code: str
    message: str
    since: datetime | None = None


class NotStartedOut(BaseModel):
    """A task of the run that has no attempt yet, and why."""

    name: str
    type: str
    worker_group: str
    waiting_reason: WaitingReasonOut


_SPEC = text("SELECT spec FROM workflow_version WHERE workflow_id = :w AND version = :v")
_GROUPS = text(
    "SELECT g.name, g.capacity, array_remove(array_agg(DISTINCT t.workflow_instance_id), NULL)"
    " AS holders, count(t.id) AS used FROM task_group g LEFT JOIN task_instance t"
    " ON t.task_group = g.name AND t.state = ANY(:flight) WHERE g.name = ANY(:names)"
    " GROUP BY g.name, g.capacity"
)
_HELD = text(
    "SELECT count(*) FROM task_instance t JOIN workflow_instance w ON w.id = t.workflow_instance_id"
    " WHERE t.state = :submitted AND t.worker_group = :g AND t.parent_id IS NULL"
    " AND (w.priority, w.id, t.priority, t.id) < (:wp, :wid, :tp, :tid)"
)
_BEHIND = text(
    "SELECT id FROM workflow_instance WHERE workflow_id = :w AND id < :id"
    " AND state = ANY(:active) AND state <> :serial ORDER BY id LIMIT 1"
)


def _tasks(raw: dict[str, Any]) -> list[waiting.TaskFacts]:
    try:
        spec = parse_workflow_spec(raw)
    except ValidationError:
        return []
    return [
        waiting.TaskFacts(
            name=t.name,
            type=t.type,
            depends_on=tuple(t.depends_on),
            worker_group=t.worker_group,
            task_group=t.task_group,
            retries=t.retries,
            retry_interval_s=float(t.retry_interval_s),
            retry_backoff=t.retry_backoff,
            retry_max_delay_s=t.retry_max_delay_s,
            master_run=task_types.is_logical(t.type),
        )
        for t in spec.tasks
    ]


def _zk_facts(zk: ZkClient | None, snap: waiting.Snapshot, rows: list[TaskInstance]) -> None:
    """Live workers per group, queue depth and positions, the owner's liveness (from ZK)."""
    if zk is None:
        snap.live_workers = {g: 1 for g in {t.worker_group for t in snap.tasks}}  # unknown
        return
    groups = {t.worker_group for t in snap.tasks} | {r.worker_group for r in rows}
    for g in groups:
        try:
            snap.live_workers[g] = len(zk.children(zk.paths.workers(g)))
        except (ValueError, KazooException):
            snap.live_workers[g] = 0
    dispatched = {r.id: r.worker_group for r in rows if r.state == TaskState.DISPATCHED}
    for g in groups:
        try:
            keys = sorted(zk.client.get_children(zk.paths.queue(g)))
        except NoNodeError:
            keys = []
        snap.queue_depth[g] = len(keys)
        if g in dispatched.values():
            for i, k in enumerate(keys, 1):
                tid = parse_key(k).task_instance_id
                if tid in dispatched:
                    snap.queue_position[tid] = i
    if snap.owner:
        owner, _, epoch = snap.owner.rpartition("@")
        try:
            snap.owner_alive = (owner, int(epoch)) in membership.live_masters(zk)
        except (ValueError, KazooException):
            snap.owner_alive = True  # cannot tell: say nothing about a failover


def snapshot(
    s: Session,
    zk: ZkClient | None,
    inst: WorkflowInstance,
    rows: list[TaskInstance],
    high_water: int,
) -> waiting.Snapshot:
    raw = s.execute(_SPEC, {"w": inst.workflow_id, "v": inst.version}).scalar_one_or_none()
    since = int((inst.run_options or {}).get("since_task_id") or 0)
    run = [r for r in rows if r.parent_id is None and r.id > since]
    owner = f"{inst.owner}@{inst.owner_epoch}" if inst.owner else None
    snap = waiting.Snapshot(
        instance_id=inst.id,
        state=inst.state,
        start_time=inst.start_time or inst.submit_time,
        owner=owner,
        tasks=_tasks(raw or {}),
        high_water=high_water,
        attempts=[
            waiting.AttemptFacts(
                r.id, r.name, r.attempt, r.state, r.submit_time, r.start_time, r.end_time, r.reason
            )
            for r in run
        ],
    )
    _zk_facts(zk, snap, run)
    names = sorted({t.task_group for t in snap.tasks if t.task_group})
    if names:
        flight = values(TASK_IN_FLIGHT)
        for g in s.execute(_GROUPS, {"names": names, "flight": flight}).all():
            snap.task_groups[g.name] = waiting.TaskGroupFacts(
                int(g.capacity), int(g.used), tuple(sorted(int(h) for h in g.holders or ()))
            )
    for r in run:
        if r.state == TaskState.SUBMITTED and snap.queue_depth.get(r.worker_group, 0) >= high_water:
            n = s.execute(
                _HELD,
                {
                    "submitted": TaskState.SUBMITTED.value,
                    "g": r.worker_group,
                    "wp": inst.priority,
                    "wid": inst.id,
                    "tp": r.priority,
                    "tid": r.id,
                },
            ).scalar_one()
            snap.held_position[r.id] = int(n) + 1
    if inst.state == WorkflowState.SERIAL_WAIT:
        active = values(WORKFLOW_ACTIVE)
        snap.serial_behind = s.execute(
            _BEHIND,
            {
                "w": inst.workflow_id,
                "id": inst.id,
                "active": active,
                "serial": WorkflowState.SERIAL_WAIT.value,
            },
        ).scalar_one_or_none()
    return snap


def explain(
    s: Session,
    zk: ZkClient | None,
    inst: WorkflowInstance,
    rows: list[TaskInstance],
    detail: Any,
    high_water: int,
) -> None:
    """Fill ``waiting_reason`` (and the older ``waiting`` sentence) on the detail's attempts, and
    list the tasks without an attempt in ``not_started``."""
    snap = snapshot(s, zk, inst, rows, high_water)
    found = waiting.reasons(snap, datetime.now(UTC))
    since = int((inst.run_options or {}).get("since_task_id") or 0)
    latest: dict[str, Any] = {}
    for t in detail.tasks:
        newer = t.name not in latest or t.attempt > latest[t.name].attempt
        if t.parent_id is None and t.id > since and newer:
            latest[t.name] = t
    for name, why in found.items():
        out = WaitingReasonOut(code=why.code, message=why.message, since=why.since)
        t = latest.get(name)
        if t is not None:
            t.waiting_reason, t.waiting = out, why.message
            continue
        spec = next(x for x in snap.tasks if x.name == name)
        detail.not_started.append(
            NotStartedOut(
                name=name, type=spec.type, worker_group=spec.worker_group, waiting_reason=out
            )
        )
