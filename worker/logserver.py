"""The worker's log server (the seed's LoggerServer), a small threaded HTTP server behind the shared
log token: a window of a task's log lines, a follow stream while the attempt runs here, a download.

The client names a task-instance id only; the server finds the file (its own record of running
attempts, else ``log_path`` in PostgreSQL) and serves it only from inside the log dir."""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine, text

from core.errors import LogRequestError
from core.settings import Settings
from core.tasklogs import LogPathRefused, confined, decode_line, read_window, resolve_token
from worker import WorkerLog
from worker.logship import LogShipper

_ROUTE = re.compile(r"/logs/(\d{1,18})(/download)?")
_LOG_PATH = text("SELECT log_path FROM task_instance WHERE id = :id")
MAX_LIMIT = 10000
FOLLOW_POLL_S = 0.1
READ_BLOCK = 65536
MAX_LINE = 1 << 20  # a longer line without a newline is sent in pieces


class LogServer:
    """``start()`` binds (port 0 = a free one) and serves in a thread; ``url`` is published in
    the worker's registration; ``close()`` stops it and ends every follow stream."""

    def __init__(
        self, settings: Settings, engine: Engine, shipper: LogShipper, worker_id: str
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.shipper = shipper
        self.log = WorkerLog(__name__, worker_id)
        self.log_root = settings.log_path
        self.token = resolve_token(settings)
        self.closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        cfg = self.settings.logs
        self.closing.clear()
        httpd = ThreadingHTTPServer((cfg.server_bind, cfg.server_port), _Handler)
        httpd.daemon_threads = True
        httpd.logserver = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="log-server"
        )
        self._thread.daemon = True
        self._thread.start()
        self.log.info("log server listening on %s (%s)", self.url, cfg.server_bind)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1]) if self._httpd else 0

    @property
    def url(self) -> str:
        cfg = self.settings.logs
        host = cfg.server_advertise or (
            self.settings.worker.host
            if cfg.server_bind in ("", "0.0.0.0", "::")
            else cfg.server_bind
        )
        return f"http://{host}:{self.port}" if self._httpd else ""

    def close(self) -> None:
        self.closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # what a request may read

    def authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.encode(), self.token.encode()
        )

    def locate(self, ti_id: int) -> tuple[Path, bool]:
        """The attempt's log file and whether it still runs here. Raises LogRequestError: 404
        unknown, 403 outside the log directory."""
        live = self.shipper.path_of(ti_id)
        recorded: str | Path | None = live
        if recorded is None:
            with self.engine.connect() as conn:
                recorded = conn.execute(_LOG_PATH, {"id": ti_id}).scalar_one_or_none()
        if not recorded:
            raise LogRequestError(HTTPStatus.NOT_FOUND, f"task instance {ti_id} has no log here")
        try:
            path = confined(self.log_root, recorded)
        except LogPathRefused:
            self.log.warning(
                "log server: task %d: refusing %s (outside the log dir)", ti_id, recorded
            )
            raise LogRequestError(
                HTTPStatus.FORBIDDEN, f"task instance {ti_id}: its log is outside the log directory"
            ) from None
        if not path.is_file():
            raise LogRequestError(
                HTTPStatus.NOT_FOUND, f"task instance {ti_id} has no log file here"
            )
        return path, live is not None and self.shipper.path_of(ti_id) is not None


class _Handler(BaseHTTPRequestHandler):
    server_version = "dagkeeper-logs"

    @property
    def ls(self) -> LogServer:
        return self.server.logserver  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        self.ls.log.debug("log server: " + format, *args)

    def do_GET(self) -> None:
        try:
            self._get()
        except LogRequestError as exc:
            status = HTTPStatus(exc.http_status)
            self._json(status, {"error": {"code": status.phrase, "message": exc.message}})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader went away

    def _get(self) -> None:
        if not self.ls.authorized(self.headers.get("Authorization")):
            raise LogRequestError(HTTPStatus.UNAUTHORIZED, "missing or invalid log token")
        url = urlsplit(self.path)
        m = _ROUTE.fullmatch(url.path)
        if m is None:
            raise LogRequestError(
                HTTPStatus.NOT_FOUND, "no such resource: use /logs/<task instance id>[/download]"
            )
        ti_id = int(m.group(1))
        query = parse_qs(url.query)
        skip = _int(query, "skip", 0, 0, 1 << 62)
        limit = _int(query, "limit", 1000, 1, MAX_LIMIT)
        path, running = self.ls.locate(ti_id)
        if m.group(2):
            self._download(ti_id, path)
        elif query.get("follow", ["false"])[0].lower() in ("1", "true", "yes"):
            self._follow(ti_id, path, skip)
        else:
            lines, at_end = read_window(path, skip, limit, final=not running)
            self._json(
                HTTPStatus.OK,
                {"lines": lines, "next": skip + len(lines), "complete": not running and at_end,
                 "running": running},
            )  # fmt: skip

    def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _download(self, ti_id: int, path: Path) -> None:
        with path.open("rb") as fh:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Disposition", f'attachment; filename="task-{ti_id}.log"')
            self.end_headers()
            while block := fh.read(READ_BLOCK):
                self.wfile.write(block)

    def _follow(self, ti_id: int, path: Path, skip: int) -> None:
        """Lines from ``skip`` on, as they are written, until the attempt is over here and every
        line was sent (a last line without its newline gets one). The response has no length:
        it ends when the connection closes."""
        ls = self.ls
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        with path.open("rb") as fh:
            pending, to_skip = b"", skip
            while not ls.closing.is_set():
                over = ls.shipper.path_of(ti_id) is None  # read before the file: no line lost
                data = fh.read(READ_BLOCK)
                if data:
                    pending += data
                    cut = pending.rfind(b"\n") + 1
                    if not cut and len(pending) > MAX_LINE:
                        cut = len(pending)
                    out, pending = pending[:cut], pending[cut:]
                    while to_skip and out:  # lines the reader has already
                        nl = out.find(b"\n")
                        out = out[nl + 1 :] if nl >= 0 else b""
                        to_skip -= nl >= 0
                    if out:
                        self.wfile.write(out)
                        self.wfile.flush()
                    continue
                if over:
                    if pending and not to_skip:
                        self.wfile.write(decode_line(pending).encode() + b"\n")
                    return
                time.sleep(FOLLOW_POLL_S)


def _int(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name, [str(default)])[0]
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise LogRequestError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer in [{lo}, {hi}]")
    return int(raw)
