"""Export and import of workflow definitions: one JSON document per workflow with its versions
(all or one), release state and schedules, and its import with conflict handling (refuse,
import under another name, or append the versions to the workflow of that name). Never commits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import dolphin
from core.errors import Conflict, ValidationError
from core.spec import WorkflowSpec, parse_workflow_spec
from core.states import Priority, ReleaseState
from db import definitions, releases
from db import schedules as q_schedules
from db.models import Schedule, WorkflowDefinition, WorkflowVersion

FORMAT = "dagkeeper.workflow-export"
FORMAT_VERSION = 1
ON_CONFLICT = ("fail", "rename", "new_version")
SCHEDULE_FIELDS = ("cron", "timezone", "start", "end", "failure_strategy", "priority",
                   "worker_group", "misfire", "enabled")  # fmt: skip


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def schedule_document(r: Schedule) -> dict[str, Any]:
    return {
        "cron": r.cron,
        "timezone": r.timezone,
        "start": _iso(r.start_time),
        "end": _iso(r.end_time),
        "failure_strategy": r.failure_strategy,
        "priority": Priority(r.priority).name,
        "worker_group": r.worker_group,
        "misfire": r.misfire,
        "enabled": r.enabled,
    }


def export_document(s: Session, workflow_id: int, version: int | None = None) -> dict[str, Any]:
    """The workflow as one document: its versions (oldest first, or just ``version``), release
    state and schedules; ids and times of this cluster are left out."""
    d = definitions.get_definition(s, workflow_id)
    if version is not None:
        versions = [definitions.get_version(s, workflow_id, version)]
    else:
        versions = list(
            s.scalars(
                select(WorkflowVersion)
                .where(WorkflowVersion.workflow_id == workflow_id)
                .order_by(WorkflowVersion.version)
            )
        )
    rows = s.scalars(
        select(Schedule).where(Schedule.workflow_id == workflow_id).order_by(Schedule.id)
    )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": d.name,
        "description": d.description,
        "project": d.project,
        "release_state": d.release_state,
        "versions": [{"version": v.version, "spec": v.spec} for v in versions],
        "schedules": [schedule_document(r) for r in rows],
    }


@dataclass
class Imported:
    id: int
    name: str
    versions: list[int]
    action: str  # created or new_version
    schedules: list[int] = field(default_factory=list)


def parse_document(doc: Any) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]], str]:
    """(name, version specs oldest first, schedules, release state) of an export document;
    ValidationError naming the field otherwise."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValidationError(f"format: expected {FORMAT!r} (a dagkeeper export document)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValidationError(f"format_version: this server reads version {FORMAT_VERSION}")
    versions = doc.get("versions")
    if not isinstance(versions, list) or not versions:
        raise ValidationError("versions: must be a non-empty list of {version, spec}")
    specs = []
    for i, v in enumerate(versions):
        if not isinstance(v, dict) or not isinstance(v.get("spec"), dict):
            raise ValidationError(f"versions.{i}.spec: must be a workflow spec object")
        specs.append(dict(v["spec"]))
    sched = doc.get("schedules") or []
    if not isinstance(sched, list) or not all(isinstance(x, dict) for x in sched):
        raise ValidationError("schedules: must be a list of schedule objects")
    name = doc.get("name") or specs[-1].get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError("name: must be the workflow's name")
    state = releases.parse_state(doc.get("release_state") or ReleaseState.ONLINE.value)
    return name, specs, [dict(x) for x in sched], state.value


def _spec(raw: dict[str, Any], name: str, where: str) -> WorkflowSpec:
    try:
        return parse_workflow_spec({**raw, "name": name})
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc.message}", exc.details) from None


def _live_id(s: Session, name: str) -> int | None:
    return s.scalar(
        select(WorkflowDefinition.id).where(
            WorkflowDefinition.name == name, WorkflowDefinition.deleted.is_(False)
        )
    )


def _schedule_fields(
    workflow_id: int, raw: dict[str, Any], where: str
) -> q_schedules.ScheduleFields:
    unknown = sorted(set(raw) - set(SCHEDULE_FIELDS))
    if unknown or not isinstance(raw.get("cron"), str):
        raise ValidationError(f"{where}: needs cron; unknown field(s): {', '.join(unknown) or '-'}")

    def when(key: str) -> datetime | None:
        v = raw.get(key)
        try:
            return datetime.fromisoformat(v) if v else None
        except (TypeError, ValueError):
            raise ValidationError(f"{where}.{key}: not an ISO 8601 time: {v!r}") from None

    try:
        priority = int(Priority.parse(raw.get("priority") or "MEDIUM"))
    except (KeyError, ValueError):
        raise ValidationError(
            f"{where}.priority: unknown priority {raw.get('priority')!r}"
        ) from None
    return q_schedules.ScheduleFields(
        workflow_id=workflow_id,
        cron=raw["cron"],
        timezone=str(raw.get("timezone") or "UTC"),
        start_time=when("start"),
        end_time=when("end"),
        failure_strategy=str(raw.get("failure_strategy") or "END"),
        priority=priority,
        worker_group=raw.get("worker_group"),
        misfire=str(raw.get("misfire") or "FIRE_ONCE"),
        enabled=bool(raw.get("enabled", True)),
    )


