"""/datasources: named PostgreSQL and MySQL/MariaDB connections for SQL and PROCEDURE tasks (by
id, or found by ``?name=``). The password is encrypted before it reaches the database and is
never returned or logged; a datasource that live workflows use cannot be deleted or renamed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError

from api.auth import Principal
from api.auth_scope import authorize, body_project_target, datasource_target, read_scope
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, DbId, Limit, Offset
from api.schemas_datasources import DatasourceIn, DatasourceOut, DatasourcePage, DatasourceUpdate
from core.crypto import SecretBox
from core.errors import Conflict, NotFound
from db import datasources
from db.models import Datasource

log = logging.getLogger(__name__)

router = APIRouter(prefix="/datasources", tags=["datasources"], responses=ERROR_RESPONSES)


@contextmanager
def _name_conflicts(name: str) -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        if datasources.NAME_INDEX in str(exc.orig):
            raise Conflict(f"a datasource named {name!r} already exists", {"name": name}) from None
        raise


def _encrypt(ctx: ApiContext, body: DatasourceIn | DatasourceUpdate) -> str | None:
    if body.password is None:
        return None
    return SecretBox.from_settings(ctx.settings).encrypt(body.password.get_secret_value())


@router.post(
    "",
    status_code=201,
    response_model=DatasourceOut,
    dependencies=[Depends(authorize("define", body_project_target))],
)
def create_datasource(body: DatasourceIn, ctx: ApiContext = Depends(get_ctx)) -> Any:
    """Create a datasource; 409 if the name is taken."""
    assert body.kind is not None and body.host is not None  # checked by DatasourceIn
    row = Datasource(
        name=body.name,
        kind=body.kind,
        host=body.host,
        port=body.port,
        database=body.database or "",
        username=body.user or "",
        password_enc=_encrypt(ctx, body),
        options=body.options or {},
        description=body.description or "",
        project=body.project,
    )
    with _name_conflicts(body.name), ctx.session_factory.begin() as s:
        s.add(row)
        s.flush()
        out = DatasourceOut.from_row(row)
    log.info("api: datasource %d %r created (%s %s)", out.id, out.name, out.kind, out.host)
    return out


@router.get("", response_model=DatasourcePage)
def list_datasources(
    limit: Limit = 100,
    offset: Offset = 0,
    kind: str | None = Query(default=None, pattern="^(POSTGRESQL|MYSQL)$"),
    name: str | None = Query(default=None, max_length=200, description="exactly this name"),
    me: Principal = Depends(authorize("read")),
    ctx: ApiContext = Depends(get_ctx),
) -> Any:
    """Datasources of the caller's projects by id; ``kind`` and ``name`` (exact) filter."""
    with ctx.session_factory() as s:
        items, total = datasources.list_page(
            s, limit, offset, kind, projects=read_scope(me), name=name
        )
        return DatasourcePage(items=[DatasourceOut.from_row(d) for d in items], total=total)


@router.get(
    "/{datasource_id}",
    response_model=DatasourceOut,
    dependencies=[Depends(authorize("read", datasource_target))],
)
def get_datasource(datasource_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Any:
    with ctx.session_factory() as s:
        row = datasources.get(s, datasource_id)
        if row is None:
            raise NotFound(f"datasource {datasource_id} not found")
        return DatasourceOut.from_row(row)


@router.put(
    "/{datasource_id}",
    response_model=DatasourceOut,
    dependencies=[Depends(authorize("define", datasource_target))],
)
def update_datasource(
    datasource_id: DbId, body: DatasourceUpdate, ctx: ApiContext = Depends(get_ctx)
) -> Any:
    """Change the fields given; the password only if ``password`` is in the body; a rename is
    refused (409) while live workflows use the old name."""
    given = body.model_fields_set | ({"password"} if body.password is not None else set())
    with _name_conflicts(body.name or ""), ctx.session_factory.begin() as s:
        row = s.get(Datasource, datasource_id, with_for_update=True)
        if row is None:
            raise NotFound(f"datasource {datasource_id} not found")
        if body.name is not None and body.name != row.name:
            datasources.refuse_if_used(s, row, "rename")
        for fld, col in (("name", "name"), ("kind", "kind"), ("host", "host"), ("port", "port"),
                         ("database", "database"), ("user", "username"),
                         ("options", "options"), ("description", "description")):  # fmt: skip
            value = getattr(body, fld)
            if fld in given and (value is not None or fld == "port"):
                setattr(row, col, value)
        if "password" in given:
            row.password_enc = _encrypt(ctx, body)
        row.updated_at = func.now()
        s.flush()
        s.refresh(row)
        out = DatasourceOut.from_row(row)
    log.info("api: datasource %d %r updated (%s)", out.id, out.name, ", ".join(sorted(given)))
    return out


@router.delete(
    "/{datasource_id}",
    status_code=204,
    dependencies=[Depends(authorize("define", datasource_target))],
)
def delete_datasource(datasource_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Response:
    """Delete it; 409 naming the live workflows that still use it."""
    with ctx.session_factory.begin() as s:
        if not datasources.delete(s, datasource_id):
            raise NotFound(f"datasource {datasource_id} not found")
    log.info("api: datasource %d deleted", datasource_id)
    return Response(status_code=204)
