"""A worker's metrics: the counters its hot path bumps (claims, lost claim races, starts and
ends by type, log bytes shipped and their lag) and its scrape-time sources (running attempts,
capacity, ZooKeeper session, PostgreSQL pool)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from core import metrics

if TYPE_CHECKING:
    from worker.server import WorkerServer

_MAX_TRACKED = 10_000  # attempts whose last ship time is remembered (oldest forgotten first)
_last_ship: OrderedDict[int, float] = OrderedDict()
_lock = threading.Lock()


def shipped(ti_ids: Iterable[int], nbytes: int) -> None:
    """A batch of log chunks is in PostgreSQL: count its bytes; for each attempt shipped
    before, the lag is the time since its previous batch (its oldest bytes waited that long)."""
    metrics.LOG_BYTES.inc(nbytes)
    now = time.monotonic()
    with _lock:
        for ti in set(ti_ids):
            prev = _last_ship.pop(ti, None)
            if prev is not None:
                metrics.LOG_LAG.observe(now - prev)
            _last_ship[ti] = now
        while len(_last_ship) > _MAX_TRACKED:
            _last_ship.popitem(last=False)


def install(server: WorkerServer) -> None:
    """Register the worker's scrape-time sources (memory and client state only)."""

    def slots() -> Iterable[metrics.Sample]:
        return [
            ("dagkeeper_worker_running_tasks", "Attempts held by this worker", {},
             float(len(server.inflight.held))),
            ("dagkeeper_worker_capacity", "Attempts this worker runs at once", {},
             float(server.capacity)),
        ]  # fmt: skip

    def zk_state() -> str:
        session = server.keeper.session
        zk = session.zk if session is not None else None
        return str(zk.client.state) if zk is not None else "LOST"

    metrics.add_source("worker.slots", slots)
    metrics.add_source("worker.zk", metrics.zk_source(zk_state))
    metrics.add_source("worker.pool", metrics.pool_source(server.engine.pool))
