"""/schedules (CRUD and preview), /cron/preview, /backfills (list, progress, stop), and the
backfill branch of POST /workflows/{id}/runs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from api.auth import Principal
from api.auth_define import same_project
from api.auth_scope import (
    authorize,
    backfill_target,
    body_workflow_target,
    read_scope,
    schedule_target,
)
from api.deps import ApiContext, get_ctx
from api.routers import ui_views
from api.schemas import ERROR_RESPONSES, MAX_ID, DbId, Limit, Offset, RunRequest
from api.schemas_schedules import (
    BackfillAccepted,
    BackfillOut,
    PreviewOut,
    ScheduleIn,
    ScheduleOut,
    SchedulePage,
    ScheduleUpdate,
)
from core import cron
from core.errors import ValidationError
from core.states import Priority
from db import backfill as q_backfill
from db import schedules as q_schedules

log = logging.getLogger(__name__)

router = APIRouter(responses=ERROR_RESPONSES)
Count = Annotated[int, Query(ge=1, le=1000, description="how many fire times")]

# API field name -> schedule column
_COLUMNS = {"start": "start_time", "end": "end_time"}
_READ_ONLY = ("id", "kind", "next_fire_time", "created_at", "updated_at")


def _in_zone(value: datetime | None, tz: str) -> datetime | None:
    """A time without an offset is read in the schedule's time zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=cron.zone(tz))


def _fields(body: ScheduleIn) -> q_schedules.ScheduleFields:
    return q_schedules.ScheduleFields(
        workflow_id=body.workflow_id,
        cron=body.cron,
        timezone=body.timezone,
        start_time=_in_zone(body.start, body.timezone),
        end_time=_in_zone(body.end, body.timezone),
        failure_strategy=body.failure_strategy,
        priority=int(Priority[body.priority]),
        worker_group=body.worker_group,
        misfire=body.misfire,
        enabled=body.enabled,
    )


def _never_fires(expr: str, tz: str, start: datetime | None, end: datetime | None) -> None:
    """422 naming ``end`` for an empty window, ``start`` out of range, ``cron`` when none fires."""
    cron.check_fires(expr, tz, datetime.now(UTC), start, end, field="cron")


@router.post(
    "/schedules",
    status_code=201,
    response_model=ScheduleOut,
    tags=["schedules"],
    dependencies=[Depends(authorize("define", body_workflow_target))],
)
def create_schedule(
    body: ScheduleIn, response: Response, ctx: ApiContext = Depends(get_ctx)
) -> ScheduleOut:
    """Create a schedule; its first fire is the first fire time after now inside [start, end]."""
    f = _fields(body)
    _never_fires(f.cron, f.timezone, f.start_time, f.end_time)
    with ctx.session_factory.begin() as s:
        out = ScheduleOut.from_row(q_schedules.create(s, f))
    log.info(
        "api: schedule %d for workflow %d created (%r %s, next fire %s)",
        out.id,
        out.workflow_id,
        out.cron,
        out.timezone,
        out.next_fire_time,
    )
    response.headers["Location"] = f"/api/v1/schedules/{out.id}"
    return out


