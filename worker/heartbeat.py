"""The worker's heartbeat and the clock of its self-fence: every interval publish the load (or
just read the registration); each answer from ZooKeeper proves contact. Without an answer for a
fraction of the session timeout the worker must kill its tasks before the session can expire."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from coord.zk import ZkClient

# No answer from ZooKeeper for this fraction of the session timeout: kill the running tasks, since
# the session may expire soon and another worker run them again (kazoo itself may notice a dead
# server only after a whole session timeout). Answers come at least every heartbeat interval.
FENCE_FRACTION = 0.75


class Heartbeat:
    """Beats (asynchronous, never blocking the loop) and tells when contact is lost."""

    def __init__(self, interval_s: float, session_timeout_s: float) -> None:
        self.interval_s = interval_s
        self.session_timeout_s = session_timeout_s
        self.fence_after = session_timeout_s * FENCE_FRACTION
        self.last_contact = time.monotonic()  # last answer from ZooKeeper, the fence's clock
        self.fence_done = False
        self._last_beat = 0.0
        self._pending = False
        self._published_load = 0

    def reset(self) -> None:
        """A new session: in contact now, nothing fenced."""
        self.fence_done = False
        self.last_contact = time.monotonic()

    def in_contact(self, now: float) -> bool:
        return now - self.last_contact < self.fence_after

    def fence_now(self, now: float) -> bool:
        """True once per loss of contact: the moment to kill the running tasks."""
        if self.in_contact(now):
            self.fence_done = False
            return False
        if self.fence_done:
            return False
        self.fence_done = True
        return True

    def wait_s(self, timeout: float, busy: bool) -> float:
        """How long the loop may sleep: until the next beat and, with tasks running, the fence."""
        due = self._last_beat + self.interval_s
        if busy and not self.fence_done:
            due = min(due, self.last_contact + self.fence_after)
        return max(0.0, min(timeout, due - time.monotonic()))

    def beat(
        self, zk: ZkClient, paths: list[str], load: int, body: Callable[[], bytes] | None
    ) -> None:
        """If due: write ``body()`` to every path when ``load`` changed (``body`` None: the
        session is not usable for writes), else read the first path. Raises on a client error."""
        now = time.monotonic()
        if now - self._last_beat < self.interval_s or (
            self._pending and now - self._last_beat < self.session_timeout_s
        ):
            return
        self._last_beat, self._pending = now, True
        try:
            if load != self._published_load and body is not None:
                data = body()
                results = [zk.client.set_async(path, data) for path in paths]
                self._published_load = load
            else:
                results = [zk.client.exists_async(paths[0])]
            results[0].rawlink(self._on_beat)
        except Exception:
            self._pending = False
            raise

    def _on_beat(self, result: Any) -> None:
        # kazoo thread: note the answer, nothing else
        if result.successful():
            self.last_contact = time.monotonic()
        else:
            self._published_load = -1
        self._pending = False
