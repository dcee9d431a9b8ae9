"""Queries on workflow definitions and their immutable versions (create, new version, list, get,
soft delete), and the check that SQL/PROCEDURE tasks name existing datasources. Functions take a
session and never commit; they raise NotFound / Conflict / ValidationError."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, ValidationError
from core.spec import WorkflowSpec
from core.states import WORKFLOW_TERMINAL
from core.task_fields import DATASOURCE_TYPES
from db.models import Datasource, Schedule, WorkflowDefinition, WorkflowInstance, WorkflowVersion

TERMINAL_STATES = tuple(s.value for s in WORKFLOW_TERMINAL)
# Name of the partial unique index that keeps live workflow names unique.
NAME_INDEX = "uq_workflow_definition_name_live"


def spec_document(spec: WorkflowSpec) -> dict[str, Any]:
    """The JSON stored in workflow_version.spec: the normalized spec, type-specific fields kept."""
    return spec.model_dump(mode="json")


def _check_name_free(s: Session, name: str, except_id: int | None = None) -> None:
    q = select(WorkflowDefinition.id).where(
        WorkflowDefinition.name == name, WorkflowDefinition.deleted.is_(False)
    )
    if except_id is not None:
        q = q.where(WorkflowDefinition.id != except_id)
    other = s.scalar(q.limit(1))
    if other is not None:
        raise Conflict(
            f"a workflow named {name!r} already exists (id {other})",
            {"name": name, "workflow_id": other},
        )


def check_datasources(s: Session, spec: WorkflowSpec) -> None:
    """ValidationError naming each SQL/PROCEDURE task whose ``datasource`` does not exist (a
    name holding a ``${parameter}`` is resolved at run time and not checked here)."""
    wanted: dict[str, list[tuple[int, str]]] = {}
    for i, t in enumerate(spec.tasks):
        name = (t.model_extra or {}).get("datasource")
        if t.type in DATASOURCE_TYPES and isinstance(name, str) and "${" not in name:
            wanted.setdefault(name, []).append((i, t.name))
    if not wanted:
        return
    known = set(s.scalars(select(Datasource.name).where(Datasource.name.in_(list(wanted)))).all())
    missing = [(i, task, ds) for ds, uses in wanted.items() if ds not in known for i, task in uses]
    if missing:
        messages = [
            f"task '{task}': datasource: no datasource named {ds!r}"
            " (create it with POST /datasources first)"
            for _, task, ds in sorted(missing)
        ]
        problems = [
            {
                "code": "unknown_datasource",
                "message": m,
                "tasks": [t],
                "field": ["tasks", i, "datasource"],
            }
            for m, (i, t, _) in zip(messages, sorted(missing), strict=True)
        ]
        raise ValidationError("; ".join(messages), problems)


def create_workflow(s: Session, spec: WorkflowSpec) -> tuple[WorkflowDefinition, WorkflowVersion]:
    """Insert a definition and its version 1; Conflict if a live workflow has the same name,
    ValidationError if a task names a datasource that does not exist."""
    check_datasources(s, spec)
    _check_name_free(s, spec.name)
    definition = WorkflowDefinition(
        name=spec.name, description=spec.description, latest_version=1, deleted=False
    )
    s.add(definition)
    s.flush()
    version = WorkflowVersion(workflow_id=definition.id, version=1, spec=spec_document(spec))
    s.add(version)
    s.flush()
    s.refresh(definition)
    s.refresh(version)
    return definition, version


def get_definition(s: Session, workflow_id: int, *, lock: bool = False) -> WorkflowDefinition:
    """The live (not deleted) definition; ``lock`` takes FOR UPDATE on its row."""
    q = select(WorkflowDefinition).where(
        WorkflowDefinition.id == workflow_id, WorkflowDefinition.deleted.is_(False)
    )
    if lock:
        q = q.with_for_update()
    definition = s.scalar(q)
    if definition is None:
        raise NotFound(f"workflow {workflow_id} not found", {"workflow_id": workflow_id})
    return definition


def get_version(s: Session, workflow_id: int, version: int | None = None) -> WorkflowVersion:
    """Version ``version`` (default: the latest) of a live workflow."""
    definition = get_definition(s, workflow_id)
    n = definition.latest_version if version is None else version
    row = s.scalar(
        select(WorkflowVersion).where(
            WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == n
        )
    )
    if row is None:
        raise NotFound(
            f"workflow {workflow_id} has no version {n}", {"workflow_id": workflow_id, "version": n}
        )
    return row


def get_latest(s: Session, workflow_id: int) -> tuple[WorkflowDefinition, WorkflowVersion]:
    definition = get_definition(s, workflow_id)
    return definition, get_version(s, workflow_id, definition.latest_version)


def add_version(
    s: Session, workflow_id: int, spec: WorkflowSpec
) -> tuple[WorkflowDefinition, WorkflowVersion]:
    """Append an immutable version; the definition takes the new name and description."""
    definition = get_definition(s, workflow_id, lock=True)
    check_datasources(s, spec)
    if spec.name != definition.name:
        _check_name_free(s, spec.name, except_id=workflow_id)
    n = definition.latest_version + 1
    version = WorkflowVersion(workflow_id=workflow_id, version=n, spec=spec_document(spec))
    s.add(version)
    definition.latest_version = n
    definition.name = spec.name
    definition.description = spec.description
    definition.updated_at = func.now()
    s.flush()
    s.refresh(definition)
    s.refresh(version)
    return definition, version


def list_definitions(
    s: Session,
    limit: int = 50,
    offset: int = 0,
    name: str | None = None,
    projects: list[str] | None = None,
) -> tuple[list[WorkflowDefinition], int]:
    """Live definitions by id, with the total count; ``name`` filters by substring, ``projects``
    (None = all) by project."""
    cond: list[ColumnElement[bool]] = [WorkflowDefinition.deleted.is_(False)]
    if projects is not None:
        cond.append(WorkflowDefinition.project.in_(projects))
    if name:
        cond.append(WorkflowDefinition.name.contains(name, autoescape=True))
    total = s.scalar(select(func.count()).select_from(WorkflowDefinition).where(*cond)) or 0
    rows = s.scalars(
        select(WorkflowDefinition)
        .where(*cond)
        .order_by(WorkflowDefinition.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def list_versions(
    s: Session, workflow_id: int, limit: int = 100, offset: int = 0
) -> tuple[list[WorkflowVersion], int]:
    """Versions of a live workflow, newest first, with the total count."""
    get_definition(s, workflow_id)
    cond = WorkflowVersion.workflow_id == workflow_id
    total = s.scalar(select(func.count()).select_from(WorkflowVersion).where(cond)) or 0
    rows = s.scalars(
        select(WorkflowVersion)
        .where(cond)
        .order_by(WorkflowVersion.version.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def count_active_instances(s: Session, workflow_id: int) -> int:
    """Instances of the workflow that are not in a terminal state."""
    n = s.scalar(
        select(func.count())
        .select_from(WorkflowInstance)
        .where(
            WorkflowInstance.workflow_id == workflow_id,
            WorkflowInstance.state.not_in(TERMINAL_STATES),
        )
    )
    return int(n or 0)


def delete_workflow(s: Session, workflow_id: int) -> WorkflowDefinition:
    """Soft delete and disable its schedules; Conflict while an instance is not terminal."""
    definition = get_definition(s, workflow_id, lock=True)
    active = count_active_instances(s, workflow_id)
    if active:
        raise Conflict(
            f"workflow {workflow_id} has {active} instance(s) that are not finished; "
            "stop them or wait before deleting",
            {"workflow_id": workflow_id, "active_instances": active},
        )
    definition.deleted = True
    definition.updated_at = func.now()
    s.execute(
        update(Schedule)
        .where(Schedule.workflow_id == workflow_id, Schedule.enabled.is_(True))
        .values(enabled=False, next_fire_time=None, updated_at=func.now())
    )
    s.flush()
    s.refresh(definition)
    return definition
