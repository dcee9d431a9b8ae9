"""Projects and per-project grants, the project a resource belongs to (the API's scope checks),
and the OS users a task's project lets its SHELL tasks run as."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from db.models import (
    DEFAULT_PROJECT,
    Backfill,
    Datasource,
    Schedule,
    TaskGroup,
    TaskInstance,
    WorkflowDefinition,
    WorkflowInstance,
)
from db.models_auth import AppUser, Project, ProjectGrant

__all__ = ["DEFAULT_PROJECT"]


def get(s: Session, name: str) -> Project:
    row = s.scalar(select(Project).where(Project.name == name))
    if row is None:
        raise NotFound(f"project {name!r} not found", {"project": name})
    return row


def exists(s: Session, name: str) -> bool:
    return s.scalar(select(Project.id).where(Project.name == name)) is not None


def create(
    s: Session, name: str, description: str, run_as_user: str | None, os_users: list[str]
) -> Project:
    row = Project(name=name, description=description, run_as_user=run_as_user, os_users=os_users)
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(f"project {name!r} already exists", {"project": name}) from None
    s.refresh(row)
    return row


def list_page(
    s: Session, names: Sequence[str] | None, limit: int, offset: int
) -> tuple[list[Project], int]:
    """Projects by name; ``names`` (None = all) limits them to the caller's."""
    cond = [] if names is None else [Project.name.in_(list(names))]
    total = s.scalar(select(func.count()).select_from(Project).where(*cond)) or 0
    rows = s.scalars(
        select(Project).where(*cond).order_by(Project.name).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)


# -- grants ---------------------------------------------------------------------------------------


def grants_of(s: Session, user_id: int) -> dict[str, str]:
    """project name -> role of the user's grants."""
    rows = s.execute(
        select(ProjectGrant.project, ProjectGrant.role).where(ProjectGrant.user_id == user_id)
    ).all()
    return {str(r[0]): str(r[1]) for r in rows}


def grants_on(s: Session, project: str) -> list[tuple[AppUser, str]]:
    rows = s.execute(
        select(AppUser, ProjectGrant.role)
        .join(ProjectGrant, ProjectGrant.user_id == AppUser.id)
        .where(ProjectGrant.project == project)
        .order_by(AppUser.name)
    ).all()
    return [(r[0], str(r[1])) for r in rows]


def put_grant(s: Session, project: str, user_id: int, role: str) -> None:
    """Grant (or change) ``role`` on ``project``; one row per (project, user)."""
    s.execute(
        text(
            "INSERT INTO project_grant (project, user_id, role) VALUES (:p, :u, :r)"
            " ON CONFLICT (project, user_id) DO UPDATE SET role = EXCLUDED.role"
        ),
        {"p": project, "u": user_id, "r": role},
    )


def delete_grant(s: Session, project: str, user_id: int) -> bool:
    res = s.execute(
        text("DELETE FROM project_grant WHERE project = :p AND user_id = :u"),
        {"p": project, "u": user_id},
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


# -- the project of a resource (None: no such resource) -------------------------------------------


def of_workflow(s: Session, workflow_id: int, *, deleted_too: bool = False) -> str | None:
    q = select(WorkflowDefinition.project).where(WorkflowDefinition.id == workflow_id)
    if not deleted_too:
        q = q.where(WorkflowDefinition.deleted.is_(False))
    return s.scalar(q)


def of_instance(s: Session, instance_id: int) -> str | None:
    return s.scalar(
        select(WorkflowDefinition.project)
        .join(WorkflowInstance, WorkflowInstance.workflow_id == WorkflowDefinition.id)
        .where(WorkflowInstance.id == instance_id)
    )


def of_task_instance(s: Session, task_instance_id: int) -> str | None:
    return s.scalar(
        select(WorkflowDefinition.project)
        .join(WorkflowInstance, WorkflowInstance.workflow_id == WorkflowDefinition.id)
        .join(TaskInstance, TaskInstance.workflow_instance_id == WorkflowInstance.id)
        .where(TaskInstance.id == task_instance_id)
    )


def of_schedule(s: Session, schedule_id: int) -> str | None:
    return s.scalar(
        select(WorkflowDefinition.project)
        .join(Schedule, Schedule.workflow_id == WorkflowDefinition.id)
        .where(Schedule.id == schedule_id)
    )


def of_backfill(s: Session, backfill_id: int) -> str | None:
    return s.scalar(
        select(WorkflowDefinition.project)
        .join(Backfill, Backfill.workflow_id == WorkflowDefinition.id)
        .where(Backfill.id == backfill_id)
    )


def of_datasource(s: Session, datasource_id: int) -> str | None:
    return s.scalar(select(Datasource.project).where(Datasource.id == datasource_id))


def of_datasource_name(s: Session, name: str) -> str | None:
    return s.scalar(select(Datasource.project).where(Datasource.name == name))


def of_task_group(s: Session, name: str) -> str | None:
    return s.scalar(select(TaskGroup.project).where(TaskGroup.name == name))


# -- tenancy --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """The OS users a workflow's project grants its SHELL tasks: ``default`` (None = the
    worker's own user) and every user a task may choose."""

    project: str
    default: str | None
    allowed: tuple[str, ...]


def _run_as(row: Any) -> RunAs:
    users = tuple(str(u) for u in (row[2] or []))
    default = str(row[1]) if row[1] else None
    allowed = users if default is None or default in users else (default, *users)
    return RunAs(str(row[0]), default, allowed)


def run_as_of_workflow(s: Session | Connection, workflow_id: int) -> RunAs | None:
    """The OS users of the project of a workflow (deleted ones too: their runs go on)."""
    row = s.execute(
        select(Project.name, Project.run_as_user, Project.os_users)
        .join(WorkflowDefinition, WorkflowDefinition.project == Project.name)
        .where(WorkflowDefinition.id == workflow_id)
    ).first()
    return None if row is None else _run_as(row)


def run_as_of_project(s: Session, project: str) -> RunAs:
    row = s.execute(
        select(Project.name, Project.run_as_user, Project.os_users).where(Project.name == project)
    ).first()
    return RunAs(project, None, ()) if row is None else _run_as(row)