def import_document(
    s: Session,
    doc: Any,
    *,
    on_conflict: str = "fail",
    rename: str | None = None,
    project: str | None = None,
    check: Callable[[Session, WorkflowSpec], None] | None = None,
) -> Imported:
    """Store an export document: a new workflow (its versions in order, release state,
    schedules) or, with ``on_conflict="new_version"``, new versions of the live workflow of that
    name (its schedules are added unless an equal one exists). ``rename`` imports under another
    name. Every spec is validated as on create."""
    if on_conflict not in ON_CONFLICT:
        raise ValidationError(f"on_conflict: must be one of {', '.join(ON_CONFLICT)}")
    name, raw_specs, raw_schedules, state = parse_document(doc)
    if on_conflict == "rename":
        if not rename:
            raise ValidationError("rename: give the name to import under")
        name = rename
    elif rename:
        raise ValidationError("rename: only with on_conflict=rename")
    specs = [_spec(r, name, f"versions.{i}.spec") for i, r in enumerate(raw_specs)]
    for spec in specs:
        if check is not None:
            check(s, spec)
    existing = _live_id(s, name)
    if existing is not None and on_conflict != "new_version":
        raise Conflict(
            f"a workflow named {name!r} already exists: import with on_conflict=rename"
            " (and rename=NEW_NAME) or on_conflict=new_version",
            {"name": name, "workflow_id": existing},
        )
    numbers: list[int] = []
    if existing is None:
        d, v = definitions.create_workflow(s, specs[0])
        if project:
            d.project = project
        numbers.append(v.version)
        rest, action = specs[1:], "created"
    else:
        d, rest, action = definitions.get_definition(s, existing, lock=True), specs, "new_version"
    for spec in rest:
        d, v = definitions.add_version(s, d.id, spec)
        numbers.append(v.version)
    if action == "created":
        releases.set_state(s, d, ReleaseState(state))
    current = {
        tuple(sorted(schedule_document(r).items()))
        for r in s.scalars(select(Schedule).where(Schedule.workflow_id == d.id))
    }
    made = []
    for i, raw in enumerate(raw_schedules):
        f = _schedule_fields(d.id, raw, f"schedules.{i}")
        row = q_schedules.create(s, f)
        if tuple(sorted(schedule_document(row).items())) in current:
            s.delete(row)  # an equal schedule is already there
            s.flush()
            continue
        made.append(int(row.id))
    s.flush()
    return Imported(int(d.id), d.name, numbers, action, made)


@dataclass
class DolphinImport:
    workflows: list[Imported]
    unmapped: list[str]


def import_dolphin(
    s: Session,
    doc: Any,
    *,
    on_conflict: str = "fail",
    rename: str | None = None,
    project: str | None = None,
    check: Callable[[Session, WorkflowSpec], None] | None = None,
) -> DolphinImport:
    """Store a DolphinScheduler 3.x export: every workflow in it (children of SUB_PROCESS tasks
    first, so their ids are known), its schedule and release state; what did not map is
    listed. ``rename`` needs an export of one workflow."""
    try:
        found = dolphin.convert(doc)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValidationError(f"DolphinScheduler export: {exc}") from None
    if rename and len(found) != 1:
        raise ValidationError("rename: the export holds several workflows; import without it")
    ids: dict[int, int] = {}
    done: list[Imported] = []
    pending = list(found)
    while pending:
        ready = [w for w in pending if all(c in ids for c in w.sub_refs.values())]
        if not ready:
            names = ", ".join(w.name for w in pending)
            raise ValidationError(
                f"DolphinScheduler export: SUB_PROCESS tasks form a cycle: {names}"
            )
        for w in ready:
            for t in w.spec["tasks"]:
                if t["name"] in w.sub_refs:
                    t["workflow_id"] = ids[w.sub_refs[t["name"]]]
            document = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "name": w.name,
                "release_state": w.release_state,
                "versions": [{"spec": w.spec}],
                "schedules": [w.schedule] if w.schedule else [],
            }
            try:
                result = import_document(
                    s,
                    document,
                    on_conflict=on_conflict,
                    rename=rename,
                    project=project,
                    check=check,
                )
            except ValidationError as exc:
                raise ValidationError(f"workflow {w.name!r}: {exc.message}", exc.details) from None
            ids[w.code] = result.id
            done.append(result)
            pending.remove(w)
    return DolphinImport(done, [n for w in found for n in w.notes])
