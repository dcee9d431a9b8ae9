"""``dagkeeper worker``: logging set-up, signal handling (SIGTERM/SIGINT stop gracefully, a second
one cuts the grace short) and the serve loop around one ``WorkerServer``."""

from __future__ import annotations

import signal
import threading
from typing import Any

from core import metrics
from core.errors import DatabaseUnavailable
from core.logs import setup_logging
from core.settings import Settings, get_settings
from db.engine import db_errors
from worker import observe, prune
from worker.server import WorkerServer

# How often a worker that cannot reach PostgreSQL at start (no epoch, no sweep) tries again.
START_RETRY_S = 1.0


def run(settings: Settings | None = None) -> int:
    """Run one worker until SIGTERM/SIGINT; 1 if it cannot start."""
    settings = settings or get_settings()
    setup_logging(settings.log_level, settings.log_format)
    settings = metrics.serve_daemon(settings, "worker")  # bound first: the registration names it
    server = WorkerServer(settings)
    observe.install(server)
    stop_event = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop_event.is_set():
            server.log.warning("signal %d again: stopping now", signum)
            server.hurry()
        else:
            server.log.info("signal %d: stopping gracefully", signum)
            stop_event.set()
            server.wakeup()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        if not _start(server, stop_event):
            return 1
        prune.start(server.engine, settings, stop_event, f"worker {server.worker_id}")
        server.serve_forever(stop_event)
        return 0
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _start(server: WorkerServer, stop_event: threading.Event) -> bool:
    """Start ``server``, waiting (and saying so every second) while PostgreSQL cannot be
    reached: without it there is no epoch to register with. False when stopped first or on any
    other error (a bad setting, no ZooKeeper), which is logged."""
    while True:
        try:
            with db_errors("start"), server.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            server.start()
            return True
        except DatabaseUnavailable as exc:
            server.log.error("cannot reach PostgreSQL, retrying start: %s", exc.message)
            if stop_event.wait(START_RETRY_S):
                return False
        except Exception as exc:
            server.log.error("cannot start: %s", exc)
            return False
