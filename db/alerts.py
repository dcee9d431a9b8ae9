"""Reading alert rows (what masters and workers recorded: timeouts, failovers, commands not
carried out), newest first with filters. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from db.models import Alert, WorkflowDefinition, WorkflowInstance


def list_page(
    s: Session,
    *,
    kind: str | None = None,
    instance_id: int | None = None,
    since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    projects: Sequence[str] | None = None,
) -> tuple[list[Alert], int]:
    """Alerts newest first, with the total count matching the filters; ``projects`` (None =
    all) keeps the alerts of instances of those projects' workflows (an alert about no
    instance, as a master failover, is the cluster's: shown with all projects only)."""
    cond: list[ColumnElement[bool]] = []
    if projects is not None:
        of_projects = (
            select(WorkflowInstance.id)
            .join(WorkflowDefinition, WorkflowDefinition.id == WorkflowInstance.workflow_id)
            .where(WorkflowDefinition.project.in_(list(projects)))
        )
        cond.append(Alert.workflow_instance_id.in_(of_projects))
    if kind:
        cond.append(Alert.kind == kind)
    if instance_id is not None:
        cond.append(Alert.workflow_instance_id == instance_id)
    if since is not None:
        cond.append(Alert.created_at >= since)
    total = s.scalar(select(func.count()).select_from(Alert).where(*cond)) or 0
    rows = s.scalars(
        select(Alert).where(*cond).order_by(Alert.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)
