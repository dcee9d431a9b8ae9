"""Every Prometheus metric of dagkeeper (prometheus-client, one registry per process) and the
one-line hooks the daemons call; values that cost I/O (queue depths, pool use, session state)
are read only when /metrics is scraped, through sources the daemon registers.

Labels are bounded: task types, states, worker groups, channel kinds, route templates and
status codes only; never ids, hosts or raw paths."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from core.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
IDLE_POLL_S = 60.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a line
        pass


# latencies of the scheduler's own steps: milliseconds to a minute
FAST = (
    0.002,
    0.005,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)
# task durations: a tenth of a second to a day
SLOW = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400)

# -- master --------------------------------------------------------------------------------------
COMMANDS_CLAIMED = Counter("dagkeeper_commands_claimed", "Commands a master claimed")
INSTANCE_TRANSITIONS = Counter(
    "dagkeeper_workflow_instance_transitions", "Workflow instances entering a state", ["state"]
)
HANDOFF = Histogram(
    "dagkeeper_task_handoff_seconds",
    "Last upstream end to the successor's start (PostgreSQL's clock)",
    buckets=FAST,
)
DISPATCH = Histogram(
    "dagkeeper_task_dispatch_seconds",
    "Attempt row inserted to the attempt started on a worker",
    buckets=FAST,
)
TASK_DURATION = Histogram(
    "dagkeeper_task_duration_seconds", "Attempt start to end", ["type"], buckets=SLOW
)
FAILOVERS = Counter(
    "dagkeeper_failovers", "Failovers: attempts re-offered (worker) or instances adopted (master)",
    ["kind"],
)  # fmt: skip
ADOPTION = Histogram(
    "dagkeeper_adoption_seconds", "Time a master spent adopting a dead master's instances",
    buckets=FAST,
)  # fmt: skip
CRON_FIRES = Counter(
    "dagkeeper_cron_fires", "Cron fires written (on_time, late) or missed and skipped", ["kind"]
)
# -- worker --------------------------------------------------------------------------------------
TASK_STARTS = Counter("dagkeeper_task_starts", "Attempts a worker started", ["type"])
TASK_ENDS = Counter("dagkeeper_task_ends", "Attempts a worker finished", ["type", "state"])
CLAIMS = Counter("dagkeeper_task_claims", "Queue entries a worker leased")
CLAIM_CONFLICTS = Counter(
    "dagkeeper_claim_conflicts", "Claims lost to another worker (the entry was gone)"
)
LOG_BYTES = Counter("dagkeeper_log_shipped_bytes", "Task log bytes shipped to PostgreSQL")
LOG_LAG = Histogram(
    "dagkeeper_log_ship_lag_seconds",
    "Age of the oldest unshipped log bytes when a batch was shipped",
    buckets=FAST,
)
# -- API and alerts -------------------------------------------------------------------------------
API_REQUESTS = Histogram(
    "dagkeeper_api_request_seconds",
    "API request latency by route template, method and status",
    ["route", "method", "status"],
    buckets=FAST,
)
ALERTS_SENT = Counter(
    "dagkeeper_alert_sends", "Alert deliveries by channel kind and result", ["kind", "result"]
)


def commands_claimed(n: int) -> None:
    if n:
        COMMANDS_CLAIMED.inc(n)


def instance_entered(state: str) -> None:
    INSTANCE_TRANSITIONS.labels(state).inc()


def failover(kind: str, n: int = 1) -> None:
    if n:
        FAILOVERS.labels(kind).inc(n)


def task_started(task_type: str) -> None:
    TASK_STARTS.labels(task_type).inc()


def task_ended(task_type: str, state: str) -> None:
    TASK_ENDS.labels(task_type, state).inc()


def alert_sent(kind: str, ok: bool) -> None:
    ALERTS_SENT.labels(kind, "sent" if ok else "failed").inc()


# -- values read at scrape time ---------------------------------------------------------------

Sample = tuple[str, str, dict[str, str], float]  # (metric name, help, labels, value)
Family = tuple[tuple[str, str], ...]  # (metric name, help) a source always exports


class _Sources(Collector):
    """Gauges computed when /metrics is scraped, from functions the daemon registered; a
    source that fails (PostgreSQL away) is left out of that scrape and logged at DEBUG."""

    def __init__(self) -> None:
        self._fns: dict[str, Callable[[], Iterable[Sample]]] = {}
        self._declared: dict[str, Family] = {}
        self._lock = threading.Lock()

    def add(self, key: str, fn: Callable[[], Iterable[Sample]], declares: Family) -> None:
        with self._lock:
            self._fns[key] = fn
            self._declared[key] = declares

    def clear(self) -> None:
        with self._lock:
            self._fns.clear()

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time only (no I/O at registration)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            fns = list(self._fns.items())
            declared = [d for k in self._fns for d in self._declared.get(k, ())]
        families: dict[str, GaugeMetricFamily] = {}
        for key, fn in fns:
            try:
                samples = list(fn())
            except Exception as exc:
                log.debug("metrics: source %s failed: %s", key, exc)
                continue
            for name, doc, labels, value in samples:
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = GaugeMetricFamily(name, doc, labels=sorted(labels))
                fam.add_metric([labels[k] for k in sorted(labels)], float(value))
        for name, doc in declared:  # a family without samples now is still exported (empty)
            families.setdefault(name, GaugeMetricFamily(name, doc))
        yield from families.values()


SOURCES = _Sources()
REGISTRY.register(SOURCES)


def add_source(key: str, fn: Callable[[], Iterable[Sample]], declares: Family = ()) -> None:
    """Register (or replace) a scrape-time source of gauge samples; the families it
    ``declares`` are exported even while it has no sample of them."""
    SOURCES.add(key, fn, declares)


ZK_STATES = ("CONNECTED", "SUSPENDED", "LOST")


def zk_source(state: Callable[[], str]) -> Callable[[], Iterable[Sample]]:
    """``dagkeeper_zk_session_state{state}``: 1 for the session's kazoo state, 0 for the others."""

    def fn() -> Iterable[Sample]:
        now = str(state()).upper()
        doc = "ZooKeeper session state of this process (1 = current)"
        return [
            ("dagkeeper_zk_session_state", doc, {"state": s}, float(s == now)) for s in ZK_STATES
        ]

    return fn


