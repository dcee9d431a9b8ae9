"""The FastAPI application factory: routers under /api/v1 behind the bearer token, the open
probes /health and /ready, /docs from local assets, the request guard (body limit, values
PostgreSQL cannot store, OPTIONS) and error handlers that answer {"error": {code, message,
details}} (an unknown field with a "did you mean" suggestion, a 405 with every allowed method)."""

from __future__ import annotations

import json
import logging
import types
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kazoo.exceptions import KazooException
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import docs, ui
from api.auth import authenticate
from api.auth_audit import AuditMiddleware
from api.deps import ApiContext, get_ctx, resolve_token
from api.guard import RequestGuard, allowed_methods, error_response
from api.metrics import install as install_metrics
from api.routers import (
    alert_config,
    alerts,
    audit,
    cluster,
    instances,
    me,
    projects,
    schedules,
    task_groups,
    task_instances,
    tokens,
    transfer,
    ui_views,
    users,
    workflows,
)
from api.routers import datasources as datasources_router
from api.schemas import ReadyOut
from coord.zk import ZkClient
from core import validation
from core.errors import DagkeeperError, TooManyRequests, Unauthorized
from core.settings import Settings
from db.engine import SessionFactory, make_engine, make_session_factory

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


async def _on_dagkeeper_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DagkeeperError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, TooManyRequests):
        wait = (exc.details or {}).get("retry_after_s", 1)
        headers = {"Retry-After": str(max(1, round(float(wait))))}
    if exc.http_status >= 500:
        log.warning("api: %s %s -> %d %s", request.method, request.url.path, exc.http_status, exc)
    return error_response(
        exc.http_status, exc.code, exc.message, _json_safe(exc.details), headers=headers
    )


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None`` or ``Annotated[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            if (model := _model_of(arg)) is not None:
                return model
    return None


def _fields_at(annotation: Any, path: list[Any]) -> set[str]:
    """The field names of the model at ``path`` inside a body of type ``annotation``."""
    for part in path:
        model = _model_of(annotation)
        if model is not None and isinstance(part, str) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
            continue
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, types.UnionType) and args:
            annotation, origin = args[0], typing.get_origin(args[0])
            args = list(typing.get_args(annotation))
        if origin is list and isinstance(part, int) and args:
            annotation = args[0]
        elif origin is dict and len(args) == 2:
            annotation = args[1]
        else:
            return set()
    model = _model_of(annotation)
    return set(model.model_fields) if model is not None else set()


def _unknown_field(request: Request, loc: list[Any]) -> str:
    """'unknown field ...; did you mean ...?' from the fields of the request model at ``loc``."""
    route = request.scope.get("route")
    body = getattr(route, "body_field", None)
    known: set[str] = set()
    if body is not None and loc and loc[0] == "body":
        known = _fields_at(body.field_info.annotation, loc[1:-1])
    return validation.unknown_field_message(str(loc[-1]), known)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = []
    for err in exc.errors():
        raw_loc = list(err.get("loc", ()))
        loc = [str(p) for p in raw_loc]
        msg = str(err.get("msg", ""))
        if err.get("type") == "extra_forbidden" and raw_loc:
            msg = _unknown_field(request, raw_loc)
        elif err.get("type") == "value_error":
            msg = msg.removeprefix("Value error, ")
        details.append({"loc": loc, "message": msg, "type": err.get("type")})
    message = "; ".join(f"{'.'.join(d['loc']) or 'request'}: {d['message']}" for d in details)
    return error_response(422, "invalid", message or "invalid request", details)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "error")
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:  # every method the path allows, not only the first route's
        allow = allowed_methods(request.app, request.url.path)
        headers = {**(headers or {}), "Allow": ", ".join(allow)} if allow else headers
    return error_response(exc.status_code, code, str(exc.detail), None, headers=headers)


async def _on_integrity_error(request: Request, exc: Exception) -> JSONResponse:
    log.info("api: %s %s -> 409 integrity: %s", request.method, request.url.path, exc)
    return error_response(409, "conflict", "the change conflicts with the current data")


async def _on_data_error(request: Request, exc: Exception) -> JSONResponse:
    """A value PostgreSQL refused (a safety net: the request models refuse such values first)."""
    orig = getattr(exc, "orig", None)
    what = str(orig).strip().splitlines()[0] if orig is not None else "a value is out of range"
    log.warning("api: %s %s -> 422 data: %s", request.method, request.url.path, what)
    return error_response(422, "invalid", f"PostgreSQL cannot store a value: {what}")


