"""``dagkeeper doctor``'s report of tasks waiting longer than a threshold (``--waiting-over``),
each with its waiting reason (the same rules and snapshot as GET /instances/{id})."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from api.waiting import snapshot
from coord.zk import ZkClient
from core import waiting
from core.states import WORKFLOW_TERMINAL, values
from db.engine import SessionFactory
from db.models import TaskInstance, WorkflowInstance

MAX_INSTANCES = 500  # the oldest live instances looked at


@dataclass(frozen=True)
class WaitingTask:
    instance_id: int
    task: str
    code: str
    message: str
    waiting_s: float


def long_waits(
    sf: SessionFactory, zk: ZkClient | None, over_s: float, high_water: int
) -> list[WaitingTask]:
    """Tasks of live instances that have waited more than ``over_s`` seconds, longest first."""
    now = datetime.now(UTC)
    out: list[WaitingTask] = []
    with sf() as s:
        live = s.scalars(
            select(WorkflowInstance)
            .where(WorkflowInstance.state.not_in(values(WORKFLOW_TERMINAL)))
            .order_by(WorkflowInstance.id)
            .limit(MAX_INSTANCES)
        ).all()
        for inst in live:
            rows = list(
                s.scalars(select(TaskInstance).where(TaskInstance.workflow_instance_id == inst.id))
            )
            snap = snapshot(s, zk, inst, rows, high_water)
            for name, why in waiting.reasons(snap, now).items():
                since = why.since or inst.submit_time
                age = (now - since).total_seconds()
                if age > over_s:
                    out.append(WaitingTask(inst.id, name, why.code, why.message, round(age, 1)))
    return sorted(out, key=lambda w: -w.waiting_s)


def as_dicts(found: list[WaitingTask]) -> list[dict[str, object]]:
    return [asdict(w) for w in found]


def report(found: list[WaitingTask], over_s: float) -> str:
    if not found:
        return f"doctor: no task has waited longer than {over_s:g}s"
    lines = [f"doctor: {len(found)} task(s) waiting longer than {over_s:g}s"]
    for w in found[:100]:
        lines.append(
            f"  - instance {w.instance_id} task {w.task}: {w.code} for {w.waiting_s:.0f}s:"
            f" {w.message}"
        )
    if len(found) > 100:
        lines.append(f"  ... and {len(found) - 100} more")
    return "\n".join(lines)
