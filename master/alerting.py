"""The alert rows a master writes in the transaction that decided them: a run's end for the
workflow's alert group under its warning type (NONE / SUCCESS / FAILURE / ALL), naming the
failed tasks with their attempts, and a schedule's missed fires (the cron leader)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core import metrics
from core.states import TASK_SUCCESSFUL, TASK_TERMINAL, TaskState, WarningType, WorkflowState
from db import alert_outbox as q
from master.owned import OwnedInstance

W = WorkflowState
# which warning types mail which end of a run
WANTS: dict[WarningType, frozenset[WorkflowState]] = {
    WarningType.NONE: frozenset(),
    WarningType.SUCCESS: frozenset({W.SUCCESS}),
    WarningType.FAILURE: frozenset({W.FAILURE}),
    WarningType.ALL: frozenset({W.SUCCESS, W.FAILURE}),
}


def warning_type(alert_group: str | None, given: str | None) -> WarningType:
    """The effective warning type: as given, else FAILURE when a group is named, else NONE."""
    if given:
        return WarningType(str(given).upper())
    return WarningType.FAILURE if alert_group else WarningType.NONE


def failed_tasks(inst: OwnedInstance) -> list[dict[str, Any]]:
    """The latest attempt of each task that ended neither successfully nor skipped."""
    latest: dict[str, Any] = {}
    for r in (inst.attempts or {}).values():
        if r.parent_id is None and (r.name not in latest or r.attempt > latest[r.name].attempt):
            latest[r.name] = r
    bad = [
        r for r in latest.values()
        if r.state in TASK_TERMINAL and r.state not in TASK_SUCCESSFUL
        and r.state != TaskState.SKIPPED
    ]  # fmt: skip
    return [
        {"task": r.name, "task_instance_id": r.id, "attempt": r.attempt, "state": r.state}
        for r in sorted(bad, key=lambda r: r.id)
    ]


def instance_finished(s: Session, inst: OwnedInstance, state: WorkflowState, reason: str) -> None:
    """Count the transition; write the run's alert if its warning type asks for this end."""
    metrics.instance_entered(state.value)
    spec = inst.spec
    group = spec.alert_group
    if not group or state not in WANTS[warning_type(group, spec.warning_type)]:
        return
    iid = inst.row.id
    failed = failed_tasks(inst) if state != W.SUCCESS else []
    title = f"workflow {spec.name}: instance {iid} {state.value}"
    if failed:
        title += " (failed: " + ", ".join(t["task"] for t in failed[:5]) + ")"
    content = {
        "workflow": spec.name,
        "instance_id": iid,
        "state": state.value,
        "reason": reason,
        "start_time": inst.row.start_time.isoformat() if inst.row.start_time else None,
        "failed_tasks": failed,
    }
    kind = "WORKFLOW_SUCCESS" if state == W.SUCCESS else "WORKFLOW_FAILURE"
    q.add(s, kind, title, content, iid, group)


_MISSED = text(
    "INSERT INTO alert (kind, title, content, alert_group)"
    " SELECT 'SCHEDULE_MISSED', 'schedule ' || :sid || ' of workflow ' || d.name || ': '"
    " || :n || ' fire(s) missed', jsonb_build_object('schedule_id', :sid, 'workflow', d.name,"
    " 'missed', :n, 'fired', :fired, 'skipped', :skipped, 'policy', CAST(:policy AS text),"
    " 'newest_missed', CAST(:newest AS text)), v.spec ->> 'alert_group'"
    " FROM workflow_definition d JOIN workflow_version v ON v.workflow_id = d.id"
    " AND v.version = d.latest_version WHERE d.id = :wid"
)


def fires(
    s: Session,
    schedule_id: int,
    workflow_id: int,
    policy: str,
    missed: tuple[datetime, ...],
    missed_count: int,
    fresh: int,
    fired: int,
    skipped: int,
) -> None:
    """Count one schedule's fires (on time, late: fired past the misfire threshold, missed:
    skipped by its policy) and alert on missed ones."""
    metrics.cron_fire("late", fired - fresh)
    metrics.cron_fire("on_time", fresh)
    metrics.cron_fire("missed", skipped)
    if missed_count:
        s.execute(
            _MISSED,
            {
                "sid": schedule_id,
                "wid": workflow_id,
                "n": missed_count,
                "fired": fired,
                "skipped": skipped,
                "policy": policy,
                "newest": missed[-1].isoformat() if missed else None,
            },
        )
