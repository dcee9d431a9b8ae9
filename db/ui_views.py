"""Read queries behind the web UI's pages: instances paged by keyset (id) with a capped count,
the last runs of many workflows in one statement, and backfills with their progress. Every
query reads a bounded number of index entries, however many instances the table holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, text, tuple_
from sqlalchemy.orm import Session

from core.states import WORKFLOW_TERMINAL, WorkflowState, values
from db.models import Backfill, WorkflowDefinition, WorkflowInstance

# a count stops here: "10000+" says enough and costs a bounded index read
COUNT_CAP = 10_000


@dataclass(frozen=True)
class InstanceFilter:
    workflow_id: int | None = None
    states: Sequence[str] | None = None
    since: datetime | None = None  # submit_time >= since
    until: datetime | None = None  # submit_time < until
    projects: Sequence[str] | None = None  # of these projects' workflows (None = all)


def _conditions(f: InstanceFilter) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if f.workflow_id is not None:
        cond.append(WorkflowInstance.workflow_id == f.workflow_id)
    if f.states:
        cond.append(WorkflowInstance.state.in_(list(f.states)))
    if f.since is not None:
        cond.append(WorkflowInstance.submit_time >= f.since)
    if f.until is not None:
        cond.append(WorkflowInstance.submit_time < f.until)
    if f.projects is not None:
        wf = select(WorkflowDefinition.id).where(WorkflowDefinition.project.in_(list(f.projects)))
        cond.append(WorkflowInstance.workflow_id.in_(wf))
    return cond


def page_query(f: InstanceFilter, *, before_id: int | None, limit: int) -> Select[Any]:
    """The statement of one page: ``limit + 1`` rows (one more tells whether older ones exist).

    Newest first by id; with a time range, by (submit_time, id) instead, so that the page reads
    the range from ix_wfi_submit_time rather than every id newer than the range. The cursor is
    the last row's id either way."""
    wi = WorkflowInstance
    cond = _conditions(f)
    if f.since is None and f.until is None:
        if before_id is not None:
            cond.append(wi.id < before_id)
        return select(wi).where(*cond).order_by(wi.id.desc()).limit(limit + 1)
    if before_id is not None:
        at = select(wi.submit_time).where(wi.id == before_id).scalar_subquery()
        cond.append(tuple_(wi.submit_time, wi.id) < tuple_(at, before_id))
    return select(wi).where(*cond).order_by(wi.submit_time.desc(), wi.id.desc()).limit(limit + 1)


def instance_page(
    s: Session, f: InstanceFilter, *, before_id: int | None, limit: int
) -> tuple[list[WorkflowInstance], bool]:
    """Up to ``limit`` instances with ``id < before_id``, newest first, and whether older ones
    match too (the next page's cursor is the last id)."""
    rows = list(s.scalars(page_query(f, before_id=before_id, limit=limit)).all())
    return rows[:limit], len(rows) > limit


def count_query(f: InstanceFilter, cap: int = COUNT_CAP) -> Select[Any]:
    inner = select(WorkflowInstance.id).where(*_conditions(f)).limit(cap + 1).subquery()
    return select(func.count()).select_from(inner)


def count_capped(s: Session, f: InstanceFilter, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many instances match, counting at most ``cap + 1``: (count, exact)."""
    n = int(s.scalar(count_query(f, cap)) or 0)
    return (min(n, cap), n <= cap)


@dataclass(frozen=True)
class RunDot:
    id: int
    state: str
    submit_time: datetime
    start_time: datetime | None
    end_time: datetime | None


def last_runs(s: Session, workflow_ids: Sequence[int], per: int) -> dict[int, list[RunDot]]:
    """The newest ``per`` instances of each workflow (one index range per workflow)."""
    ids = sorted(set(workflow_ids))
    if not ids:
        return {}
    rows = s.execute(
        text(
            "SELECT w.id, r.id, r.state, r.submit_time, r.start_time, r.end_time"
            " FROM unnest(CAST(:ids AS bigint[])) AS w(id)"
            " CROSS JOIN LATERAL (SELECT i.id, i.state, i.submit_time, i.start_time, i.end_time"
            "   FROM workflow_instance i WHERE i.workflow_id = w.id"
            "   ORDER BY i.id DESC LIMIT :per) r"
            " ORDER BY w.id, r.id DESC"
        ),
        {"ids": ids, "per": per},
    ).all()
    out: dict[int, list[RunDot]] = {i: [] for i in ids}
    for r in rows:
        out[int(r[0])].append(RunDot(int(r[1]), str(r[2]), r[3], r[4], r[5]))
    return out


@dataclass(frozen=True)
class BackfillProgress:
    row: Backfill
    total: int
    submitted: int
    finished: int
    failed: int


def backfills(
    s: Session,
    *,
    workflow_id: int | None,
    limit: int,
    offset: int,
    projects: Sequence[str] | None = None,
) -> tuple[list[BackfillProgress], int]:
    """Backfills newest first, each with its date count, submitted and finished dates
    (``projects``: of those projects' workflows only; None = all)."""
    cond: list[ColumnElement[bool]] = []
    if workflow_id is not None:
        cond.append(Backfill.workflow_id == workflow_id)
    if projects is not None:
        wf = select(WorkflowDefinition.id).where(WorkflowDefinition.project.in_(list(projects)))
        cond.append(Backfill.workflow_id.in_(wf))
    total = int(s.scalar(select(func.count()).select_from(Backfill).where(*cond)) or 0)
    rows = list(
        s.scalars(
            select(Backfill).where(*cond).order_by(Backfill.id.desc()).limit(limit).offset(offset)
        ).all()
    )
    if not rows:
        return [], total
    counts = s.execute(
        text(
            "SELECT r.backfill_id, count(*), count(r.instance_id),"
            " count(*) FILTER (WHERE i.state = ANY(:terminal)),"
            " count(*) FILTER (WHERE i.state = ANY(:failed))"
            " FROM backfill_run r LEFT JOIN workflow_instance i ON i.id = r.instance_id"
            " WHERE r.backfill_id = ANY(:ids) GROUP BY r.backfill_id"
        ),
        {
            "ids": [b.id for b in rows],
            "terminal": values(WORKFLOW_TERMINAL),
            "failed": values(WORKFLOW_TERMINAL - {WorkflowState.SUCCESS}),
        },
    ).all()
    by_id: dict[int, tuple[Any, ...]] = {int(c[0]): tuple(c) for c in counts}
    out = []
    for b in rows:
        c = by_id.get(b.id, (b.id, 0, 0, 0, 0))
        out.append(BackfillProgress(b, int(c[1]), int(c[2]), int(c[3]), int(c[4])))
    return out, total
