"""The worker loop's view of its ZooKeeper session: opening a registration, its events (suspended:
claims pause; resumed; lost), whether it is usable right now and why not, when the running
attempts must be fenced (no answer from ZooKeeper, or a watchdog lapse), how long the loop may
sleep, and when to register again after a loss."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from coord.zk import SESSION_CONNECTED, SESSION_LOST, SESSION_SUSPENDED, zk_errors
from core.errors import CoordinationUnavailable
from worker import WorkerLog
from worker.guardian import Lapse
from worker.heartbeat import Heartbeat
from worker.ports import Clock, Connect, Session

RECONNECT_BACKOFF_S = 1.0  # a failed registration is tried again after this long


class SessionKeeper:
    """Holds the current ``Session`` (None between a loss and the next registration)."""

    def __init__(
        self,
        connect: Connect,
        beat: Heartbeat,
        clock: Clock,
        log: WorkerLog,
        lapses: Callable[[], list[Lapse]] = list,
    ) -> None:
        self._connect = connect
        self._lapses = lapses  # the watchdog's lapses since the last call (the guardian's side)
        self.beat = beat
        self._clock = clock
        self.log = log
        self.session: Session | None = None
        self.suspended_since: float | None = None
        self.next_connect = 0.0
        self.epoch = 0  # of the current registration, else of the last one
        self.registration_paths: list[str] = []

    def open(self, wake: threading.Event, registration: Callable[[], dict[str, Any]]) -> Session:
        """Register (see ``worker.ports.Connect``); the fence's clock starts again."""
        session = self._connect(wake, registration)
        self.session, self.suspended_since = session, None
        self.epoch, self.registration_paths = session.epoch, list(session.registration_paths)
        self.beat.reset()
        wake.set()
        return session

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session, self.suspended_since = None, None

    def lost(self) -> None:
        """The session is gone: close it and register again at once."""
        self.close()
        self.next_connect = 0.0

    def poll_events(self, events: list[str]) -> bool:
        """Apply the session's events; True when it was lost (the caller abandons its attempts,
        then calls ``lost``). What changed is appended to ``events``."""
        session = self.session
        while session is not None:
            event = session.next_event()
            if event is None:
                return False
            if event == SESSION_SUSPENDED and self.suspended_since is None:
                self.log.warning(
                    "ZooKeeper connection suspended (epoch %d); claiming paused", session.epoch
                )
                self.suspended_since = self._clock()
                events.append("ZooKeeper connection suspended")
            elif event == SESSION_CONNECTED and self.suspended_since is not None:
                self.log.info("ZooKeeper session resumed (epoch %d)", session.epoch)
                self.suspended_since = None
                events.append("ZooKeeper session resumed")
            elif event == SESSION_LOST:
                events.append(f"ZooKeeper session lost (epoch {session.epoch})")
                return True
        return False

    def problem(self, now: float) -> str:
        """Why the session cannot be used for claims and writes right now; "" when it can."""
        session = self.session
        if session is None:
            return "no ZooKeeper session"
        if not session.connected():
            return "not connected to ZooKeeper"
        if self.suspended_since is not None:
            return "ZooKeeper connection suspended"
        if not self.beat.in_contact(now):
            return f"no answer from ZooKeeper for {self.beat.silent_for(now):.1f}s"
        return ""

    def fence_due(self, now: float, held: int) -> str | None:
        """Why the ``held`` running attempts must be killed now (said in the log), else None:
        the daemon was frozen past the watchdog deadline (its guardian killed them already), or
        no answer from ZooKeeper for 3/4 of the session timeout (once per loss of contact)."""
        lapses = self._lapses()
        if lapses:
            self.beat.fence_taken()  # the silence of a freeze needs no second kill
            return self._frozen(lapses, held)
        if self.session is None or not self.beat.fence_now(now):
            return None
        silent = self.beat.silent_for(now)
        self.log.error(
            "no answer from ZooKeeper for %.1fs (epoch %d); killing %d tasks before the session "
            "can expire",
            silent,
            self.epoch,
            held,
        )
        return f"fenced {held} attempts after {silent:.1f}s without an answer from ZooKeeper"

    def _frozen(self, lapses: list[Lapse], held: int) -> str:
        silence = max(lapse.silence_s for lapse in lapses)
        killed = {g: t for lapse in lapses for g, t in lapse.groups.items()}
        self.log.error(
            "the worker daemon did not run for %.1fs, past its watchdog deadline: the watchdog "
            "killed tasks %s (process groups %s)%s; fenced, they are reported "
            "NEED_FAULT_TOLERANCE if the session (epoch %d) survived, else left to the masters' "
            "failover",
            silence,
            sorted(killed.values()),
            sorted(killed),
            f", and the {held} attempts still held are fenced too" if held else "",
            self.epoch,
        )
        return f"frozen for {silence:.1f}s: the watchdog killed {len(killed)} tasks"

    def heartbeat(self, load: int, body: Callable[[], bytes] | None) -> None:
        """Publish the load if it changed (``body`` None: the session is not usable for writes),
        else read our znode; the answers are the fence's clock."""
        session = self.session
        if session is None or not session.registration_paths:
            return
        try:
            with zk_errors("heartbeat"):
                self.beat.beat(session.send_beat, load, body)
        except CoordinationUnavailable as exc:  # no answer, no contact: the fence takes over
            self.log.warning("heartbeat failed: %s", exc.message)

    def sweep(self, held: set[int], grace_s: float) -> int:
        """Kill task groups on this host that outlived their worker (see ``worker.orphans``);
        how many. Best effort at start: the guardian covers the usual case."""
        if self.session is None:
            return 0
        try:
            return len(self.session.sweep(held, grace_s, self.log))
        except Exception as exc:
            self.log.warning("start-up sweep of orphaned task groups failed: %s", exc)
            return 0

    def reconnect_due(self, now: float) -> bool:
        return self.session is None and now >= self.next_connect

    def wait_s(self, timeout: float, busy: bool, now: float) -> float:
        """How long the loop may sleep: without a session until the next registration, else
        until the next beat or (with attempts running) the fence."""
        if self.session is None:
            return max(0.0, min(timeout, self.next_connect - now))
        return self.beat.wait_s(timeout, busy, now)
