"""The worker's heartbeat and the clock of its self-fence: every interval publish the load (or
just read the registration); each answer from ZooKeeper proves contact. Without an answer for a
fraction of the session timeout the worker must kill its tasks before the session can expire."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

# No answer from ZooKeeper for this fraction of the session timeout: kill the running tasks, since
# the session may expire soon and another worker run them again (kazoo itself may notice a dead
# server only after a whole session timeout). Answers come at least every heartbeat interval.
FENCE_FRACTION = 0.75

# Sends one beat: ``data`` to write to the registrations (None: just read one) and the callback
# that the answer calls with whether it succeeded (from the kazoo thread).
BeatSender = Callable[[bytes | None, Callable[[bool], None]], None]


class Heartbeat:
    """Beats (asynchronous, never blocking the loop) and tells when contact is lost. An answer
    only puts (ok, when) on a queue; the loop applies it on its next question."""

    def __init__(
        self,
        interval_s: float,
        session_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.session_timeout_s = session_timeout_s
        self.fence_after = session_timeout_s * FENCE_FRACTION
        self._clock = clock
        self.last_contact = clock()  # last answer from ZooKeeper, the fence's clock
        self.fence_done = False
        self._last_beat = 0.0
        self._pending = False
        self._published_load = 0
        self._answers: queue.SimpleQueue[tuple[bool, float]] = queue.SimpleQueue()

    def reset(self) -> None:
        """A new session: in contact now, nothing fenced."""
        self.fence_done = False
        self.last_contact = self._clock()

    def in_contact(self, now: float) -> bool:
        self._collect()
        return now - self.last_contact < self.fence_after

    def silent_for(self, now: float) -> float:
        """Seconds since the last answer."""
        self._collect()
        return now - self.last_contact

    def fence_taken(self) -> None:
        """The running attempts were killed for this silence already (a watchdog lapse): the
        fence is not due again until contact has come back and gone."""
        self.fence_done = True

    def fence_now(self, now: float) -> bool:
        """True once per loss of contact: the moment to kill the running tasks."""
        if self.in_contact(now):
            self.fence_done = False
            return False
        if self.fence_done:
            return False
        self.fence_done = True
        return True

    def wait_s(self, timeout: float, busy: bool, now: float) -> float:
        """How long the loop may sleep: until the next beat (an unanswered one is sent again only
        after a session timeout) and, with tasks running, the fence."""
        self._collect()
        due = self._last_beat + self.interval_s
        if self._pending:
            due = max(due, self._last_beat + self.session_timeout_s)
        if busy and not self.fence_done:
            due = min(due, self.last_contact + self.fence_after)
        return max(0.0, min(timeout, due - now))

    def beat(self, send: BeatSender, load: int, body: Callable[[], bytes] | None) -> None:
        """If due: write ``body()`` to every registration when ``load`` changed (``body`` None:
        the session is not usable for writes), else read one. Raises on a client error."""
        self._collect()
        now = self._clock()
        if now - self._last_beat < self.interval_s or (
            self._pending and now - self._last_beat < self.session_timeout_s
        ):
            return
        self._last_beat, self._pending = now, True
        try:
            if load != self._published_load and body is not None:
                send(body(), self._on_answer)
                self._published_load = load
            else:
                send(None, self._on_answer)
        except Exception:
            self._pending = False
            raise

    def _on_answer(self, ok: bool) -> None:
        # kazoo thread: queue the answer, nothing else
        self._answers.put((ok, self._clock()))

    def _collect(self) -> None:
        while True:
            try:
                ok, at = self._answers.get_nowait()
            except queue.Empty:
                return
            if ok:
                self.last_contact = max(self.last_contact, at)
            else:
                self._published_load = -1
            self._pending = False
