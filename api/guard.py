"""The API's front guard, an ASGI middleware before every route: the request body size limit
(413), JSON bodies, query strings and paths holding what PostgreSQL cannot store (422 naming the
field), and OPTIONS answered with every method a path allows (404 for an unknown path)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import validation

log = logging.getLogger(__name__)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROBE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
MAX_QUERY_VALUE = 4096  # characters of one query parameter


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error shape of the REST API: {"error": {"code", "message", "details"}}."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def invalid(found: list[dict[str, Any]]) -> JSONResponse:
    message = "; ".join(f"{'.'.join(d['loc'])}: {d['message']}" for d in found)
    return error_response(422, "invalid", message, found)


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route of ``app`` answers at ``path`` (HEAD with GET, and OPTIONS), or
    [] when no route matches the path. Asks each route through its public ``matches``."""
    router = getattr(app, "router", None)
    routes = list(getattr(router, "routes", []))
    methods: set[str] = set()
    for method in PROBE_METHODS:
        probe: Scope = {"type": "http", "method": method, "path": path, "root_path": "",
                        "headers": [], "query_string": b""}  # fmt: skip
        for route in routes:
            if isinstance(route, Mount):
                if method in ("GET", "HEAD") and route.matches(probe)[0] == Match.FULL:
                    methods.add(method)
                    break
            elif route.matches(probe)[0] == Match.FULL:
                methods.add(method)
                break
    return sorted(methods | {"OPTIONS"}) if methods else []


def _json_type(scope: Scope) -> bool:
    """FastAPI reads a body without a content type as JSON too."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return bytes(value)
    return None


def query_problems(scope: Scope) -> list[dict[str, Any]]:
    """NUL characters and overlong values in the path and the query string."""
    found: list[dict[str, Any]] = []
    if (why := validation.text_problem(scope.get("path", ""))) is not None:
        found.append({"loc": ["path"], "message": why, "type": "text"})
    raw = scope.get("query_string", b"")
    if raw:
        for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            name = validation.text_problem(key)
            if name is not None:
                found.append(
                    {"loc": ["query"], "message": f"a parameter name {name}", "type": "text"}
                )
            elif (why := validation.text_problem(value)) is not None:
                found.append({"loc": ["query", key], "message": why, "type": "text"})
            elif len(value) > MAX_QUERY_VALUE:
                found.append({"loc": ["query", key], "type": "too_long",
                              "message": f"longer than {MAX_QUERY_VALUE} characters"})  # fmt: skip
    return found


class RequestGuard:
    """Checks a request before any route sees it; a body is read once and handed on as is."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        found = query_problems(scope)
        if found:
            await invalid(found)(scope, receive, send)
            return
        if method == "OPTIONS":
            await self._options(scope, receive, send)
            return
        if method not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        body, complete = await self._read(receive)
        if not complete:
            await self._too_large(scope, receive, send)
            return
        if body and _json_type(scope):
            problem = self._check_json(body)
            if problem is not None:
                await problem(scope, receive, send)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), True  # a disconnect: the route sees it on its own
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    def _check_json(self, body: bytes) -> Response | None:
        try:
            document = validation.load_json(body)
        except RecursionError:
            return invalid([{"loc": ["body"], "type": "depth",
                             "message": f"nested deeper than {validation.MAX_DEPTH} levels"}])  # fmt: skip
        except ValueError:
            return None  # not JSON: FastAPI answers with its own 422 (json_invalid)
        found = validation.problems(document)
        if not found:
            return None
        return invalid([p.as_dict(("body",)) for p in found])

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        log.info("api: %s %s -> 413 (body over %d bytes)", scope["method"], scope["path"], limit)
        response = error_response(
            413,
            "too_large",
            f"the request body is larger than {limit} bytes (DAGKEEPER_API__MAX_BODY_BYTES)",
            {"limit_bytes": limit},
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = allowed_methods(scope.get("app"), scope.get("path", ""))
        if not methods:
            response: Response = error_response(404, "not_found", "Not Found")
        else:
            response = Response(status_code=204, headers={"Allow": ", ".join(methods)})
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
