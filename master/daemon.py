"""``dagkeeper master``: logging set-up, SIGTERM/SIGINT to stop gracefully (the instances are
handed over to the live masters at once: ``master.handover``), and the serve loop around one
``MasterServer``."""

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
from master.handover import hand_over
from master.listener import Event
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

    def on_signal(*_: object) -> None:  # and wake the loop: the hand-over starts now
        stop.set()
        server.events.put(Event("wake"))

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
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
        # the loop is over: the live masters take our instances now, not a session timeout later
        hand_over(server.sf, server.zk, server.cron, server.master_id, server.epoch)
        server.stop()
    return 0
