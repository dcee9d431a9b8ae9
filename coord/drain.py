"""Drain requests to a worker (``dagkeeper worker drain <id>``): a persistent znode
``<drains>/<worker id>`` whose data says who asked, when, and an optional deadline. The worker
watches it (a data watch: created, changed, deleted), claims nothing new while it exists, and
deletes it when it stops; deleting it by hand (``--cancel``) makes the worker claim again."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError

from coord.zk import ZkClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainRequest:
    by: str
    at: float
    deadline_s: float | None  # None: the worker's own worker.drain_deadline_s


def parse(raw: bytes | None) -> DrainRequest | None:
    """The request a znode's data holds; an unreadable body is a request with the defaults."""
    if raw is None:
        return None
    try:
        doc: Any = json.loads(raw.decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    deadline = doc.get("deadline_s")
    ok = isinstance(deadline, int | float) and not isinstance(deadline, bool) and deadline >= 0
    at = doc.get("at")
    return DrainRequest(
        str(doc.get("by", "")),
        float(at) if isinstance(at, int | float) else 0.0,
        float(deadline) if ok else None,
    )


def request(zk: ZkClient, worker_id: str, by: str, deadline_s: float | None = None) -> bool:
    """Ask ``worker_id`` to drain; False when a request was already pending (it is kept)."""
    body = json.dumps({"by": by, "at": time.time(), "deadline_s": deadline_s}).encode()
    try:
        zk.client.create(zk.paths.drain(worker_id), body, makepath=True)
    except NodeExistsError:
        return False
    log.info("%s: drain of worker %s requested (deadline %s)", by, worker_id, deadline_s)
    return True


def cancel(zk: ZkClient, worker_id: str) -> bool:
    """Withdraw the request: the worker claims again. False when there was none."""
    try:
        zk.client.delete(zk.paths.drain(worker_id))
    except NoNodeError:
        return False
    return True


def pending(zk: ZkClient, worker_id: str) -> DrainRequest | None:
    try:
        raw, _ = zk.client.get(zk.paths.drain(worker_id))
    except NoNodeError:
        return None
    return parse(raw)