def pool_source(pool: Any) -> Callable[[], Iterable[Sample]]:
    """``dagkeeper_db_pool_connections{use}``: checked-out and idle connections, and the size."""

    def fn() -> Iterable[Sample]:
        doc = "PostgreSQL connection pool of this process"
        out = [("dagkeeper_db_pool_connections", doc, {"use": "in_use"}, pool.checkedout())]
        if hasattr(pool, "checkedin"):
            out.append(("dagkeeper_db_pool_connections", doc, {"use": "idle"}, pool.checkedin()))
        if hasattr(pool, "size"):
            out.append(("dagkeeper_db_pool_connections", doc, {"use": "size"}, pool.size()))
        return out

    return fn


def exposition() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(REGISTRY)


def serve(bind: str, port: int, actor: str) -> int:
    """Serve /metrics on ``bind:port`` (0 = a free port) from a daemon thread; returns the port,
    or 0 when it cannot bind (logged; the daemon runs on without metrics)."""
    try:
        server = make_server(bind, port, make_wsgi_app(REGISTRY), ThreadingWSGIServer,
                             handler_class=_QuietHandler)  # fmt: skip
    except OSError as exc:
        log.error("%s: cannot serve metrics on %s:%d: %s", actor, bind, port, exc)
        return 0
    # the poll interval only bounds how fast a shutdown is noticed (never asked of a daemon
    # thread): a long one keeps an idle daemon from waking twice a second for nothing
    threading.Thread(target=server.serve_forever, args=(IDLE_POLL_S,), name="metrics",
                     daemon=True).start()  # fmt: skip
    bound = int(server.server_address[1])
    log.info("%s: metrics on http://%s:%d/metrics", actor, bind, bound)
    return bound


def cron_fire(kind: str, n: int = 1) -> None:
    if n > 0:
        CRON_FIRES.labels(kind).inc(n)


def serve_daemon(settings: Settings, actor: str) -> Settings:
    """Serve a daemon's /metrics as its settings say; the settings carrying the bound port
    (0 when metrics are off or the port cannot be bound), which the registration publishes."""
    m = settings.metrics
    port = serve(m.bind, m.port, actor) if m.enabled else 0
    return settings.model_copy(update={"metrics": m.model_copy(update={"port": port})})
