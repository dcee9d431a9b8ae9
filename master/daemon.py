"""``dagkeeper master``: logging set-up, SIGTERM/SIGINT to stop gracefully, and the serve loop
around one ``MasterServer``."""

from __future__ import annotations

import logging
import signal
import threading

from core.errors import CoordinationUnavailable
from core.logs import setup_logging
from core.settings import Settings
from master.server import MasterServer

log = logging.getLogger(__name__)


def run(settings: Settings) -> int:
    """Run one master until SIGTERM/SIGINT; 2 if it cannot register."""
    setup_logging(settings.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = MasterServer(settings)
    try:
        server.start(stop)
    except CoordinationUnavailable as exc:
        log.error("%s", exc)
        return 2
    log.info("%s: serving", server.actor)
    try:
        server.serve_forever(stop)
    finally:
        server.stop()
    return 0
