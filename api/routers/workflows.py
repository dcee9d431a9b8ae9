"""/workflows: create, list, read (latest or a given version), new version, soft delete, run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Body, Depends, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from api.auth import Principal
from api.auth_define import check_definition, take_project
from api.auth_scope import authorize, body_project_target, read_scope, workflow_target
from api.deps import ApiContext, get_ctx
from api.routers import schedules
from api.schemas import (
    ERROR_RESPONSES,
    DbId,
    Limit,
    Offset,
    RunAccepted,
    RunRequest,
    VersionPage,
    VersionSummary,
    WorkflowDetail,
    WorkflowPage,
    WorkflowSummary,
    check_run_params,
)
from core.errors import Conflict, ValidationError
from core.spec import WorkflowSpec, parse_workflow_spec
from core.states import Priority
from db import definitions, runs
from db import projects as q_projects

log = logging.getLogger(__name__)

router = APIRouter(prefix="/workflows", tags=["workflows"], responses=ERROR_RESPONSES)

# Fields of a GET answer that a PUT may carry back unchanged (they are not part of the spec).
READ_ONLY_FIELDS = ("version", "latest_version", "created_at", "updated_at", "version_created_at")


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def _spec_body_doc() -> dict[str, Any]:
    """OpenAPI request body of a workflow spec (validated by parse_workflow_spec, not FastAPI,
    so that every problem is reported with the names of the offending tasks)."""
    schema = WorkflowSpec.model_json_schema()
    inlined = _inline_refs(schema, schema.get("$defs", {}))
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inlined}},
        }
    }


SPEC_DOC = _spec_body_doc()
SpecBody = Body(..., description="a workflow spec")


@contextmanager
def _name_conflicts(name: str) -> Iterator[None]:
    """A concurrent create/rename that won the unique index race becomes a 409."""
    try:
        yield
    except IntegrityError as exc:
        if definitions.NAME_INDEX in str(exc.orig):
            raise Conflict(f"a workflow named {name!r} already exists", {"name": name}) from None
        raise


def _parse(body: dict[str, Any], ctx: ApiContext) -> WorkflowSpec:
    """On write: unknown task fields and parameter values over the limit are refused too."""
    return parse_workflow_spec(body, strict=True, max_param_bytes=ctx.settings.api.max_param_bytes)


def _parse_for_put(body: dict[str, Any], workflow_id: int, ctx: ApiContext) -> WorkflowSpec:
    raw = dict(body)
    given = raw.pop("id", workflow_id)
    if given != workflow_id:
        raise ValidationError(
            f"body id {given!r} does not match the workflow id {workflow_id} in the path",
            [{"code": "id_mismatch", "message": "id differs from the path", "tasks": []}],
        )
    for key in READ_ONLY_FIELDS:
        raw.pop(key, None)
    return _parse(raw, ctx)


@router.post(
    "",
    status_code=201,
    response_model=WorkflowDetail,
    openapi_extra=SPEC_DOC,
    dependencies=[Depends(authorize("define", body_project_target))],
)
def create_workflow(
    response: Response, body: dict[str, Any] = SpecBody, ctx: ApiContext = Depends(get_ctx)
) -> WorkflowDetail:
    """Create a workflow (version 1) in ``project`` (default "default"); 422 names the offending
    tasks, 409 on a duplicate name."""
    project = take_project(body)
    spec = _parse(body, ctx)
    with _name_conflicts(spec.name), ctx.session_factory.begin() as s:
        check_definition(s, project, spec)
        d, v = definitions.create_workflow(s, spec)
        d.project = project
        s.flush()
        out = WorkflowDetail.from_rows(d, v)
    log.info("api: workflow %d %r created (version 1, %d tasks)", out.id, out.name, len(out.tasks))
    response.headers["Location"] = f"{router.prefix}/{out.id}"
    return out


@router.get("", response_model=WorkflowPage)
def list_workflows(
    limit: Limit = 50,
    offset: Offset = 0,
    name: str | None = None,
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> WorkflowPage:
    """Live workflows of the caller's projects by id; ``name`` filters by substring."""
    with ctx.session_factory.begin() as s:
        rows, total = definitions.list_definitions(
            s, limit=limit, offset=offset, name=name, projects=read_scope(me)
        )
        items = [WorkflowSummary.from_row(d) for d in rows]
    return WorkflowPage(items=items, total=total)


