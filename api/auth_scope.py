"""What a request may do: ``authorize(action, project_of=...)``, the one authorization dependency
of every /api/v1 route, and the resolvers that name the project (and the owner) of the resource a
request touches. Another project's resource answers 404, as if it did not exist; a known project
without the role answers 403 naming the missing grant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from api.auth import Principal, authenticate
from api.deps import ApiContext, get_ctx
from api.schemas import DbId
from core.errors import Forbidden, NotFound, ValidationError
from core.roles import NEEDS, Action, Role, decide
from db import projects as q
from db import users as q_users
from db.models import DEFAULT_PROJECT

PROJECT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$"
ProjectName = Annotated[str, Path(pattern=PROJECT_PATTERN, description="a project name")]
GroupName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")]
# marks the dependency ``authorize`` builds (a test checks every route has exactly one)
AUTHZ_MARK = "__dagkeeper_authz__"


@dataclass(frozen=True)
class Target:
    """The resource a request touches: its kind and ids (for the audit log), its project (None:
    it does not exist, or has none when ``global_`` is set) and its owning user, if any."""

    kind: str
    ids: dict[str, Any] = field(default_factory=dict)
    project: str | None = None
    missing: str = ""  # the 404 message when it does not exist (or is not the caller's)
    owner_id: int | None = None
    global_: bool = False  # not a project's resource (users, tokens)
    exists: bool = True  # for a global resource (a project's is missing when project is None)


def _with(ctx: ApiContext, fn: Callable[[Session], str | None]) -> str | None:
    with ctx.session_factory() as s:
        return fn(s)


# -- resolvers (FastAPI dependencies: they declare the path parameters they read) -----------------


def workflow_target(workflow_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Target:
    project = _with(ctx, lambda s: q.of_workflow(s, workflow_id))
    return Target(
        "workflow", {"workflow_id": workflow_id}, project, f"workflow {workflow_id} not found"
    )


def instance_target(instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Target:
    project = _with(ctx, lambda s: q.of_instance(s, instance_id))
    return Target(
        "instance",
        {"instance_id": instance_id},
        project,
        f"workflow instance {instance_id} not found",
    )


def task_instance_target(task_instance_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Target:
    project = _with(ctx, lambda s: q.of_task_instance(s, task_instance_id))
    return Target(
        "task_instance",
        {"task_instance_id": task_instance_id},
        project,
        f"task instance {task_instance_id} not found",
    )


def schedule_target(schedule_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Target:
    project = _with(ctx, lambda s: q.of_schedule(s, schedule_id))
    return Target(
        "schedule", {"schedule_id": schedule_id}, project, f"schedule {schedule_id} not found"
    )


def backfill_target(backfill_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Target:
    project = _with(ctx, lambda s: q.of_backfill(s, backfill_id))
    return Target(
        "backfill", {"backfill_id": backfill_id}, project, f"backfill {backfill_id} not found"
    )


def datasource_target(datasource_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Target:
    project = _with(ctx, lambda s: q.of_datasource(s, datasource_id))
    return Target(
        "datasource",
        {"datasource_id": datasource_id},
        project,
        f"datasource {datasource_id} not found",
    )


def task_group_target(name: GroupName, ctx: ApiContext = Depends(get_ctx)) -> Target:
    project = _with(ctx, lambda s: q.of_task_group(s, name))
    return Target("task_group", {"name": name}, project, f"task group {name!r} not found")


def project_target(name: ProjectName, ctx: ApiContext = Depends(get_ctx)) -> Target:
    found = _with(ctx, lambda s: name if q.exists(s, name) else None)
    return Target("project", {"project": name}, found, f"project {name!r} not found")


def user_target(user_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Target:
    """A user's own things (its tokens) are its own to manage; an admin manages everyone's."""
    with ctx.session_factory() as s:
        exists = q_users.find(s, user_id) is not None
    return Target(
        "user",
        {"user_id": user_id},
        None,
        f"user {user_id} not found",
        owner_id=user_id,
        global_=True,
        exists=exists,
    )


def token_target(token_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Target:
    with ctx.session_factory() as s:
        owner_id = q_users.token_owner(s, token_id)
    return Target(
        "token",
        {"token_id": token_id},
        None,
        f"token {token_id} not found",
        owner_id=owner_id,
        global_=True,
        exists=owner_id is not None,
    )


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}  # the route's own body validation answers the 422
    return body if isinstance(body, dict) else {}


async def body_project_target(request: Request, ctx: ApiContext = Depends(get_ctx)) -> Target:
    """A create: the body's ``project`` (default "default") must be one of the caller's."""
    name = (await _json_body(request)).get("project", DEFAULT_PROJECT)
    if not isinstance(name, str):
        raise ValidationError(
            "project: must be a project name",
            [{"loc": ["body", "project"], "message": "must be a string"}],
        )
    found = _with(ctx, lambda s: name if q.exists(s, name) else None)
    return Target("project", {"project": name}, found, f"project {name!r} not found")


async def body_workflow_target(request: Request, ctx: ApiContext = Depends(get_ctx)) -> Target:
    """A schedule's create: it belongs to the project of the body's ``workflow_id``."""
    wid = (await _json_body(request)).get("workflow_id")
    if not isinstance(wid, int) or isinstance(wid, bool) or wid < 1:
        raise ValidationError(
            "workflow_id: must be a positive workflow id",
            [{"loc": ["body", "workflow_id"], "message": "must be a positive integer"}],
        )
    project = _with(ctx, lambda s: q.of_workflow(s, wid))
    return Target("workflow", {"workflow_id": wid}, project, f"workflow {wid} not found")


def no_target() -> Target:
    return Target("global", global_=True)


# -- the dependency ---------------------------------------------------------------------------------


def check(principal: Principal, action: Action, target: Target) -> None:
    """Raise the 404 or 403 ``decide`` gives, else return (the request may go on)."""
    if target.global_:
        if target.exists and target.owner_id is not None and target.owner_id == principal.user_id:
            return
        if not target.exists and principal.is_admin:
            raise NotFound(target.missing, target.ids)
        verdict = decide(principal.role, principal.grants, None, action)
    elif target.project is None:
        raise NotFound(target.missing, target.ids)
    else:
        verdict = decide(principal.role, principal.grants, target.project, action)
    if verdict.status == 404:
        raise NotFound(target.missing, target.ids)
    if verdict.status == 403:
        raise Forbidden(
            verdict.reason,
            {"needs": NEEDS[action].value, "project": target.project},
        )


def authorize(
    action: Action | str, project_of: Callable[..., Any] = no_target
) -> Callable[..., Principal]:
    """The dependency of a route that does ``action`` on the resource ``project_of`` names:
    401 without a valid token, then 404 when the resource is not the caller's to see, then 403
    when the caller's role on its project is too low. Returns the caller."""
    act = Action(action)

    def dependency(
        request: Request,
        principal: Principal = Depends(authenticate),
        target: Target = Depends(project_of),
    ) -> Principal:
        request.state.audit_target = target
        check(principal, act, target)
        return principal

    setattr(dependency, AUTHZ_MARK, (act, project_of.__name__))
    dependency.__name__ = f"authorize_{act.value}_{project_of.__name__}"
    return dependency


def read_scope(principal: Principal) -> list[str] | None:
    """The projects a list answer may show (None = all)."""
    if not isinstance(principal, Principal):  # a route calling another route's function
        raise TypeError(
            "read_scope needs the caller: pass the route's own "
            "`me: Principal = Depends(authorize(...))` on to the function it calls"
        )
    return principal.projects(Action.READ)


__all__ = ["AUTHZ_MARK", "Role", "Target", "authorize", "check", "read_scope"]
