"""/ui: read views shaped for the web UI's pages (any client may use them): workflows with their
last runs, instances paged by keyset with filters and a capped count, one instance with the
actions its state allows (and the refusal reasons), and backfills with their progress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api import ui_actions
from api.auth import Principal
from api.auth_scope import Target, authorize, instance_target, read_scope
from api.deps import ApiContext, get_ctx
from api.routers.instances import get_instance, parse_states
from api.schemas import ERROR_RESPONSES, MAX_ID, DbId, Limit, Offset, Timestamp, WorkflowSummary
from api.schemas_instances import InstanceDetail, InstanceSummary
from core.errors import ValidationError
from core.roles import Action, decide
from db import definitions, runs
from db import ui_views as q

router = APIRouter(prefix="/ui", tags=["ui views"], responses=ERROR_RESPONSES)


# -- workflows ------------------------------------------------------------------------------------


class RunDotOut(BaseModel):
    id: int
    state: str
    submit_time: Timestamp
    start_time: Timestamp | None
    end_time: Timestamp | None


class WorkflowWithRuns(WorkflowSummary):
    last_runs: list[RunDotOut]


class WorkflowRunsPage(BaseModel):
    items: list[WorkflowWithRuns]
    total: int


@router.get("/workflows", response_model=WorkflowRunsPage)
def workflows_with_runs(
    limit: Limit = 50,
    offset: Offset = 0,
    name: str | None = None,
    runs_per: Annotated[int, Query(alias="runs", ge=0, le=50)] = 10,
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> WorkflowRunsPage:
    """Live workflows of the caller's projects by id (``name`` filters by substring), each with
    its newest runs."""
    with ctx.session_factory.begin() as s:
        rows, total = definitions.list_definitions(
            s, limit=limit, offset=offset, name=name, projects=read_scope(me)
        )
        dots = q.last_runs(s, [d.id for d in rows], runs_per) if runs_per else {}
        items = [
            WorkflowWithRuns(
                **WorkflowSummary.from_row(d).model_dump(),
                last_runs=[RunDotOut(**vars(r)) for r in dots.get(d.id, [])],
            )
            for d in rows
        ]
    return WorkflowRunsPage(items=items, total=total)


# -- instances ------------------------------------------------------------------------------------


class InstanceKeysetPage(BaseModel):
    """``next_before_id``: pass it as ``before_id`` for the next (older) page; None at the end.
    ``total`` counts at most ``COUNT_CAP`` rows; ``total_exact`` says whether it is exact."""

    items: list[InstanceSummary]
    total: int
    total_exact: bool
    next_before_id: int | None


@router.get("/instances", response_model=InstanceKeysetPage)
def instance_page(
    workflow_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    state: Annotated[list[str] | None, Query(description="state name(s), comma list")] = None,
    since: Annotated[datetime | None, Query(description="submitted at or after")] = None,
    until: Annotated[datetime | None, Query(description="submitted before")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="page cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> InstanceKeysetPage:
    """Instances newest first, filtered by workflow, state and submit-time range, one page
    at a time by id (an index range, never an offset scan)."""
    for field, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(
                f"{field}: give a time with an offset (e.g. 2026-01-31T00:00:00Z)",
                [{"loc": ["query", field], "message": "time without an offset"}],
            )
    if since is not None and until is not None and until <= since:
        raise ValidationError(
            "until: must be after since",
            [{"loc": ["query", "until"], "message": "until is not after since"}],
        )
    f = q.InstanceFilter(
        workflow_id=workflow_id,
        states=parse_states(state),
        since=since,
        until=until,
        projects=read_scope(me),
    )
    with ctx.session_factory.begin() as s:
        rows, more = q.instance_page(s, f, before_id=before_id, limit=limit)
        total, exact = q.count_capped(s, f)
        names = runs.workflow_names(s, (i.workflow_id for i in rows))
        items = [InstanceSummary.from_row(i, names.get(i.workflow_id)) for i in rows]
    return InstanceKeysetPage(
        items=items,
        total=total,
        total_exact=exact,
        next_before_id=rows[-1].id if more and rows else None,
    )


class AllowedOut(BaseModel):
    allowed: bool
    reason: str | None = None


class InstanceView(BaseModel):
    """The instance as GET /instances/{id} answers it, and what each control request would do:
    ``actions`` by request name, ``task_actions`` by task instance id."""

    instance: InstanceDetail
    actions: dict[str, AllowedOut]
    task_actions: dict[int, dict[str, AllowedOut]]


def _allowed(a: ui_actions.Allowed) -> AllowedOut:
    return AllowedOut(allowed=a.allowed, reason=a.reason)


@router.get("/instances/{instance_id}", response_model=InstanceView)
def instance_view(
    instance_id: DbId,
    ctx: ApiContext = Depends(get_ctx),
    me: Principal = Depends(authorize("read", instance_target)),
    target: Target = Depends(instance_target),
) -> InstanceView:
    """One instance with every attempt and the actions its state and the caller's role allow
    (refusals with the reason the request itself would answer: its 409 or its 403)."""
    detail = get_instance(instance_id, ctx)
    waiting_cmd = getattr(detail, "pending_command", None)
    pending = (
        ui_actions.Pending(int(waiting_cmd.id), str(waiting_cmd.action)) if waiting_cmd else None
    )
    actions = ui_actions.instance_actions(detail.id, detail.state, pending)
    refs = [ui_actions.AttemptRef(t.id, t.name, t.state, t.attempt) for t in detail.tasks]
    per_task = ui_actions.task_actions(refs)
    # every control request (the instance's and its tasks') needs the run grant on the project
    verdict = decide(me.role, me.grants, target.project, Action.RUN)
    if verdict.status == 403:
        actions = ui_actions.forbid_all(actions, verdict.reason)
        per_task = {tid: ui_actions.forbid_all(a, verdict.reason) for tid, a in per_task.items()}
    return InstanceView(
        instance=detail,
        actions={k: _allowed(v) for k, v in actions.items()},
        task_actions={
            tid: {k: _allowed(v) for k, v in acts.items()} for tid, acts in per_task.items()
        },
    )


# -- backfills ------------------------------------------------------------------------------------


class BackfillSummary(BaseModel):
    id: int
    workflow_id: int
    workflow_name: str | None
    mode: str
    parallelism: int
    state: str
    cron: str | None
    timezone: str
    total: int
    submitted: int
    finished: int
    failed: int
    created_at: Timestamp
    end_time: Timestamp | None


class BackfillPage(BaseModel):
    items: list[BackfillSummary]
    total: int


@router.get("/backfills", response_model=BackfillPage)
def backfill_page(
    workflow_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 20,
    offset: Offset = 0,
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> BackfillPage:
    """Backfills newest first with their progress (dates, submitted, finished, failed); each
    one's dates are at GET /backfills/{id}."""
    with ctx.session_factory.begin() as s:
        rows, total = q.backfills(
            s, workflow_id=workflow_id, limit=limit, offset=offset, projects=read_scope(me)
        )
        names = runs.workflow_names(s, (p.row.workflow_id for p in rows))
        items = [
            BackfillSummary(
                id=p.row.id,
                workflow_id=p.row.workflow_id,
                workflow_name=names.get(p.row.workflow_id),
                mode=p.row.mode,
                parallelism=p.row.parallelism,
                state=p.row.state,
                cron=p.row.cron,
                timezone=p.row.timezone,
                total=p.total,
                submitted=p.submitted,
                finished=p.finished,
                failed=p.failed,
                created_at=p.row.created_at,
                end_time=p.row.end_time,
            )
            for p in rows
        ]
    return BackfillPage(items=items, total=total)
