"""Definitions in and out: a workflow's release state (ONLINE/OFFLINE), its export as one JSON
document (all versions or one, with schedules) and the import of such a document or of a
DolphinScheduler 3.x export, with conflict handling."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, field_validator

from api.auth_define import check_definition
from api.auth_scope import authorize, body_project_target, workflow_target
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, DbId
from core import dolphin
from core.spec import WorkflowSpec
from core.states import ReleaseState
from db import definitions, releases, transfer

log = logging.getLogger(__name__)

router = APIRouter(prefix="/workflows", tags=["workflows"], responses=ERROR_RESPONSES)


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release_state: Literal["ONLINE", "OFFLINE"]

    @field_validator("release_state", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class ReleaseOut(BaseModel):
    id: int
    name: str
    release_state: str
    changed: bool


class ImportedOut(BaseModel):
    id: int
    name: str
    versions: list[int]
    action: str
    schedules: list[int]


class ImportOut(BaseModel):
    source: Literal["dagkeeper", "dolphinscheduler"]
    workflows: list[ImportedOut]
    unmapped: list[str] = []


@router.put(
    "/{workflow_id}/release-state",
    response_model=ReleaseOut,
    dependencies=[Depends(authorize("define", workflow_target))],
)
def set_release_state(
    workflow_id: DbId, body: ReleaseIn, ctx: ApiContext = Depends(get_ctx)
) -> ReleaseOut:
    """OFFLINE: new runs and backfills are refused (409 with the reason) and its schedules do
    not fire; ONLINE: they run again, schedules counting from now (no catch-up)."""
    state = ReleaseState(body.release_state)
    with ctx.session_factory.begin() as s:
        d = definitions.get_definition(s, workflow_id, lock=True)
        changed = releases.set_state(s, d, state)
        out = ReleaseOut(id=d.id, name=d.name, release_state=d.release_state, changed=changed)
    log.info("api: workflow %d %r: release state %s (changed %s)", out.id, out.name, state, changed)
    return out


@router.get(
    "/{workflow_id}/export",
    dependencies=[Depends(authorize("read", workflow_target))],
)
def export_workflow(
    workflow_id: DbId,
    version: Annotated[int | None, Query(ge=1, description="one version (default: all)")] = None,
    ctx: ApiContext = Depends(get_ctx),
) -> dict[str, Any]:
    """The workflow as one JSON document: versions (oldest first), release state, schedules."""
    with ctx.session_factory.begin() as s:
        return transfer.export_document(s, workflow_id, version)


@router.post(
    "/import",
    status_code=201,
    response_model=ImportOut,
    dependencies=[Depends(authorize("define", body_project_target))],
)
def import_workflows(
    body: Any = Body(..., description="a dagkeeper export document or a DolphinScheduler export"),
    on_conflict: Annotated[
        Literal["fail", "rename", "new_version"],
        Query(description="a live workflow has the name: refuse (409), rename, or add versions"),
    ] = "fail",
    rename: Annotated[str | None, Query(description="with on_conflict=rename")] = None,
    ctx: ApiContext = Depends(get_ctx),
) -> ImportOut:
    """Import definitions (201); a DolphinScheduler 3.x export is recognised and converted, and
    what did not map is listed in ``unmapped``."""
    project = str(body.get("project") or "default") if isinstance(body, dict) else "default"

    def check(s: Any, spec: WorkflowSpec) -> None:
        check_definition(s, project, spec)

    with ctx.session_factory.begin() as s:
        if dolphin.is_export(body):
            found = transfer.import_dolphin(
                s, body, on_conflict=on_conflict, rename=rename, project=project, check=check
            )
            items, unmapped, source = found.workflows, found.unmapped, "dolphinscheduler"
        else:
            one = transfer.import_document(
                s, body, on_conflict=on_conflict, rename=rename, project=project, check=check
            )
            items, unmapped, source = [one], [], "dagkeeper"
        out = ImportOut(
            source=source,  # type: ignore[arg-type]
            workflows=[ImportedOut(**vars(i)) for i in items],
            unmapped=unmapped,
        )
    for w in out.workflows:
        log.info("api: import (%s): workflow %d %r %s, versions %s", source, w.id, w.name,
                 w.action, w.versions)  # fmt: skip
    return out