@router.get("/schedules", response_model=SchedulePage, tags=["schedules"])
def list_schedules(
    workflow_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> SchedulePage:
    """Schedules of the caller's projects' workflows."""
    with ctx.session_factory.begin() as s:
        rows, total = q_schedules.list_schedules(
            s, workflow_id=workflow_id, limit=limit, offset=offset, projects=read_scope(me)
        )
        return SchedulePage(items=[ScheduleOut.from_row(r) for r in rows], total=total)


@router.get(
    "/schedules/{schedule_id}",
    response_model=ScheduleOut,
    tags=["schedules"],
    dependencies=[Depends(authorize("read", schedule_target))],
)
def get_schedule(schedule_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ScheduleOut:
    with ctx.session_factory.begin() as s:
        return ScheduleOut.from_row(q_schedules.get(s, schedule_id))


@router.put(
    "/schedules/{schedule_id}",
    response_model=ScheduleOut,
    tags=["schedules"],
    dependencies=[Depends(authorize("define", schedule_target))],
)
def update_schedule(
    schedule_id: DbId, body: ScheduleUpdate, ctx: ApiContext = Depends(get_ctx)
) -> ScheduleOut:
    """Change the given fields; a new cron, zone, window or enabling counts from now."""
    given = body.model_dump(exclude_unset=True, exclude=set(_READ_ONLY))
    with ctx.session_factory.begin() as s:
        current = q_schedules.get(s, schedule_id)
        if given.get("workflow_id") not in (None, current.workflow_id):
            same_project(s, current.workflow_id, given["workflow_id"])
        tz = given.get("timezone") or current.timezone
        changes: dict[str, Any] = {}
        for k, v in given.items():
            if k in ("start", "end"):
                v = _in_zone(v, tz)
            elif k == "priority" and v is not None:
                v = int(Priority[v])
            if v is None and k not in ("start", "end", "worker_group"):
                continue
            changes[_COLUMNS.get(k, k)] = v
        row = q_schedules.update(s, schedule_id, changes)
        if row.enabled and row.next_fire_time is None:
            _never_fires(row.cron, row.timezone, row.start_time, row.end_time)
        out = ScheduleOut.from_row(row)
    log.info("api: schedule %d updated (%s)", schedule_id, ", ".join(sorted(changes)) or "nothing")
    return out


@router.delete(
    "/schedules/{schedule_id}",
    status_code=204,
    response_class=Response,
    tags=["schedules"],
    dependencies=[Depends(authorize("define", schedule_target))],
)
def delete_schedule(schedule_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Response:
    """Delete the schedule; runs it already fired stay."""
    with ctx.session_factory.begin() as s:
        q_schedules.delete(s, schedule_id)
    log.info("api: schedule %d deleted", schedule_id)
    return Response(status_code=204)


def _preview(
    expr: str, tz: str, start: datetime | None, count: int, field: str | None = None
) -> PreviewOut:
    items = cron.preview(expr, tz, _in_zone(start, tz), count, field)
    return PreviewOut(expr=expr, kind=cron.parse(expr).kind, timezone=tz, items=items)  # type: ignore[arg-type]


@router.get(
    "/schedules/{schedule_id}/preview",
    response_model=PreviewOut,
    tags=["schedules"],
    dependencies=[Depends(authorize("read", schedule_target))],
)
def preview_schedule(
    schedule_id: DbId,
    count: Count = 10,
    ctx: ApiContext = Depends(get_ctx),
) -> PreviewOut:
    """The schedule's next fire times from its persisted next fire time (DST flags shown)."""
    with ctx.session_factory.begin() as s:
        r = q_schedules.get(s, schedule_id)
        expr, tz, nxt, end = r.cron, r.timezone, r.next_fire_time, r.end_time
    out = _preview(expr, tz, nxt or datetime.now(UTC), count)
    if end is not None:
        out.items = [i for i in out.items if datetime.fromisoformat(i.utc) <= end]
    return out


@router.get(
    "/cron/preview",
    response_model=PreviewOut,
    tags=["schedules"],
    dependencies=[Depends(authorize("read"))],
)
def preview_cron(
    expr: Annotated[str, Query(min_length=1, max_length=200, description="cron or Quartz")],
    timezone: Annotated[str, Query(max_length=64)] = "UTC",
    count: Count = 10,
    start: datetime | None = None,
) -> PreviewOut:
    """The next ``count`` fire times from ``start`` (default now), with DST gaps and repeats."""
    try:
        cron.parse(expr)
    except ValidationError as exc:
        raise ValidationError(f"expr: {exc.message}", exc.details) from None
    try:
        cron.zone(timezone)
    except ValidationError as exc:
        raise ValidationError(f"timezone: {exc.message}", exc.details) from None
    return _preview(expr, timezone, start, count, field="expr")


# -- backfill ------------------------------------------------------------------------------------


def submit_backfill(ctx: ApiContext, workflow_id: int, req: RunRequest) -> BackfillAccepted:
    """The backfill branch of POST /workflows/{id}/runs: store the dates, submit the first runs."""
    bf = req.backfill
    assert bf is not None
    options = req.run_options()
    options.pop("backfill", None)
    request = q_backfill.BackfillRequest(
        workflow_id=workflow_id,
        start=bf.start,
        end=bf.end,
        dates=bf.dates,
        mode=bf.mode,
        parallelism=bf.parallelism,
        order=str(getattr(bf, "order", "ASC")),
        params=req.string_params(),
        priority=Priority[req.priority] if req.priority else None,
        run_options=options,
    )
    with ctx.session_factory.begin() as s:
        row, first = q_backfill.create(s, request)
        backfill_id = row.id
        dates = len(q_backfill.progress(s, backfill_id)[1])
    log.info(
        "api: workflow %d: backfill %d of %d date(s) (%s, limit %d): first instances %s",
        workflow_id,
        backfill_id,
        dates,
        request.mode,
        row.parallelism,
        first,
    )
    return BackfillAccepted(
        instance_id=first[0], instance_ids=first, backfill_id=backfill_id, dates=dates
    )


@router.get("/backfills", response_model=ui_views.BackfillPage, tags=["backfills"])
def list_backfills(
    workflow_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> ui_views.BackfillPage:
    """Backfills of the caller's projects, newest first, with their progress (dates, submitted,
    finished, failed); each one's dates are at GET /backfills/{id}. As GET /ui/backfills."""
    return ui_views.backfill_page(
        workflow_id=workflow_id, limit=limit, offset=offset, me=me, ctx=ctx
    )


@router.get(
    "/backfills/{backfill_id}",
    response_model=BackfillOut,
    tags=["backfills"],
    dependencies=[Depends(authorize("read", backfill_target))],
)
def get_backfill(backfill_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> BackfillOut:
    """Progress: every date with its instance and state."""
    with ctx.session_factory.begin() as s:
        row, runs = q_backfill.progress(s, backfill_id)
        return BackfillOut.from_rows(row, runs, q_backfill.TERMINAL)


@router.post(
    "/backfills/{backfill_id}/stop",
    response_model=BackfillOut,
    tags=["backfills"],
    dependencies=[Depends(authorize("run", backfill_target))],
)
def stop_backfill(backfill_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> BackfillOut:
    """Submit no further dates; instances already submitted run on (stop them one by one)."""
    with ctx.session_factory.begin() as s:
        q_backfill.stop(s, backfill_id)
        row, runs = q_backfill.progress(s, backfill_id)
        out = BackfillOut.from_rows(row, runs, q_backfill.TERMINAL)
    log.info("api: backfill %d stopped", backfill_id)
    return out
