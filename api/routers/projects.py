"""/projects: create and change projects (their OS users for SHELL tasks), list the caller's, and
grant a user a role on one (admin)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from api.auth import Principal
from api.auth_schemas import (
    GrantIn,
    GrantOut,
    GrantPage,
    ProjectIn,
    ProjectOut,
    ProjectPage,
    ProjectUpdate,
)
from api.auth_scope import ProjectName, authorize, project_target, read_scope
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, Limit, Offset
from core.errors import Conflict, NotFound
from core.roles import Role
from db import projects as q
from db import users as q_users
from db.models_auth import Project

log = logging.getLogger(__name__)

router = APIRouter(prefix="/projects", tags=["projects"], responses=ERROR_RESPONSES)
UserRef = Annotated[str, Path(min_length=1, max_length=100, description="a user id or name")]


def project_out(p: Project, role: str | None) -> ProjectOut:
    return ProjectOut(
        id=p.id,
        name=p.name,
        description=p.description,
        run_as_user=p.run_as_user,
        os_users=list(p.os_users or []),
        created_at=p.created_at,
        role=role,
    )


def _role(me: Principal, project: str) -> str | None:
    if me.is_admin:
        return Role.ADMIN.value
    r = me.grants.get(project)
    return r.value if r is not None else None


@router.post("", status_code=201, response_model=ProjectOut)
def create_project(
    body: ProjectIn,
    response: Response,
    me: Principal = Depends(authorize("admin")),
    ctx: ApiContext = Depends(get_ctx),
) -> ProjectOut:
    """A new project; ``run_as_user`` names the OS user its SHELL tasks run as (on workers that
    allow it), ``os_users`` every user its tasks may choose with ``run_as``."""
    with ctx.session_factory.begin() as s:
        p = q.create(s, body.name, body.description, body.run_as_user, body.os_users)
        out = project_out(p, Role.ADMIN.value)
    log.info("api: %s created project %r (run as %s)", me.name, out.name, out.run_as_user)
    response.headers["Location"] = f"/api/v1/projects/{out.name}"
    return out


@router.get("", response_model=ProjectPage)
def list_projects(
    limit: Limit = 100,
    offset: Offset = 0,
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> ProjectPage:
    """The caller's projects (an admin's: all), with the caller's role on each."""
    with ctx.session_factory() as s:
        rows, total = q.list_page(s, read_scope(me), limit, offset)
        return ProjectPage(items=[project_out(p, _role(me, p.name)) for p in rows], total=total)


@router.get("/{name}", response_model=ProjectOut)
def get_project(
    name: ProjectName,
    me: Principal = Depends(authorize("read", project_target)),
    ctx: ApiContext = Depends(get_ctx),
) -> ProjectOut:
    with ctx.session_factory() as s:
        return project_out(q.get(s, name), _role(me, name))


@router.put("/{name}", response_model=ProjectOut)
def update_project(
    name: ProjectName,
    body: ProjectUpdate,
    me: Principal = Depends(authorize("admin", project_target)),
    ctx: ApiContext = Depends(get_ctx),
) -> ProjectOut:
    """Change the description or the OS users; ``"run_as_user": null`` goes back to the
    worker's own user. The default user is always one of ``os_users``."""
    given = body.model_fields_set
    with ctx.session_factory.begin() as s:
        p = q.get(s, name)
        if body.description is not None:
            p.description = body.description
        if body.os_users is not None:
            p.os_users = list(dict.fromkeys(body.os_users))
        if "run_as_user" in given:
            p.run_as_user = body.run_as_user
        if p.run_as_user and p.run_as_user not in (p.os_users or []):
            p.os_users = [p.run_as_user, *(p.os_users or [])]
        s.flush()
        out = project_out(p, Role.ADMIN.value)
    log.info("api: %s changed project %r (%s)", me.name, name, ", ".join(sorted(given)))
    return out


@router.get("/{name}/grants", response_model=GrantPage)
def list_grants(
    name: ProjectName,
    _: Principal = Depends(authorize("admin", project_target)),
    ctx: ApiContext = Depends(get_ctx),
) -> GrantPage:
    with ctx.session_factory() as s:
        rows = q.grants_on(s, name)
    items = [GrantOut(project=name, user_id=u.id, user=u.name, role=r) for u, r in rows]
    return GrantPage(items=items, total=len(items))


@router.put("/{name}/grants/{user}", response_model=GrantOut)
def put_grant(
    name: ProjectName,
    user: UserRef,
    body: GrantIn,
    me: Principal = Depends(authorize("admin", project_target)),
    ctx: ApiContext = Depends(get_ctx),
) -> GrantOut:
    """Grant ``user`` (an id or a name) ``role`` on the project, or change its role there."""
    with ctx.session_factory.begin() as s:
        u = q_users.by_ref(s, user)
        if u.role == Role.ADMIN:
            raise Conflict(f"user {u.name!r} is an admin: it has every project already")
        q.put_grant(s, name, u.id, body.role)
        out = GrantOut(project=name, user_id=u.id, user=u.name, role=body.role)
    log.info("api: %s granted %s %r on project %r", me.name, body.role, out.user, name)
    return out


@router.delete("/{name}/grants/{user}", status_code=204, response_class=Response)
def delete_grant(
    name: ProjectName,
    user: UserRef,
    me: Principal = Depends(authorize("admin", project_target)),
    ctx: ApiContext = Depends(get_ctx),
) -> Response:
    """Take the user's grant on the project away (its next request no longer sees it)."""
    with ctx.session_factory.begin() as s:
        u = q_users.by_ref(s, user)
        if not q.delete_grant(s, name, u.id):
            raise NotFound(f"user {u.name!r} has no grant on project {name!r}")
    log.info("api: %s removed %r's grant on project %r", me.name, u.name, name)
    return Response(status_code=204)
