"""Who is calling: API tokens (32 random bytes shown once, stored as SHA-256 only), the bootstrap
token (settings or <data_dir>/api-token) acting as the bootstrap admin, the caller (``Principal``)
with its role and project grants, and the limit on failed authentications per client address."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import ApiContext, get_ctx
from core.errors import TooManyRequests, Unauthorized
from core.roles import Action, Role, role_allows
from db import projects as q_projects
from db import users as q_users
from db.models_auth import AppUser

log = logging.getLogger(__name__)

TOKEN_PREFIX = "dkt_"  # noqa: S105 - the visible prefix of every user token, not a secret
TOKEN_BYTES = 32
MAX_TRACKED_CLIENTS = 10_000


def new_token() -> str:
    """A fresh user token: the prefix and 32 random bytes, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the database keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: ``grants`` maps project name -> role (an admin needs none)."""

    user_id: int
    name: str
    role: Role
    bootstrap: bool = False
    grants: dict[str, Role] = field(default_factory=dict)
    token_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def projects(self, action: Action = Action.READ) -> list[str] | None:
        """The projects the caller may ``action`` in; None = all (an admin)."""
        if self.is_admin:
            return None
        return sorted(p for p, r in self.grants.items() if role_allows(r, action))


def principal_of(user: AppUser, grants: dict[str, str], token_id: int | None) -> Principal:
    return Principal(
        user_id=int(user.id),
        name=user.name,
        role=Role(user.role),
        bootstrap=bool(user.bootstrap),
        grants={p: Role(r) for p, r in grants.items()},
        token_id=token_id,
    )


class FailureLimiter:
    """Failed authentications per client address in a sliding window; at ``limit`` failures the
    address gets 429 until the oldest one leaves the window. Thread-safe, bounded memory."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        q = self._fails.get(client)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[client]
            return None
        return q

    def retry_after(self, client: str, now: float | None = None) -> float | None:
        """Seconds until ``client`` may try again, or None when it is not blocked."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(client, now)
            if q is None or len(q) < self.limit:
                return None
            return max(0.0, q[0] + self.window_s - now)

    def fail(self, client: str, now: float | None = None) -> int:
        """Record one failure; how many are in the window now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(client, now)
            if q is None:
                q = self._fails[client] = deque()
                while len(self._fails) > MAX_TRACKED_CLIENTS:
                    self._fails.popitem(last=False)
            q.append(now)
            self._fails.move_to_end(client)
            return len(q)


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


_bearer = HTTPBearer(auto_error=False, description="a user's API token or the bootstrap token")


def _lookup(ctx: ApiContext, presented: str) -> Principal | None:
    with ctx.session_factory.begin() as s:
        if hmac.compare_digest(presented.encode(), ctx.token.encode()):
            admin = q_users.bootstrap(s)
            return principal_of(admin, {}, None)
        found = q_users.live_token(s, token_hash(presented))
        if found is None:
            return None
        token, user = found
        # constant time on the stored hash too (the lookup itself is by an index on the hash)
        if not hmac.compare_digest(token.token_hash, token_hash(presented)):
            return None
        return principal_of(user, q_projects.grants_of(s, user.id), token.id)


def authenticate(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ctx: ApiContext = Depends(get_ctx),
) -> Principal:
    """401 unless ``Authorization: Bearer`` carries a live token (expiry, revocation and the
    user's state are read on every request); 429 while the address has too many failures."""
    client = client_address(request)
    limiter = ctx.limiter
    assert limiter is not None  # ApiContext makes one
    wait = limiter.retry_after(client)
    if wait is not None:
        raise TooManyRequests(
            f"too many failed authentications from {client}; retry in {wait:.0f}s",
            {"retry_after_s": round(wait, 1)},
        )
    if creds is None or not creds.credentials:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    principal = _lookup(ctx, creds.credentials)
    if principal is None:
        n = limiter.fail(client)
        log.info("api: failed authentication from %s (%d in the window)", client, n)
        raise Unauthorized("invalid, expired or revoked API token")
    request.state.principal = principal
    return principal
