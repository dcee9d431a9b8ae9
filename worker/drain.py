"""A worker's drain without a stop (``dagkeeper worker drain <id>``, ``coord.drain``): while the
request znode exists the worker claims nothing, claims not started yet go back to the queue, the
running attempts may finish until the deadline, then the rest are killed and handed over
(NEED_FAULT_TOLERANCE: re-run elsewhere without using a retry). ``decide`` is the pure rule."""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any

from coord import drain as requests
from coord.drain import DrainRequest
from coord.zk import ZkClient
from worker import WorkerLog
from worker.attempt import Cancel
from worker.inflight import InFlight


@dataclass(frozen=True)
class DrainStep:
    draining: bool
    kill_rest: bool  # the deadline passed with attempts still running: kill them now
    reason: str


def decide(
    req: DrainRequest | None,
    since: float,
    now: float,
    default_deadline_s: float,
    running: int,
    killed: bool,
) -> DrainStep:
    """What a draining worker does on this pass (``since``: when the drain began)."""
    if req is None:
        return DrainStep(False, False, "")
    deadline = req.deadline_s if req.deadline_s is not None else default_deadline_s
    left = since + deadline - now
    if running == 0:
        return DrainStep(True, False, "draining: nothing running, not claiming")
    if left > 0:
        return DrainStep(
            True, False, f"draining: {running} running, {left:.1f}s left of {deadline:g}s"
        )
    if killed:
        return DrainStep(True, False, f"draining: {running} killed past the deadline, handing over")
    return DrainStep(
        True, True, f"draining: deadline {deadline:g}s passed, killing {running} to hand them over"
    )


class Drain:
    """The watch on this worker's drain request (one per ZooKeeper session) and the drain's
    clock; ``run`` is called once per loop pass."""

    def __init__(self, worker_id: str, deadline_s: float, log: WorkerLog) -> None:
        self.worker_id = worker_id
        self.deadline_s = deadline_s
        self.log = log
        self.request: DrainRequest | None = None
        self.since = 0.0
        self._killed = False
        self._watched: Any = None  # the kazoo client the data watch is on
        self._updates: queue.SimpleQueue[tuple[Any, DrainRequest | None]] = queue.SimpleQueue()
        self._wake: Any = None

    @property
    def active(self) -> bool:
        return self.request is not None

    def watch(self, zk: ZkClient | None, wake: Any) -> None:
        """Install the data watch on a new session's client (its first read is synchronous)."""
        if zk is None or zk.client is self._watched:
            return
        client, self._watched, self._wake = zk.client, zk.client, wake

        def on_data(data: bytes | None, _stat: Any, *_: Any) -> bool | None:
            if self._watched is not client:
                return False  # an old session's watch: end it
            self._updates.put((client, requests.parse(data)))  # kazoo thread: queue, wake
            if self._wake is not None:
                self._wake.set()
            return None

        client.DataWatch(zk.paths.drain(self.worker_id), on_data)

    def run(
        self, zk: ZkClient | None, wake: Any, inflight: InFlight, now: float, events: list[str]
    ) -> int:
        """One pass (``zk``: the session's client while it is usable): watch, take the watch's
        news, then kill the rest once the deadline has passed; how many were cancelled."""
        self.watch(zk, wake)
        while True:
            try:
                client, req = self._updates.get_nowait()
            except queue.Empty:
                break
            if client is self._watched:
                self._apply(req, inflight, now, events)
        step = decide(self.request, self.since, now, self.deadline_s, len(inflight.held),
                      self._killed)  # fmt: skip
        if not step.kill_rest:
            return 0
        self._killed = True
        self.log.warning("%s", step.reason)
        events.append(step.reason)
        return inflight.cancel_all(Cancel.SHUTDOWN)

    def _apply(
        self, req: DrainRequest | None, inflight: InFlight, now: float, events: list[str]
    ) -> None:
        if req is None and self.request is not None:
            self.log.info("drain request withdrawn: claiming again")
            events.append("drain withdrawn")
        elif req is not None and self.request is None:
            self.since, self._killed = now, False
            inflight.withdraw_all()  # claims not started yet go back to the queue
            deadline = req.deadline_s if req.deadline_s is not None else self.deadline_s
            self.log.info(
                "drain requested by %s: claiming nothing, %d running may finish within %gs",
                req.by or "?",
                len(inflight.held),
                deadline,
            )
            events.append("drain requested")
        self.request = req

    def reason(self, now: float, running: int) -> str | None:
        """Why the claim pass claims nothing (None when not draining)."""
        if self.request is None:
            return None
        return decide(self.request, self.since, now, self.deadline_s, running, self._killed).reason

    def forget(self, zk: ZkClient | None) -> None:
        """A graceful stop: the request is fulfilled, delete it (best effort)."""
        self._watched = None
        if zk is not None and self.request is not None:
            try:
                requests.cancel(zk, self.worker_id)
            except Exception:  # closed or disconnected: a leftover request names a dead id
                self.log.debug("could not delete the drain request", exc_info=True)
