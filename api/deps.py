"""What every request handler needs: the application context (settings, sessions, ZooKeeper,
the failed-authentication limiter) and the bootstrap token (settings or a 0600 file under the
data dir). Who the caller is and what it may do: api/auth.py and api/auth_scope.py."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request
from sqlalchemy import Engine

from coord.zk import ZkClient
from core import secret_files
from core.errors import CoordinationUnavailable
from core.settings import Settings
from db.engine import SessionFactory

if TYPE_CHECKING:
    from api.auth import FailureLimiter

log = logging.getLogger(__name__)

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret


def token_file(settings: Settings) -> Path:
    return settings.data_path / TOKEN_FILE


def load_or_create_token(path: Path) -> str:
    """Read the token at ``path``, or create it (0600, random) if missing."""
    return secret_files.read_or_create(path, lambda: secrets.token_urlsafe(32), "API token")


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
    limiter: FailureLimiter | None = None  # made from settings.api when not given
    _zk_started: bool = False
    _zk_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.limiter is None:
            from api.auth import FailureLimiter

            api = self.settings.api
            self.limiter = FailureLimiter(api.auth_fail_limit, api.auth_fail_window_s)

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
