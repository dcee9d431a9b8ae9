"""Queries on schedules: CRUD with the persisted next fire time, the cron leader's due list and row
lock, and a fire (a SCHEDULER run submitted like any run, carrying its schedule time). Never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import cron
from core.errors import Conflict, NotFound, ValidationError
from core.states import CommandType, Priority, ReleaseState
from db import releases, runs
from db.models import Schedule, WorkflowDefinition

MISFIRE_POLICIES = ("FIRE_ALL", "FIRE_ONCE", "SKIP")
# Name of the partial unique index on workflow_instance (schedule_id, schedule_time).
FIRE_INDEX = "uq_wfi_schedule_fire"


@dataclass(frozen=True)
class ScheduleFields:
    """What a user sets on a schedule (already validated by the API schema)."""

    workflow_id: int
    cron: str
    timezone: str = "UTC"
    start_time: datetime | None = None
    end_time: datetime | None = None
    failure_strategy: str = "END"
    priority: int = int(Priority.MEDIUM)
    worker_group: str | None = None
    misfire: str = "FIRE_ONCE"
    enabled: bool = True


def check_fields(f: ScheduleFields) -> None:
    """ValidationError naming the field when the expression, zone or window is unusable."""
    try:
        cron.parse(f.cron)
    except ValidationError as exc:
        raise ValidationError(f"cron: {exc.message}", exc.details) from None
    try:
        cron.zone(f.timezone)
    except ValidationError as exc:
        raise ValidationError(f"timezone: {exc.message}", exc.details) from None
    if f.start_time and f.end_time and f.end_time <= f.start_time:
        raise ValidationError(
            "end: the end of the window must be after its start",
            [{"code": "invalid_window", "field": "end"}],
        )
    if f.misfire not in MISFIRE_POLICIES:
        raise ValidationError(f"misfire: must be one of {', '.join(MISFIRE_POLICIES)}")


def compute_next(row: Schedule, now: datetime) -> datetime | None:
    """The first fire after ``now`` inside the schedule's window (None when disabled or over)."""
    if not row.enabled:
        return None
    return cron.next_in_window(row.cron, row.timezone, now, row.start_time, row.end_time)


def _live_workflow(s: Session, workflow_id: int) -> None:
    found = s.scalar(
        select(WorkflowDefinition.id).where(
            WorkflowDefinition.id == workflow_id, WorkflowDefinition.deleted.is_(False)
        )
    )
    if found is None:
        raise NotFound(f"workflow {workflow_id} not found", {"workflow_id": workflow_id})


def create(s: Session, f: ScheduleFields, now: datetime | None = None) -> Schedule:
    check_fields(f)
    _live_workflow(s, f.workflow_id)
    row = Schedule(
        workflow_id=f.workflow_id,
        cron=" ".join(f.cron.split()),
        timezone=f.timezone,
        start_time=f.start_time,
        end_time=f.end_time,
        failure_strategy=f.failure_strategy,
        priority=f.priority,
        worker_group=f.worker_group,
        misfire=f.misfire,
        enabled=f.enabled,
    )
    row.next_fire_time = compute_next(row, now or datetime.now(UTC))
    s.add(row)
    s.flush()
    s.refresh(row)
    return row


def get(s: Session, schedule_id: int, *, lock: bool = False) -> Schedule:
    q = select(Schedule).where(Schedule.id == schedule_id)
    row = s.scalar(q.with_for_update() if lock else q)
    if row is None:
        raise NotFound(f"schedule {schedule_id} not found", {"schedule_id": schedule_id})
    return row


def update(
    s: Session, schedule_id: int, changes: dict[str, Any], now: datetime | None = None
) -> Schedule:
    """Apply ``changes`` (ScheduleFields names); the next fire is recomputed from now when the
    timing changed, so a re-enabled schedule does not catch up on its disabled time."""
    row = get(s, schedule_id, lock=True)
    merged = ScheduleFields(
        **{k: changes.get(k, getattr(row, k)) for k in ScheduleFields.__dataclass_fields__}
    )
    check_fields(merged)
    if merged.workflow_id != row.workflow_id:
        _live_workflow(s, merged.workflow_id)
    timing = ("cron", "timezone", "start_time", "end_time", "enabled")
    retime = any(k in changes and changes[k] != getattr(row, k) for k in timing)
    for k, v in changes.items():
        setattr(row, k, " ".join(v.split()) if k == "cron" else v)
    if retime or (row.enabled and row.next_fire_time is None):
        row.next_fire_time = compute_next(row, now or datetime.now(UTC))
    row.updated_at = func.now()
    s.flush()
    s.refresh(row)
    return row


