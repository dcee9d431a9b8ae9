"""/users: create (with grants on the projects named), list, read and change users (admin; a user
may read itself)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from api.auth import Principal
from api.auth_schemas import ProjectRole, UserIn, UserOut, UserPage, UserUpdate
from api.auth_scope import authorize, user_target
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, DbId, Limit, Offset
from core.roles import Role
from db import projects as q_projects
from db import users as q
from db.models_auth import AppUser

log = logging.getLogger(__name__)

router = APIRouter(prefix="/users", tags=["users"], responses=ERROR_RESPONSES)


def user_out(s: Session, u: AppUser) -> UserOut:
    grants = q_projects.grants_of(s, u.id)
    return UserOut(
        id=u.id,
        name=u.name,
        role=u.role,
        bootstrap=u.bootstrap,
        disabled=u.disabled,
        created_at=u.created_at,
        projects=[ProjectRole(name=p, role=r) for p, r in sorted(grants.items())],
    )


@router.post("", status_code=201, response_model=UserOut)
def create_user(
    body: UserIn,
    response: Response,
    me: Principal = Depends(authorize("admin")),
    ctx: ApiContext = Depends(get_ctx),
) -> UserOut:
    """Create a user; a non-admin gets ``role`` on each of ``projects`` (default: "default").
    409 when the name is taken, 404 naming a project that does not exist."""
    with ctx.session_factory.begin() as s:
        u = q.create(s, body.name, body.role)
        if body.role != Role.ADMIN:
            for p in dict.fromkeys(body.projects):
                q_projects.get(s, p)  # 404 for an unknown project
                q_projects.put_grant(s, p, u.id, body.role)
        out = user_out(s, u)
    log.info("api: %s created user %d %r (%s)", me.name, out.id, out.name, out.role)
    response.headers["Location"] = f"/api/v1/users/{out.id}"
    return out


@router.get("", response_model=UserPage)
def list_users(
    limit: Limit = 100,
    offset: Offset = 0,
    _: Principal = Depends(authorize("admin")),
    ctx: ApiContext = Depends(get_ctx),
) -> UserPage:
    with ctx.session_factory() as s:
        rows, total = q.list_page(s, limit, offset)
        return UserPage(items=[user_out(s, u) for u in rows], total=total)


@router.get("/{user_id}", response_model=UserOut)
def get_user(
    user_id: DbId,
    _: Principal = Depends(authorize("admin", user_target)),
    ctx: ApiContext = Depends(get_ctx),
) -> UserOut:
    """A user with its grants (an admin reads anyone, a user itself)."""
    with ctx.session_factory() as s:
        return user_out(s, q.get(s, user_id))


@router.put("/{user_id}", response_model=UserOut)
def update_user(
    user_id: DbId,
    body: UserUpdate,
    me: Principal = Depends(authorize("admin")),
    ctx: ApiContext = Depends(get_ctx),
) -> UserOut:
    """Change the role or disable a user (its tokens stop working on the next request)."""
    with ctx.session_factory.begin() as s:
        out = user_out(s, q.update_user(s, user_id, body.role, body.disabled))
    log.info("api: %s changed user %d (%s)", me.name, user_id, sorted(body.model_fields_set))
    return out