@router.get(
    "/{workflow_id}",
    response_model=WorkflowDetail,
    dependencies=[Depends(authorize("read", workflow_target))],
)
def get_workflow(workflow_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> WorkflowDetail:
    """The latest version's spec with the workflow's id, name and version."""
    with ctx.session_factory.begin() as s:
        d, v = definitions.get_latest(s, workflow_id)
        return WorkflowDetail.from_rows(d, v)


@router.get(
    "/{workflow_id}/versions",
    response_model=VersionPage,
    dependencies=[Depends(authorize("read", workflow_target))],
)
def list_versions(
    workflow_id: DbId,
    limit: Limit = 100,
    offset: Offset = 0,
    ctx: ApiContext = Depends(get_ctx),
) -> VersionPage:
    """Every version of the workflow, newest first."""
    with ctx.session_factory.begin() as s:
        rows, total = definitions.list_versions(s, workflow_id, limit=limit, offset=offset)
        items = [VersionSummary.from_row(v) for v in rows]
    return VersionPage(items=items, total=total)


@router.get(
    "/{workflow_id}/versions/{version}",
    response_model=WorkflowDetail,
    dependencies=[Depends(authorize("read", workflow_target))],
)
def get_version(
    workflow_id: DbId, version: DbId, ctx: ApiContext = Depends(get_ctx)
) -> WorkflowDetail:
    with ctx.session_factory.begin() as s:
        d = definitions.get_definition(s, workflow_id)
        v = definitions.get_version(s, workflow_id, version)
        return WorkflowDetail.from_rows(d, v)


@router.put(
    "/{workflow_id}",
    response_model=WorkflowDetail,
    openapi_extra=SPEC_DOC,
    dependencies=[Depends(authorize("define", workflow_target))],
)
def update_workflow(
    workflow_id: DbId, body: dict[str, Any] = SpecBody, ctx: ApiContext = Depends(get_ctx)
) -> WorkflowDetail:
    """Store the spec as a new immutable version; running instances keep their version. A
    ``project`` in the body must be the workflow's (a workflow never changes project)."""
    with ctx.session_factory() as s:
        project = take_project(body, q_projects.of_workflow(s, workflow_id))
    spec = _parse_for_put(body, workflow_id, ctx)
    with _name_conflicts(spec.name), ctx.session_factory.begin() as s:
        check_definition(s, project, spec)
        d, v = definitions.add_version(s, workflow_id, spec)
        out = WorkflowDetail.from_rows(d, v)
    log.info("api: workflow %d %r: new version %d", workflow_id, out.name, out.version)
    return out


@router.delete(
    "/{workflow_id}",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(authorize("define", workflow_target))],
)
def delete_workflow(workflow_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Response:
    """Soft delete (instances stay readable); 409 while an instance is not finished."""
    with ctx.session_factory.begin() as s:
        d = definitions.delete_workflow(s, workflow_id)
        name = d.name
    log.info("api: workflow %d %r deleted", workflow_id, name)
    return Response(status_code=204)


@router.post(
    "/{workflow_id}/runs",
    status_code=202,
    response_model=RunAccepted,
    dependencies=[Depends(authorize("run", workflow_target))],
)
def run_workflow(
    workflow_id: DbId, body: RunRequest | None = None, ctx: ApiContext = Depends(get_ctx)
) -> RunAccepted:
    """Write a SUBMITTED instance and its START_PROCESS command in one transaction."""
    req = body or RunRequest()
    check_run_params(req, ctx.settings.api.max_param_bytes)
    if req.backfill is not None:  # dates of a range or list: see api/routers/schedules.py
        accepted = schedules.submit_backfill(ctx, workflow_id, req)
        return JSONResponse(accepted.model_dump(mode="json"), status_code=202)  # type: ignore[return-value]
    priority = Priority[req.priority] if req.priority else None
    with ctx.session_factory.begin() as s:
        instance = runs.submit_run(
            s,
            workflow_id,
            params=req.string_params(),
            priority=priority,
            run_options=req.run_options(),
        )
        instance_id, pri = instance.id, instance.priority
    log.info(
        "api: workflow %d: instance %d submitted (priority %s)",
        workflow_id,
        instance_id,
        Priority(pri).name,
    )
    return RunAccepted(instance_id=instance_id)