async def _on_database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("api: %s %s -> 503 database: %s", request.method, request.url.path, exc)
    return error_response(503, "database_unavailable", "PostgreSQL is not reachable")


async def _on_zk_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("api: %s %s -> 503 zookeeper: %r", request.method, request.url.path, exc)
    return error_response(503, "zookeeper_unavailable", "ZooKeeper is not reachable")


class CatchAllMiddleware:
    """Turns any unhandled exception into a logged traceback and a generic 500 answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("api: unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = error_response(500, "internal", "internal server error")
            await response(scope, receive, send)


def _ready(ctx: ApiContext) -> tuple[bool, dict[str, str]]:
    checks: dict[str, str] = {}
    try:
        with ctx.session_factory() as s:
            s.execute(text("SELECT 1"))
        checks["postgresql"] = "ok"
    except Exception as exc:
        checks["postgresql"] = f"unreachable: {type(exc).__name__}"
    try:
        if ctx.zk_connected(wait_s=1.0):
            ctx.zk.client.exists(ctx.zk.paths.root)
            checks["zookeeper"] = "ok"
        else:
            checks["zookeeper"] = "unreachable: not connected"
    except Exception as exc:
        checks["zookeeper"] = f"unreachable: {type(exc).__name__}"
    return all(v == "ok" for v in checks.values()), checks


def _probes() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get("/ready", response_model=ReadyOut)
    def ready(ctx: ApiContext = Depends(get_ctx)) -> Any:
        """PostgreSQL answers SELECT 1 and ZooKeeper is connected; 503 otherwise."""
        ok, checks = _ready(ctx)
        if not ok:
            return error_response(503, "not_ready", "a dependency is unreachable", checks)
        return ReadyOut(status="ready", checks=checks)

    return router


def create_app(
    settings: Settings, session_factory: SessionFactory | None = None, zk: ZkClient | None = None
) -> FastAPI:
    """Build the API. Without ``session_factory``/``zk`` the app makes its own from ``settings``
    and closes them on shutdown; given ones belong to the caller."""
    engine = None
    if session_factory is None:
        engine = make_engine(settings.db)
        session_factory = make_session_factory(engine)
    ctx = ApiContext(
        settings=settings,
        session_factory=session_factory,
        token=resolve_token(settings),
        zk=zk if zk is not None else ZkClient(settings.zk, name="api"),
        owns_zk=zk is None,
        owned_engine=engine,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.start_zk()
        try:
            yield
        finally:
            ctx.close()
            log.info("api: stopped")

    app = FastAPI(
        title="dagkeeper",
        version="0.1.0",
        description="REST API of the dagkeeper DAG workflow scheduler",
        lifespan=lifespan,
        docs_url=None,  # served from local assets by api/docs.py
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.add_exception_handler(DagkeeperError, _on_dagkeeper_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(IntegrityError, _on_integrity_error)
    app.add_exception_handler(DataError, _on_data_error)
    app.add_exception_handler(OperationalError, _on_database_down)
    app.add_exception_handler(InterfaceError, _on_database_down)
    app.add_exception_handler(KazooException, _on_zk_down)
    app.add_middleware(RequestGuard, max_body_bytes=settings.api.max_body_bytes)
    app.add_middleware(AuditMiddleware, prefix=API_PREFIX)
    app.add_middleware(CatchAllMiddleware)  # added last: the outermost, around the guard
    docs.install(app)

    install_metrics(app, ctx)  # GET /metrics and the request timer (outermost)
    app.include_router(_probes())
    v1 = APIRouter(prefix=API_PREFIX, dependencies=[Depends(authenticate)])
    v1.include_router(transfer.router)  # before workflows: /workflows/import
    v1.include_router(workflows.router)
    v1.include_router(instances.router)
    v1.include_router(task_instances.router)
    v1.include_router(task_groups.router)
    v1.include_router(cluster.router)
    v1.include_router(schedules.router)
    v1.include_router(datasources_router.router)
    v1.include_router(alert_config.router)
    v1.include_router(ui_views.router)
    v1.include_router(me.router)
    v1.include_router(users.router)
    v1.include_router(tokens.router)
    v1.include_router(projects.router)
    v1.include_router(audit.router)
    v1.include_router(alerts.router)
    app.include_router(v1)
    app.include_router(ui.router)  # the web UI's bundle at / and /ui/
    return app
