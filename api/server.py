"""The `dagkeeper api` daemon: uvicorn serving create_app(settings); SIGTERM/SIGINT stop it
gracefully (in-flight requests finish), and it logs the address it listens on."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Generator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from core.errors import DagkeeperError
from core.logs import setup_logging
from core.settings import Settings

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
GRACEFUL_SHUTDOWN_S = 10


class ApiServer(uvicorn.Server):
    """uvicorn's server without its re-raise of the stop signal, so ``main`` returns 0; a
    second signal forces the exit. Set ``should_exit`` to stop it from another thread."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.bound: list[tuple[str, int]] = []
        self.ready = threading.Event()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            log.warning("api: signal %d again: forcing exit", sig)
            self.force_exit = True
        else:
            log.info("api: signal %d: stopping gracefully", sig)
        self.should_exit = True

    # Overrides uvicorn.Server.capture_signals (serve() enters it): the same handlers, but the
    # caught signal is not raised again on the way out, so `dagkeeper api` exits 0.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be handled in the main thread
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for srv in getattr(self, "servers", []):
            for sock in srv.sockets:
                host, port = sock.getsockname()[:2]
                self.bound.append((str(host), int(port)))
                log.info("api: listening on http://%s:%d (API under /api/v1)", host, port)
        self.ready.set()


def build_server(settings: Settings, app: FastAPI | None = None) -> ApiServer:
    """An unstarted server; ``run()`` blocks (it may run in a thread: then stop it with
    ``should_exit = True``)."""
    config = uvicorn.Config(
        app if app is not None else create_app(settings),
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,  # the process's logging setup is kept
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )
    return ApiServer(config)


def main(settings: Settings) -> int:
    """Run the API server until SIGTERM/SIGINT; 0 after a clean stop, non-zero on failure."""
    setup_logging(settings.log_level)
    try:
        server = build_server(settings)
    except DagkeeperError as exc:
        log.error("api: cannot start: %s", exc.message)
        return 2
    log.info("api: starting on %s:%d", settings.api.host, settings.api.port)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind or the lifespan fails
        log.error("api: failed to start on %s:%d", settings.api.host, settings.api.port)
        return exc.code if isinstance(exc.code, int) and exc.code else 1
    if not server.started:
        return 1
    log.info("api: stopped")
    return 0
