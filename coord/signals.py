"""Requests to a worker about an attempt it holds (today: kill), as persistent znodes
``<signals>/<worker id>/<task instance id>`` that the worker watches and deletes once handled."""

from __future__ import annotations

import json
import logging
import time

from kazoo.exceptions import NodeExistsError, NoNodeError

from coord.zk import ZkClient
from core.states import TaskState

log = logging.getLogger(__name__)

# the kind of a kill request: the state the attempt is reported in once killed
KILL = TaskState.KILL.value


def request_kill(zk: ZkClient, worker_id: str, task_instance_id: int, by: str = "") -> bool:
    """Ask ``worker_id`` to kill its attempt ``task_instance_id`` (SIGTERM, then SIGKILL after
    its kill grace; reported KILL with its lease token). Persistent, so a worker that is briefly
    disconnected still sees it; idempotent. False if a request was already pending."""
    path = zk.paths.signal(worker_id, task_instance_id)
    body = json.dumps({"kind": KILL, "by": by, "at": time.time()}).encode()
    try:
        zk.client.create(path, body, makepath=True)
    except NodeExistsError:
        return False
    log.info("%s: kill of task %d requested from worker %s", by or "?", task_instance_id, worker_id)
    return True


def pending(zk: ZkClient, worker_id: str) -> list[int]:
    """Task instance ids with a pending request for ``worker_id`` (ignores malformed names)."""
    return sorted(int(n) for n in zk.children(zk.paths.signals(worker_id)) if n.isdigit())


def clear(zk: ZkClient, worker_id: str, task_instance_id: int) -> None:
    """Delete one request (already gone is fine)."""
    try:
        zk.client.delete(zk.paths.signal(worker_id, task_instance_id))
    except NoNodeError:
        pass