def delete(s: Session, schedule_id: int) -> None:
    s.delete(get(s, schedule_id, lock=True))
    s.flush()


def list_schedules(
    s: Session,
    *,
    workflow_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
    projects: list[str] | None = None,
) -> tuple[list[Schedule], int]:
    """Schedules by id; ``projects`` (None = all): of those projects' workflows only."""
    cond: list[ColumnElement[bool]] = []
    if projects is not None:
        wf = select(WorkflowDefinition.id).where(WorkflowDefinition.project.in_(projects))
        cond.append(Schedule.workflow_id.in_(wf))
    if workflow_id is not None:
        cond.append(Schedule.workflow_id == workflow_id)
    total = s.scalar(select(func.count()).select_from(Schedule).where(*cond)) or 0
    rows = s.scalars(
        select(Schedule).where(*cond).order_by(Schedule.id).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)


def first_for_workflow(s: Session, workflow_id: int) -> Schedule | None:
    """The workflow's schedule that backfill dates follow: the oldest enabled one, else oldest."""
    return s.scalar(
        select(Schedule)
        .where(Schedule.workflow_id == workflow_id)
        .order_by(Schedule.enabled.desc(), Schedule.id)
        .limit(1)
    )


def due_ids(s: Session, now: datetime, limit: int) -> list[int]:
    """Enabled schedules of live, ONLINE workflows whose next fire time has come, most overdue
    first (an OFFLINE workflow's schedules wait; going ONLINE re-times them from now)."""
    rows = s.execute(
        text(
            "SELECT s.id FROM schedule s JOIN workflow_definition d ON d.id = s.workflow_id"
            " WHERE s.enabled AND NOT d.deleted AND s.next_fire_time <= :now"
            " AND d.release_state = :online"
            " ORDER BY s.next_fire_time, s.id LIMIT :n"
        ),
        {"now": now, "n": limit, "online": ReleaseState.ONLINE.value},
    ).all()
    return [int(r[0]) for r in rows]


def lock_due(s: Session, schedule_id: int, now: datetime) -> Schedule | None:
    """The schedule row locked FOR UPDATE if it is still enabled and due; else None."""
    row = s.scalar(select(Schedule).where(Schedule.id == schedule_id).with_for_update())
    if row is None or not row.enabled or row.next_fire_time is None or row.next_fire_time > now:
        return None
    return row


def fire(s: Session, row: Schedule, schedule_time: datetime) -> int | None:
    """Submit the run of one fire (SUBMITTED instance + SCHEDULER command, as the API submits
    runs); None when that fire time already has its instance (the unique index said so)."""
    options: dict[str, Any] = {"failure_strategy": row.failure_strategy}
    if row.worker_group:
        options["worker_group"] = row.worker_group
    try:
        with s.begin_nested():
            instance = runs.submit_run(
                s,
                row.workflow_id,
                priority=Priority(row.priority),
                run_options=options,
                command_type=CommandType.SCHEDULER,
            )
            instance.schedule_id = row.id
            instance.schedule_time = schedule_time
            s.flush()
            s.execute(
                text(
                    "UPDATE command SET schedule_id = :sid, schedule_time = :st"
                    " WHERE instance_id = :iid"
                ),
                {"sid": row.id, "st": schedule_time, "iid": instance.id},
            )
            return int(instance.id)
    except IntegrityError as exc:
        if FIRE_INDEX in str(exc.orig) or "uq_command_schedule_fire" in str(exc.orig):
            return None
        raise
    except Conflict as exc:  # the workflow went OFFLINE after due_ids: this fire waits
        if releases.is_offline_refusal(exc):
            return None
        raise
