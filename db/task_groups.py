"""Task groups: named concurrency limits shared across workflows. The rows hold only the limit;
slots in use are always counted from live attempts. Never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from core.states import TASK_IN_FLIGHT, values
from db.models import TaskGroup


@dataclass(frozen=True)
class GroupView:
    name: str
    capacity: int
    in_use: int
    description: str
    created_at: datetime
    updated_at: datetime
    project: str = "default"


def _in_use(s: Session, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    rows = s.execute(
        text(
            "SELECT task_group, count(*) FROM task_instance WHERE task_group = ANY(:g)"
            " AND state = ANY(:in_flight) GROUP BY task_group"
        ),
        {"g": names, "in_flight": values(TASK_IN_FLIGHT)},
    ).all()
    return {str(r[0]): int(r[1]) for r in rows}


def _view(g: TaskGroup, used: dict[str, int]) -> GroupView:
    return GroupView(
        g.name,
        g.capacity,
        used.get(g.name, 0),
        g.description,
        g.created_at,
        g.updated_at,
        g.project,
    )


def get(s: Session, name: str) -> GroupView:
    g = s.get(TaskGroup, name)
    if g is None:
        raise NotFound(f"task group {name!r} not found", {"name": name})
    return _view(g, _in_use(s, [name]))


def list_all(
    s: Session, limit: int, offset: int, projects: list[str] | None = None
) -> tuple[list[GroupView], int]:
    """Groups by name; ``projects`` (None = all) limits them to those projects'."""
    cond = [] if projects is None else [TaskGroup.project.in_(projects)]
    total = s.scalar(select(func.count()).select_from(TaskGroup).where(*cond)) or 0
    rows = list(
        s.scalars(
            select(TaskGroup).where(*cond).order_by(TaskGroup.name).limit(limit).offset(offset)
        )
    )
    used = _in_use(s, [g.name for g in rows])
    return [_view(g, used) for g in rows], int(total)


def create(
    s: Session, name: str, capacity: int, description: str, project: str = "default"
) -> GroupView:
    s.add(TaskGroup(name=name, capacity=capacity, description=description, project=project))
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(f"task group {name!r} already exists", {"name": name}) from None
    return get(s, name)


def update(s: Session, name: str, capacity: int | None, description: str | None) -> GroupView:
    g = s.get(TaskGroup, name, with_for_update=True)
    if g is None:
        raise NotFound(f"task group {name!r} not found", {"name": name})
    if capacity is not None:
        g.capacity = capacity
    if description is not None:
        g.description = description
    g.updated_at = func.now()  # type: ignore[assignment]
    s.flush()
    return get(s, name)


def delete(s: Session, name: str) -> None:
    g = s.get(TaskGroup, name, with_for_update=True)
    if g is None:
        raise NotFound(f"task group {name!r} not found", {"name": name})
    used = _in_use(s, [name]).get(name, 0)
    if used:
        raise Conflict(
            f"task group {name!r} has {used} live attempt(s); delete it when they end",
            {"name": name, "in_use": used},
        )
    s.delete(g)
