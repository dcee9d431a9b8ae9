"""/task-groups: named concurrency limits shared across workflows ("at most 2 tasks touching the
warehouse"); a task names one with ``task_group``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.auth import Principal
from api.auth_scope import authorize, body_project_target, read_scope, task_group_target
from api.deps import ApiContext, get_ctx
from api.schemas import (
    ERROR_RESPONSES,
    Offset,
    TaskGroupIn,
    TaskGroupOut,
    TaskGroupPage,
    TaskGroupUpdate,
)
from db import task_groups as q

router = APIRouter(prefix="/task-groups", tags=["task groups"], responses=ERROR_RESPONSES)

GroupName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")]


def _out(g: q.GroupView) -> TaskGroupOut:
    return TaskGroupOut(**g.__dict__)


@router.post(
    "",
    response_model=TaskGroupOut,
    status_code=201,
    dependencies=[Depends(authorize("define", body_project_target))],
)
def create_group(body: TaskGroupIn, ctx: ApiContext = Depends(get_ctx)) -> TaskGroupOut:
    """A group of ``project`` (default "default"); the name is unique across projects."""
    with ctx.session_factory.begin() as s:
        return _out(q.create(s, body.name, body.capacity, body.description, body.project))


@router.get("", response_model=TaskGroupPage)
def list_groups(
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> TaskGroupPage:
    with ctx.session_factory.begin() as s:
        rows, total = q.list_all(s, limit, offset, read_scope(me))
    return TaskGroupPage(items=[_out(g) for g in rows], total=total)


@router.get(
    "/{name}",
    response_model=TaskGroupOut,
    dependencies=[Depends(authorize("read", task_group_target))],
)
def get_group(name: GroupName, ctx: ApiContext = Depends(get_ctx)) -> TaskGroupOut:
    with ctx.session_factory.begin() as s:
        return _out(q.get(s, name))


@router.put(
    "/{name}",
    response_model=TaskGroupOut,
    dependencies=[Depends(authorize("define", task_group_target))],
)
def update_group(
    name: GroupName, body: TaskGroupUpdate, ctx: ApiContext = Depends(get_ctx)
) -> TaskGroupOut:
    with ctx.session_factory.begin() as s:
        return _out(q.update(s, name, body.capacity, body.description))


@router.delete(
    "/{name}",
    status_code=204,
    dependencies=[Depends(authorize("define", task_group_target))],
)
def delete_group(name: GroupName, ctx: ApiContext = Depends(get_ctx)) -> None:
    with ctx.session_factory.begin() as s:
        q.delete(s, name)
