"""Project rules of a workflow definition: the ``project`` field of a written workflow (default
"default"; it never changes after the create), the datasources its SQL/PROCEDURE tasks name (its
own project's only), the task groups they join (likewise), and the OS users its SHELL tasks may choose with ``run_as``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.errors import NotFound, ValidationError
from core.spec import WorkflowSpec
from db import projects as q
from db.models import DEFAULT_PROJECT

DATASOURCE_TYPES = ("SQL", "PROCEDURE")


def take_project(body: dict[str, Any], current: str | None = None) -> str:
    """Pop ``project`` from a workflow body; on a new version it must be the current one."""
    name = body.pop("project", current or DEFAULT_PROJECT)
    if current is not None and name != current:
        raise ValidationError(
            f"project: a workflow stays in its project ({current!r}); create it anew in {name!r}",
            [{"loc": ["body", "project"], "message": "cannot change", "type": "immutable"}],
        )
    return str(name)


def check_definition(s: Session, project: str, spec: WorkflowSpec) -> None:
    """422 naming each task that reaches outside its project: a datasource of another project
    (shown as missing, as the other project is), a ``run_as`` user the project is not granted."""
    problems: list[dict[str, Any]] = []
    run_as = q.run_as_of_project(s, project)
    for i, t in enumerate(spec.tasks):
        extra = t.model_extra or {}
        ds = extra.get("datasource")
        if t.type in DATASOURCE_TYPES and isinstance(ds, str) and "${" not in ds:
            owner = q.of_datasource_name(s, ds)
            if owner is not None and owner != project:
                problems.append(
                    {
                        "code": "unknown_datasource",
                        "message": f"task '{t.name}': datasource: no datasource named {ds!r} "
                        f"in project {project!r}",
                        "tasks": [t.name],
                        "field": ["tasks", i, "datasource"],
                    }
                )
        group = t.task_group
        if group and (owner := q.of_task_group(s, group)) is not None and owner != project:
            problems.append(
                {
                    "code": "unknown_task_group",
                    "message": f"task '{t.name}': task_group: no task group named {group!r} "
                    f"in project {project!r}",
                    "tasks": [t.name],
                    "field": ["tasks", i, "task_group"],
                }
            )
        user = extra.get("run_as")
        if user is not None and (not isinstance(user, str) or user not in run_as.allowed):
            granted = ", ".join(run_as.allowed) or "none"
            problems.append(
                {
                    "code": "run_as_not_granted",
                    "message": f"task '{t.name}': run_as: OS user {user!r} is not granted to "
                    f"project {project!r} (granted: {granted})",
                    "tasks": [t.name],
                    "field": ["tasks", i, "run_as"],
                }
            )
    if problems:
        raise ValidationError("; ".join(p["message"] for p in problems), problems)


def same_project(s: Session, current_workflow: int, new_workflow: int) -> None:
    """A schedule moved to another workflow stays in its project: 404 (the other workflow is
    not shown to exist) when the new one is of another project."""
    here = q.of_workflow(s, current_workflow, deleted_too=True)
    there = q.of_workflow(s, new_workflow)
    if there is None or there != here:
        raise NotFound(f"workflow {new_workflow} not found", {"workflow_id": new_workflow})
