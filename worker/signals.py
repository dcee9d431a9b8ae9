"""The worker's inbox of requests from masters and the API (``coord.signals``): one long-lived
children watch on ``<signals>/<worker id>`` that queues each new list; the claim loop takes what
is new, acts on it and deletes each request znode (those about attempts not held here too)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import TypeVar

from kazoo.exceptions import NoNodeError

from coord.zk import ZkClient

H = TypeVar("H")

RETRY_S = 2.0  # a request whose deletion did not take is handled again after this long


class SignalInbox:
    """The latest list of pending requests; ``take()`` returns those not handled yet."""

    def __init__(self, zk: ZkClient, worker_id: str, wake: threading.Event) -> None:
        self.zk = zk
        self.path = zk.paths.signals(worker_id)
        self._wake = wake
        self._lists: queue.SimpleQueue[list[str]] = queue.SimpleQueue()  # from the watch
        self._pending: list[str] = []
        self._handled: dict[str, float] = {}
        self._closed = False

    def start(self) -> None:
        self.zk.watch_children(self.path, self._on_children)

    def close(self) -> None:
        self._closed = True

    def _on_children(self, children: list[str]) -> None:
        # kazoo thread: queue the list and wake the loop, nothing else
        if self._closed:
            return
        self._lists.put(list(children))
        self._wake.set()

    def take(self) -> list[int]:
        """Task instance ids with a request not handled in the last RETRY_S seconds."""
        now = time.monotonic()
        while True:
            try:
                self._pending = self._lists.get_nowait()  # the newest list wins
            except queue.Empty:
                break
        pending = self._pending
        current = set(pending)
        self._handled = {n: t for n, t in self._handled.items() if n in current}
        out = []
        for name in pending:
            t = self._handled.get(name)
            if t is not None and now - t < RETRY_S:
                continue
            self._handled[name] = now
            if name.isdigit():
                out.append(int(name))
            else:
                self._delete(name)
        return out

    def handle(
        self,
        held: Mapping[int, H],
        log: logging.LoggerAdapter | logging.Logger,  # type: ignore[type-arg]
    ) -> list[H]:
        """The held attempts with a new kill request (to cancel); every new request is deleted,
        including those about attempts not held here."""
        out = []
        for ti_id in self.take():
            h = held.get(ti_id)
            if h is not None:
                log.info("task %d: kill requested", ti_id)
                out.append(h)
            else:
                log.info("task %d: kill requested, but not held here; dropped", ti_id)
            self.done(ti_id)
        return out

    def done(self, task_instance_id: int) -> None:
        """The request has been acted upon: delete it (asynchronously; failures are retried)."""
        self._delete(str(task_instance_id))

    def _delete(self, name: str) -> None:
        try:
            self.zk.client.delete_async(f"{self.path}/{name}")
        except Exception:  # closed or disconnected client: the next pass retries
            self._handled.pop(name, None)

    def remove_all(self) -> None:
        """A graceful stop: drop the inbox (nothing will be sent to this worker id again)."""
        self._closed = True
        try:
            self.zk.client.delete(self.path, recursive=True)
        except NoNodeError:
            pass
        except Exception:  # best effort: a leftover empty inbox is harmless
            return
