"""The API's metrics: ``GET /metrics`` at the root (Prometheus text, no token, like /health), a
middleware timing every request by route template, method and status, and the cluster-wide
gauges read when scraped (queue depth per group, attempts waiting in PostgreSQL, instances by
state, alerts waiting to be sent, the ZooKeeper session and the pool)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Response
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import ApiContext
from api.routers.cluster import queue_depths
from core import metrics
from core.states import WORKFLOW_TERMINAL, AlertStatus, TaskState, values

_INSTANCES = text(
    "SELECT state, count(*) AS n FROM workflow_instance WHERE state <> ALL(:terminal)"
    " GROUP BY state"
)
_SUBMITTED = text(
    "SELECT worker_group, count(*) AS n FROM task_instance WHERE state = :submitted"
    " GROUP BY worker_group"
)
_PENDING = text("SELECT count(*) FROM alert WHERE status = :wait")


V1 = "/api/v1"
CLUSTER_FAMILIES = (
    ("dagkeeper_workflow_instances", "Live workflow instances by state"),
    ("dagkeeper_queue_waiting_in_db", "Attempts SUBMITTED in PostgreSQL, not yet in the queue"),
    ("dagkeeper_alerts_pending", "Alert rows waiting to be sent"),
    ("dagkeeper_queue_depth", "Entries in the ZooKeeper queue of a group"),
)


class RequestTimer:
    """ASGI middleware: one histogram observation per HTTP request (route template, not path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            if scope.get("path", "").startswith(V1) and not path.startswith(V1) and route:
                path = V1 + path  # an included router's route carries its own path only
            metrics.API_REQUESTS.labels(path, scope.get("method", ""), str(status[0])).observe(
                time.perf_counter() - start
            )


def _cluster(ctx: ApiContext) -> Iterable[metrics.Sample]:
    out: list[metrics.Sample] = []
    with ctx.session_factory() as s:
        terminal = values(WORKFLOW_TERMINAL)
        for r in s.execute(_INSTANCES, {"terminal": terminal}).all():
            out.append(("dagkeeper_workflow_instances", "Live workflow instances by state",
                        {"state": str(r.state)}, float(r.n)))  # fmt: skip
        for r in s.execute(_SUBMITTED, {"submitted": TaskState.SUBMITTED.value}).all():
            out.append(("dagkeeper_queue_waiting_in_db",
                        "Attempts SUBMITTED in PostgreSQL, not yet in the ZooKeeper queue",
                        {"group": str(r.worker_group)}, float(r.n)))  # fmt: skip
        pending = s.execute(_PENDING, {"wait": AlertStatus.WAIT.value}).scalar_one()
        out.append(
            ("dagkeeper_alerts_pending", "Alert rows waiting to be sent", {}, float(pending))
        )
    if ctx.zk.client.connected:
        for group, n in queue_depths(ctx.zk.client, ctx.zk.paths).items():
            out.append(("dagkeeper_queue_depth", "Entries in the ZooKeeper queue of a group",
                        {"group": group}, float(n)))  # fmt: skip
    return out


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add the timer middleware, GET /metrics and the scrape-time sources of this app."""
    app.add_middleware(RequestTimer)
    metrics.add_source("api.cluster", lambda: _cluster(ctx), CLUSTER_FAMILIES)
    metrics.add_source("api.zk", metrics.zk_source(lambda: ctx.zk.client.state))
    engine: Any = ctx.owned_engine or getattr(ctx.session_factory, "kw", {}).get("bind")
    if engine is not None:
        metrics.add_source("api.pool", metrics.pool_source(engine.pool))

    @app.get("/metrics", include_in_schema=False, tags=["health"])
    def get_metrics() -> Response:
        """Prometheus text exposition of this process."""
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
