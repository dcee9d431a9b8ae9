"""What every request handler needs: the application context (settings, sessions, ZooKeeper),
the API token (settings or a 0600 file under the data dir) and the bearer-token check."""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from common.db.engine import SessionFactory
from common.errors import ConfigError, CoordinationUnavailable, Unauthorized
from common.settings import Settings
from common.zk import ZkClient

log = logging.getLogger(__name__)

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret


def token_file(settings: Settings) -> Path:
    return settings.data_path / TOKEN_FILE


def load_or_create_token(path: Path) -> str:
    """Read the token at ``path``, or create it (0600, random) if missing; race-free between
    processes: the file appears atomically with its content (written aside, then linked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=".api-token.", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
                log.info("api: created API token file %s (mode 0600)", path)
            except FileExistsError:
                pass  # another process won the race: use its token
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("api: token file %s had mode %o; tightening to 0600", path, mode)
        os.chmod(path, 0o600)
    token = path.read_text().strip()
    if not token:
        raise ConfigError(f"API token file {path} is empty; delete it to get a new token")
    return token


def resolve_token(settings: Settings) -> str:
    """``settings.api.token`` if set, else the token of ``<data_path>/api-token``."""
    if settings.api.token:
        return settings.api.token
    return load_or_create_token(token_file(settings))


@dataclass
class ApiContext:
    """Shared by all requests; ``owned_*`` resources are closed when the app shuts down."""

    settings: Settings
    session_factory: SessionFactory
    token: str
    zk: ZkClient
    owns_zk: bool
    owned_engine: Engine | None = None
    _zk_started: bool = False
    _zk_lock: threading.Lock = field(default_factory=threading.Lock)

    def start_zk(self) -> None:
        """Connect an owned client in the background (kazoo keeps retrying); never blocks."""
        with self._zk_lock:
            if self.owns_zk and not self._zk_started:
                self._zk_started = True
                self.zk.client.start_async()
                log.info("api: connecting to ZooKeeper at %s", self.settings.zk.hosts)

    def zk_connected(self, wait_s: float = 0.0) -> bool:
        self.start_zk()
        if self.zk.client.connected:
            return True
        return wait_s > 0 and self.zk.connected.wait(wait_s) and bool(self.zk.client.connected)

    def require_zk(self, wait_s: float = 2.0) -> ZkClient:
        if not self.zk_connected(wait_s):
            raise CoordinationUnavailable(
                f"ZooKeeper at {self.settings.zk.hosts} is not reachable",
                {"hosts": self.settings.zk.hosts},
            )
        return self.zk

    def close(self) -> None:
        if self.owns_zk and self._zk_started:
            self.zk.stop()
            self._zk_started = False
        if self.owned_engine is not None:
            self.owned_engine.dispose()


def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False, description="the API token (settings or api-token file)")


def require_token(
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ctx: ApiContext = Depends(get_ctx),
) -> None:
    """401 unless the request carries ``Authorization: Bearer <token>``."""
    if creds is None or not creds.credentials:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    if not hmac.compare_digest(creds.credentials.encode(), ctx.token.encode()):
        raise Unauthorized("invalid API token")
