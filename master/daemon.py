"""``dagkeeper master``: logging set-up, SIGTERM/SIGINT to stop gracefully, and the serve loop
around one ``MasterServer``."""

from __future__ import annotations

import logging
import signal
import threading

from core import metrics
from core.errors import CoordinationUnavailable
from core.logs import setup_logging
from core.settings import Settings
from master import observe
from master.alert_sender import AlertSender
from master.server import MasterServer

log = logging.getLogger(__name__)


def run(settings: Settings) -> int:
    """Run one master until SIGTERM/SIGINT; 2 if it cannot register."""
    setup_logging(settings.log_level, settings.log_format)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    settings = metrics.serve_daemon(settings, "master")  # bound first: the registration names it
    server = MasterServer(settings)
    observe.install(server)
    try:
        server.start(stop)
    except CoordinationUnavailable as exc:
        log.error("%s", exc)
        return 2
    if settings.alerts.enabled:
        AlertSender(server.sf, settings, server.actor).start(stop)
    log.info("%s: serving", server.actor)
    try:
        server.serve_forever(stop)
    finally:
        server.stop()
    return 0
