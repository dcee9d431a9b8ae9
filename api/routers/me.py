"""/me: who the caller is (its user, role, whether it is the bootstrap admin) and the projects it
sees with its role on each."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.auth import Principal
from api.auth_schemas import MeOut, ProjectRole
from api.auth_scope import authorize
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES
from db import projects as q_projects

router = APIRouter(tags=["users"], responses=ERROR_RESPONSES)


@router.get("/me", response_model=MeOut)
def get_me(me: Principal = Depends(authorize("read")), ctx: ApiContext = Depends(get_ctx)) -> MeOut:
    """An admin sees every project (as admin); any other user the projects granted to it."""
    if me.is_admin:
        with ctx.session_factory() as s:
            rows, _ = q_projects.list_page(s, None, limit=10_000, offset=0)
        projects = [ProjectRole(name=p.name, role=me.role.value) for p in rows]
    else:
        projects = [ProjectRole(name=p, role=r.value) for p, r in sorted(me.grants.items())]
    return MeOut(
        id=me.user_id,
        name=me.name,
        role=me.role.value,
        bootstrap=me.bootstrap,
        projects=projects,
        token_id=me.token_id,
    )
