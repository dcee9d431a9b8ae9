"""The ZooKeeper client wrapper: connection with session state events that never block, epoch-
bearing ephemeral registration (the epoch, from PostgreSQL, is in the znode's data), the
namespace's digest ACLs, and helpers shared by masters and workers."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.recipe.watchers import ChildrenWatch
from kazoo.retry import KazooRetry
from kazoo.security import ACL, make_digest_acl

from core.errors import CoordinationUnavailable
from core.settings import ZkSettings
from core.zk_paths import ZkPaths

log = logging.getLogger(__name__)

# Session events put on ``ZkClient.events`` for the owning loop to act on.
SESSION_SUSPENDED = "SUSPENDED"
SESSION_LOST = "LOST"
SESSION_CONNECTED = "CONNECTED"


# What an unreachable ensemble (or a session gone meanwhile) raises from a kazoo call.
OUTAGE_ERRORS = (ConnectionLoss, ConnectionClosedError, SessionExpiredError, KazooTimeoutError)


@contextmanager
def zk_errors(actor: str) -> Iterator[None]:
    """Turn a ZooKeeper outage raised inside the block into one ``CoordinationUnavailable``."""
    try:
        yield
    except OUTAGE_ERRORS as exc:
        raise CoordinationUnavailable(
            f"{actor}: ZooKeeper unreachable ({type(exc).__name__}: {exc})"
        ) from exc


def acl_options(zk: ZkSettings) -> dict[str, Any]:
    """KazooClient keywords for the namespace's digest ACL (``auth_data`` and ``default_acl``:
    every znode a client creates is then readable and writable with the credentials only); no
    keywords when the settings carry no credentials."""
    creds = zk.digest_auth()
    if creds is None:
        return {}
    user, password = creds
    return {
        "auth_data": [("digest", f"{user}:{password}")],
        "default_acl": [make_digest_acl(user, password, all=True)],
    }


def _same_acl(current: list[ACL], wanted: list[ACL]) -> bool:
    return sorted(map(repr, current)) == sorted(map(repr, wanted))


class ZkClient:
    """A KazooClient plus a queue of session events; callbacks only enqueue, never block."""

    def __init__(self, zk: ZkSettings, name: str = "node") -> None:
        self.settings = zk
        self.paths = ZkPaths(zk.root)
        self.name = name
        self.events: queue.Queue[str] = queue.Queue()
        self.connected = threading.Event()
        self.client = KazooClient(
            hosts=zk.hosts,
            timeout=zk.session_timeout_s,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
            command_retry=KazooRetry(max_tries=3, delay=0.05, max_delay=0.5),
            **acl_options(zk),
        )
        self.client.add_listener(self._on_state)
        self._suspended_timer: threading.Timer | None = None

    def _on_state(self, state: str) -> None:
        if self._suspended_timer is not None:
            self._suspended_timer.cancel()
            self._suspended_timer = None
        if state == KazooState.CONNECTED:
            self.connected.set()
            self.events.put(SESSION_CONNECTED)
        elif state == KazooState.SUSPENDED:
            self.connected.clear()
            self.events.put(SESSION_SUSPENDED)
            timer = threading.Timer(self.settings.session_timeout_s, self._forget_zxid)
            timer.daemon = True
            self._suspended_timer = timer
            timer.start()
        elif state == KazooState.LOST:
            self.connected.clear()
            self.events.put(SESSION_LOST)

    def _forget_zxid(self) -> None:
        """Disconnected for a whole session timeout: the session is gone anyway. Forget the last
        zxid we saw, or a wiped (new, empty) ensemble, whose zxids start again at 0, refuses
        us for ever ("client has seen zxid ..."); it then answers "session expired" (LOST)."""
        if not self.connected.is_set() and self.client.last_zxid:
            log.warning(
                "%s: no ZooKeeper connection for %ss; forgetting last zxid %#x",
                self.name,
                self.settings.session_timeout_s,
                self.client.last_zxid,
            )
            self.client.last_zxid = 0

    def start(self) -> None:
        try:
            self.client.start(timeout=self.settings.connect_timeout_s)
        except Exception as exc:
            raise CoordinationUnavailable(
                f"{self.name}: cannot reach ZooKeeper at {self.settings.hosts}: {exc}"
            ) from exc
        self.ensure_roots()

    def stop(self) -> None:
        if self._suspended_timer is not None:
            self._suspended_timer.cancel()
        try:
            self.client.stop()
            self.client.close()
        except Exception:  # closing a dead client must never raise during shutdown
            log.debug("%s: error while closing ZooKeeper client", self.name, exc_info=True)

    def ensure_roots(self) -> None:
        self.client.ensure_path(self.paths.root)
        self.secure_namespace()
        for path in self.paths.all_roots():
            self.client.ensure_path(path)

    def secure_namespace(self) -> int:
        """With ACLs on, a namespace created before them (its root is open) gets the digest ACL
        on every znode under the root, once; returns how many znodes were changed."""
        wanted = self.client.default_acl
        root = self.paths.root
        if not wanted or root == "/":
            return 0
        current, _ = self.client.get_acls(root)
        if _same_acl(current, wanted):
            return 0
        changed, todo = 0, [root]
        while todo:
            path = todo.pop()
            try:
                self.client.set_acls(path, wanted)
                todo.extend(f"{path}/{c}" for c in self.client.get_children(path))
                changed += 1
            except NoNodeError:
                continue
        log.warning(
            "%s: ZooKeeper namespace %s was open; digest ACL set on %d znode(s)",
            self.name,
            root,
            changed,
        )
        return changed

    @property
    def session_id(self) -> int:
        sid = self.client.client_id
        return int(sid[0]) if sid else 0

    def register(self, path: str, data: dict[str, Any], epoch: int) -> int:
        """Create the ephemeral membership znode with ``epoch`` in its data (``"epoch"``) and
        return it. The epoch comes from PostgreSQL (``db.epochs.next_epoch``): a czxid
        would repeat after ZooKeeper's data is wiped, an epoch must not."""
        if epoch <= 0:
            raise ValueError(f"{self.name}: a registration needs a positive epoch, not {epoch}")
        parent = path.rsplit("/", 1)[0]
        self.client.ensure_path(parent)
        body = json.dumps({**data, "epoch": epoch}).encode()
        try:
            self.client.create(path, body, ephemeral=True)
        except NodeExistsError:
            # A znode of our own earlier session that has not expired yet: replace it only if
            # it belongs to this session; otherwise another live node uses this id.
            _, stat = self.client.get(path)
            if stat.ephemeralOwner != self.session_id:
                raise CoordinationUnavailable(
                    f"{self.name}: {path} is held by another live session "
                    f"({stat.ephemeralOwner:#x}); is a second node running with this id?"
                ) from None
            self.client.set(path, body)
        return epoch

    def member_epoch(self, path: str) -> int | None:
        """The epoch of a live registration (None once it is gone)."""
        try:
            raw, stat = self.client.get(path)
        except NoNodeError:
            return None
        return registration_epoch(raw, int(stat.czxid))

    def set_json(self, path: str, data: dict[str, Any]) -> None:
        self.client.set(path, json.dumps(data).encode())

    def get_json(self, path: str) -> dict[str, Any] | None:
        try:
            raw, _ = self.client.get(path)
        except NoNodeError:
            return None
        try:
            value = json.loads(raw.decode() or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def children(self, path: str) -> list[str]:
        try:
            return list(self.client.get_children(path))
        except NoNodeError:
            return []

    def watch_children(self, path: str, callback: Callable[[list[str]], None]) -> ChildrenWatch:
        """One long-lived children watch; ``callback`` must not block. The watch ends for good
        if ``path`` is missing when it re-reads (after a new session on a wiped ensemble)."""
        self.client.ensure_path(path)
        return self.client.ChildrenWatch(path, callback)


def registration_epoch(raw: bytes, czxid: int) -> int:
    """The epoch a registration znode carries in its data; the czxid only for a znode written
    by a node without one (an older version), which is what such a node used as its epoch."""
    try:
        data = json.loads(raw.decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        data = None
    value = data.get("epoch") if isinstance(data, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return czxid
