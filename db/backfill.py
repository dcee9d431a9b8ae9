"""Queries on backfills: the dates of a request (the workflow's schedule, else daily), submitting
the next runs while fewer than the limit are unfinished, and progress. Never commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import cron
from core.errors import NotFound, ValidationError
from core.states import (
    WORKFLOW_TERMINAL,
    BackfillState,
    CommandType,
    Priority,
    ReleaseState,
    values,
)
from db import definitions, releases, runs
from db import schedules as q_schedules
from db.models import Backfill, BackfillRun

MAX_DATES = 10000
DAILY = "0 0 * * *"
B = BackfillState
TERMINAL = tuple(values(WORKFLOW_TERMINAL))


@dataclass(frozen=True)
class BackfillRequest:
    workflow_id: int
    start: datetime | None = None
    end: datetime | None = None
    dates: list[datetime] | None = None
    mode: str = "SERIAL"
    parallelism: int = 1
    order: str = "ASC"
    params: dict[str, str] = field(default_factory=dict)
    priority: Priority | None = None
    run_options: dict[str, Any] = field(default_factory=dict)


def _bad(message: str, code: str = "invalid_backfill") -> ValidationError:
    return ValidationError(f"backfill: {message}", [{"code": code, "message": message}])


def _aware(value: datetime, tz: str) -> datetime:
    return value.replace(tzinfo=cron.zone(tz)) if value.tzinfo is None else value


def plan_dates(req: BackfillRequest, cron_expr: str, tz: str) -> list[datetime]:
    """The schedule times of a request, in submission order (pure)."""
    if req.dates:
        times = sorted({_aware(d, tz).astimezone(UTC) for d in req.dates})
        if len(times) > MAX_DATES:
            raise _bad(f"at most {MAX_DATES} dates", "too_many_dates")
    elif req.start is not None and req.end is not None:
        start, end = _aware(req.start, tz), _aware(req.end, tz)
        if end < start:
            raise _bad("end is before start", "invalid_window")
        try:
            times = cron.fire_times(cron_expr, tz, start, end, MAX_DATES)
        except ValidationError as exc:
            raise _bad(exc.message, "too_many_dates") from None
        if not times:
            raise _bad(f"no fire time of {cron_expr!r} ({tz}) between start and end", "no_dates")
    else:
        raise _bad("give start and end, or a list of dates", "missing_dates")
    return times[::-1] if req.order == "DESC" else times


def create(s: Session, req: BackfillRequest) -> tuple[Backfill, list[int]]:
    """Store the backfill and its dates and submit the first runs; (row, first instance ids)."""
    d, v = definitions.get_latest(s, req.workflow_id)
    releases.check_online(d, "be backfilled")
    schedule = q_schedules.first_for_workflow(s, req.workflow_id)
    if schedule is not None:
        expr, tz = schedule.cron, schedule.timezone
    else:
        expr, tz = DAILY, str(v.spec.get("timezone") or "UTC")
    times = plan_dates(req, expr, tz)
    row = Backfill(
        workflow_id=d.id,
        mode=req.mode,
        parallelism=1 if req.mode == "SERIAL" else req.parallelism,
        sort_order=req.order,
        state=B.RUNNING.value,
        timezone=tz,
        cron=None if req.dates else expr,
        priority=None if req.priority is None else int(req.priority),
        params=dict(req.params),
        run_options=dict(req.run_options),
    )
    s.add(row)
    s.flush()
    s.add_all(BackfillRun(backfill_id=row.id, seq=i, schedule_time=t) for i, t in enumerate(times))
    s.flush()
    return row, submit_next(s, row)


def running_ids(s: Session, limit: int = 500) -> list[int]:
    rows = s.execute(
        text("SELECT id FROM backfill WHERE state = :running ORDER BY id LIMIT :n"),
        {"n": limit, "running": B.RUNNING.value},
    ).all()
    return [int(r[0]) for r in rows]


def lock(s: Session, backfill_id: int) -> Backfill | None:
    return s.scalar(select(Backfill).where(Backfill.id == backfill_id).with_for_update())


def active_count(s: Session, backfill_id: int) -> int:
    n = s.execute(
        text(
            "SELECT count(*) FROM backfill_run r JOIN workflow_instance i ON i.id = r.instance_id"
            " WHERE r.backfill_id = :b AND NOT (i.state = ANY(:terminal))"
        ),
        {"b": backfill_id, "terminal": list(TERMINAL)},
    ).scalar_one()
    return int(n)


def submit_next(s: Session, bf: Backfill) -> list[int]:
    """Submit the next dates while fewer than the limit are unfinished (caller holds the row
    lock); finish the backfill when every date's instance is terminal."""
    if bf.state != B.RUNNING:
        return []
    definition = definitions.get_definition(s, bf.workflow_id)
    if definition.deleted:
        bf.state, bf.end_time = B.STOPPED.value, datetime.now(UTC)
        return []
    if definition.release_state == ReleaseState.OFFLINE:  # no new dates until it is ONLINE
        return []
    active = active_count(s, bf.id)
    slots = bf.parallelism - active
    todo = []
    if slots > 0:
        todo = list(
            s.scalars(
                select(BackfillRun)
                .where(BackfillRun.backfill_id == bf.id, BackfillRun.instance_id.is_(None))
                .order_by(BackfillRun.seq)
                .limit(slots)
            ).all()
        )
    submitted: list[int] = []
    for r in todo:
        instance = runs.submit_run(
            s,
            bf.workflow_id,
            params=dict(bf.params),
            priority=None if bf.priority is None else Priority(bf.priority),
            run_options={**bf.run_options, "backfill_id": bf.id},
            command_type=CommandType.START_PROCESS,
        )
        instance.schedule_time = r.schedule_time
        r.instance_id, r.submitted_at = instance.id, datetime.now(UTC)
        submitted.append(int(instance.id))
    if submitted:
        bf.updated_at = datetime.now(UTC)
        s.flush()
    elif active == 0 and slots > 0:
        bf.state, bf.end_time = B.DONE.value, datetime.now(UTC)
        s.flush()
    return submitted


def stop(s: Session, backfill_id: int) -> Backfill:
    """No further dates are submitted; instances already submitted run on."""
    bf = lock(s, backfill_id)
    if bf is None:
        raise NotFound(f"backfill {backfill_id} not found", {"backfill_id": backfill_id})
    if bf.state == B.RUNNING:
        bf.state, bf.end_time = B.STOPPED.value, datetime.now(UTC)
        s.flush()
    return bf


def progress(s: Session, backfill_id: int) -> tuple[Backfill, list[tuple[Any, ...]]]:
    """The backfill row and (seq, schedule_time, instance_id, state) of each date."""
    bf = s.get(Backfill, backfill_id)
    if bf is None:
        raise NotFound(f"backfill {backfill_id} not found", {"backfill_id": backfill_id})
    rows = s.execute(
        text(
            "SELECT r.seq, r.schedule_time, r.instance_id, i.state FROM backfill_run r"
            " LEFT JOIN workflow_instance i ON i.id = r.instance_id"
            " WHERE r.backfill_id = :b ORDER BY r.seq"
        ),
        {"b": backfill_id},
    ).all()
    return bf, [tuple(r) for r in rows]
