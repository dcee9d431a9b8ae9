"""The audit log's writer: an ASGI middleware that records one row per mutation request under
/api/v1 (who, action, resource and ids, project, result, status, client address) before the
answer leaves, so that a caller who got its answer finds the row. Never a body: ids come from
the path and from the top-level id fields of a JSON answer; tokens and passwords never."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db import audit as q_audit
from db.engine import SessionFactory

log = logging.getLogger(__name__)

MUTATIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ID_FIELDS = ("id", "instance_id", "instance_ids", "backfill_id", "task_instance_id", "workflow_id")
MAX_PARSED_BODY = 64 << 10
CUT_EVERY_S = 3600.0


def result_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403, 429):
        return "denied"
    if status < 500:
        return "refused"
    return "error"


def ids_of_answer(body: bytes, content_type: str) -> dict[str, Any]:
    """The top-level id fields of a small JSON answer (an int or a list of ints)."""
    if not body or len(body) > MAX_PARSED_BODY or "json" not in content_type:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ID_FIELDS:
        v = data.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            out[key] = v
        elif isinstance(v, list) and v and all(isinstance(x, int) for x in v[:100]):
            out[key] = v[:100]
    return out


class AuditMiddleware:
    """Writes the row when the answer's first body part is about to be sent."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/v1") -> None:
        self.app = app
        self.prefix = prefix
        self._last_cut = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in MUTATIONS
            or not str(scope.get("path", "")).startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        written = False

        async def audited_send(message: Message) -> None:
            nonlocal start, written
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body" and start is not None and not written:
                written = True
                await self._record(scope, start, message)
                await send(start)
            await send(message)

        await self.app(scope, receive, audited_send)
        if start is not None and not written:  # an answer without a body message
            await self._record(scope, start, {"body": b"", "more_body": False})
            await send(start)

    async def _record(self, scope: Scope, start: Message, first: Message) -> None:
        route = scope.get("route")
        endpoint = scope.get("endpoint")
        if route is None or endpoint is None:
            return  # no route matched: nothing was done
        ctx = scope["app"].state.ctx
        state = scope.get("state") or {}
        principal = state.get("principal")
        target = state.get("audit_target")
        status = int(start["status"])
        headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        ids: dict[str, Any] = {str(k): v for k, v in (scope.get("path_params") or {}).items()}
        if target is not None:
            ids.update(target.ids)
        if status < 300 and not first.get("more_body"):
            ids.update(ids_of_answer(first.get("body", b""), headers.get("content-type", "")))
        client = scope.get("client")
        entry = q_audit.Entry(
            actor=principal.name if principal is not None else "anonymous",
            actor_id=principal.user_id if principal is not None else None,
            action=getattr(endpoint, "__name__", "unknown"),
            resource=target.kind if target is not None else _resource_of(route),
            resource_ids=ids,
            project=target.project if target is not None else None,
            result=result_of(status),
            status=status,
            client=str(client[0]) if client else None,
            method=str(scope["method"]),
            path=str(scope["path"])[:2000],
        )
        await run_in_threadpool(self._write, ctx.session_factory, ctx.settings, entry)

    def _write(self, sf: SessionFactory, settings: Any, entry: q_audit.Entry) -> None:
        try:
            with sf.begin() as s:
                q_audit.write(s, entry)
                now = time.monotonic()
                if now - self._last_cut >= CUT_EVERY_S:
                    self._last_cut = now
                    gone = q_audit.cut(s, settings.api.audit_retention_days)
                    if gone:
                        log.info("api: audit: %d row(s) past the retention deleted", gone)
        except Exception as exc:  # the answer goes out anyway; the outage is logged once here
            log.warning(
                "api: audit row for %s %s (%s) not written: %s",
                entry.method,
                entry.path,
                entry.actor,
                type(exc).__name__,
            )


def _resource_of(route: Any) -> str:
    path = str(getattr(route, "path", ""))
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    return parts[2] if len(parts) > 2 else (parts[-1] if parts else "unknown")
