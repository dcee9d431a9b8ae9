"""The worker server: its lifecycle (start, the serve loop, a graceful stop) and ``run_once``, one
pass of the loop returning a ``Pass``; an outage of ZooKeeper or PostgreSQL ends a pass and puts
the worker into its safe mode (no claims for a moment). Session handling: ``worker.session``."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import wait as wait_futures
from enum import StrEnum
from functools import partial
from typing import Any

from sqlalchemy import Engine

from coord.zk import ZkClient, zk_errors
from core.errors import CoordinationUnavailable, DatabaseUnavailable
from core.settings import Settings
from db.engine import db_errors, make_engine
from worker import WorkerLog
from worker.attempt import AttemptHandle, Cancel
from worker.drain import Drain
from worker.executor import DB_BACKOFF_S, Executor
from worker.guardian_client import Guardian
from worker.heartbeat import Heartbeat
from worker.inflight import InFlight
from worker.logserver import LogServer
from worker.loop import ClaimView, Pass, SafeMode, claim_limit, claimed_reason
from worker.ports import AttemptRunner, Clock, Connect, MakeRunner, ProcessGuardian
from worker.registration import ZkSession
from worker.session import RECONNECT_BACKOFF_S, SessionKeeper

GUARDIAN_GRACE_S = 0.5  # SIGTERM-to-SIGKILL grace of the guardian and the sweep (at most)
_seq = itertools.count(1)


class Lifecycle(StrEnum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def default_worker_id(host: str) -> str:
    """``<host>-<pid>``, with a suffix for a second server in the same process."""
    n = next(_seq)
    base = f"{host.replace('/', '_')}-{os.getpid()}"
    return base if n == 1 else f"{base}-{n}"


class WorkerServer:
    """One worker: ``start()``, then ``run_once()`` or ``serve_forever()``, then ``stop()``. The
    keyword-only parts replace the real ones (see ``worker.ports``; unit tests pass fakes)."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str | None = None,
        engine: Engine | None = None,
        *,
        executor: MakeRunner | None = None,
        connect: Connect | None = None,
        guardian: ProcessGuardian | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or default_worker_id(settings.worker.host)
        self.log = WorkerLog(__name__, self.worker_id)
        self.host = settings.worker.host
        self.groups = list(dict.fromkeys(settings.worker.groups))
        self.capacity = settings.worker.capacity
        self._own_engine = engine is None
        self.engine = engine or make_engine(
            settings.db, pool_size=min(self.capacity, settings.db.pool_size) + 1
        )
        self._clock = clock
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._lock = threading.RLock()
        self.stats: Counter[str] = Counter()
        grace = min(settings.worker.kill_grace_s, GUARDIAN_GRACE_S)
        deadline = settings.watchdog_deadline
        self.guardian = guardian or Guardian(self.worker_id, grace, self.log, deadline)
        guarded = self.guardian if isinstance(self.guardian, Guardian) else None
        if guarded is not None:
            guarded.on_lapse = self._wake.set  # the loop fences what it holds at once
        self.executor: AttemptRunner
        if executor is not None:
            self.executor = executor(self._on_done)
        else:
            self.executor = Executor(
                settings, self.worker_id, self.engine, self._on_done, guardian=guarded
            )
        self.inflight = InFlight(self.executor, self.stats, self.log)
        self.drain = Drain(self.worker_id, settings.worker.drain_deadline_s, self.log)
        self.logserver: LogServer | None = None
        if settings.logs.server_enabled and isinstance(self.executor, Executor):
            self.logserver = LogServer(settings, self.engine, self.executor.shipper, self.worker_id)
        beat = Heartbeat(settings.worker.heartbeat_interval_s, settings.zk.session_timeout_s, clock)
        open_session = connect or partial(
            ZkSession.open, settings.zk, self.engine, self.worker_id, self.host, self.groups
        )
        lapses = guarded.take_lapses if guarded is not None else list
        self.keeper = SessionKeeper(open_session, beat, clock, self.log, lapses)
        self.safe = SafeMode()
        self._zk_wait_s = settings.zk.session_timeout_s / 4  # longest wait for one answer
        self._state = Lifecycle.NEW
        self.start_time = time.time()

    # lifecycle

    def start(self) -> None:
        """Connect, register under every group, start the queue watches. Raises
        CoordinationUnavailable or DatabaseUnavailable when either cannot be reached."""
        with self._lock:
            if self._state is not Lifecycle.NEW:
                raise RuntimeError(f"worker {self.worker_id} is {self._state}")
            self.settings.log_path.mkdir(parents=True, exist_ok=True)
            self.settings.exec_path.mkdir(parents=True, exist_ok=True)
            self._state = Lifecycle.RUNNING
            try:
                self.guardian.start()
                if self.logserver is not None:
                    self.logserver.start()  # before registering: its address is published
                self.keeper.open(self._wake, self._registration)
            except BaseException:
                self._state = Lifecycle.NEW
                self.guardian.close()
                if self.logserver is not None:
                    self.logserver.close()
                raise
            killed = self.keeper.sweep(set(self.inflight.held), self.guardian.grace_s)
            self.stats["orphans_killed"] += killed
        self.log.info(
            "started on %s, groups %s, capacity %d, epoch %d",
            self.host,
            ",".join(self.groups),
            self.capacity,
            self.epoch,
        )

    def wakeup(self) -> None:
        self._wake.set()

    def hurry(self) -> None:
        """Cut the grace period of a stop in progress short (a second SIGTERM)."""
        self._hurry.set()
        self._wake.set()

    def serve_forever(self, stop_event: threading.Event, poll_s: float = 0.5) -> None:
        while not stop_event.is_set() and self._state is Lifecycle.RUNNING:
            self.serve_once(poll_s)

    def serve_once(self, timeout: float = 0.0) -> Pass:
        """One turn of ``serve_forever``: ``run_once``, where an outage of ZooKeeper or PostgreSQL
        (one exception each) is caught, the one place it is, and puts the worker into its safe
        mode: no claims for a moment; sessions, outcomes and the fence are handled meanwhile."""
        try:
            return self.run_once(timeout)
        except CoordinationUnavailable as exc:
            return self._enter_safe_mode(exc.message, RECONNECT_BACKOFF_S)
        except DatabaseUnavailable as exc:
            return self._enter_safe_mode(exc.message, DB_BACKOFF_S)
        except Exception as exc:  # a bug: say so with its traceback, and keep the tasks going
            self.log.exception("unexpected error in a pass")
            return self._enter_safe_mode(f"unexpected error: {exc!r}", RECONNECT_BACKOFF_S)

    def run_once(self, timeout: float = 0.0) -> Pass:
        """Wait up to ``timeout`` for something to happen, then one pass: session events,
        finished attempts, kill requests, the self-fence, registering again after a lost
        session, lease bookkeeping, the heartbeat, one claim pass. Raises
        CoordinationUnavailable or DatabaseUnavailable (see ``serve_once``)."""
        if timeout > 0:
            self._wake.wait(self._wait_s(timeout))
        with self._lock:
            if self._state is not Lifecycle.RUNNING:
                return Pass(reason=f"not running ({self._state})")
            self._wake.clear()
            events: list[str] = []
            with zk_errors("pass"), db_errors("pass"):
                abandoned = self._session_lost() if self.keeper.poll_events(events) else 0
                finished = self._finish()
                killed = self._handle_signals() + self._check_fence(events)
                zk = self.keeper.session.zk if self.keeper.session and self._session_ok() else None
                killed += self.drain.run(zk, self._wake, self.inflight, self._clock(), events)
                self._reconnect(events)
                self._flush_zk(events)
                self._heartbeat()
                outage = self.executor.take_db_outage()
                if outage is not None:
                    raise outage
                claimed, reason = self._claim_pass(events)
        done = Pass(
            claimed, finished, killed, abandoned, tuple(events), "; ".join([*events, reason])
        )
        if done.acted:
            self.log.info("pass: %s", done.reason)
        else:
            self.log.debug("pass: %s", done.reason)
        return done

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running attempts finish for up to ``grace`` seconds (default
        worker.drain_deadline_s), kill the rest (reported NEED_FAULT_TOLERANCE: re-run elsewhere,
        no retry used up), put unstarted claims back on the queue, deregister."""
        grace = self.settings.worker.drain_deadline_s if grace is None else grace
        with self._lock:
            if self._state is Lifecycle.STOPPED:
                return
            was = self._state
            self._state = Lifecycle.STOPPING
            self.inflight.withdraw_all()
        self._wake.set()
        if was is Lifecycle.RUNNING:
            held = len(self.inflight.held)
            self.log.info("stopping, %d tasks running, grace %.1fs", held, grace)
            self._wait_inflight(time.monotonic() + grace, hurry=True)
            with self._lock:
                self.inflight.cancel_all(Cancel.SHUTDOWN)
            limit = self.settings.worker.kill_grace_s + self.settings.worker.report_retry_deadline_s
            self._wait_inflight(time.monotonic() + limit + 5.0, hurry=False)
        with self._lock:
            self._finish()
            session = self.keeper.session
            if session is not None and self._session_ok():
                self.inflight.resume_fenced(session.fetcher)
            self._flush_zk([])
            self._flush_zk([], wait_s=self.settings.zk.session_timeout_s / 2)
            if session is not None and self._session_ok():
                session.inbox.remove_all()
                self.drain.forget(session.zk)
            self.keeper.close()
            self._state = Lifecycle.STOPPED
        self.guardian.close()
        self.executor.shutdown(wait=False)
        if self.logserver is not None:
            self.logserver.close()
        if self._own_engine:
            self.engine.dispose()
        self.log.info("stopped (%s)", dict(self.stats))

    def _wait_inflight(self, deadline: float, hurry: bool) -> None:
        while True:
            with self._lock:
                self._finish()
                self._flush_zk([])
                held = self.inflight.held.values()
                pending = [h.future for h in held if h.future is not None]
            left = deadline - time.monotonic()
            if not pending or left <= 0 or (hurry and self._hurry.is_set()):
                return
            wait_futures(pending, timeout=min(left, 0.5), return_when=FIRST_COMPLETED)

    def kill_task(self, task_instance_id: int) -> bool:
        """Kill a running attempt (SIGTERM, SIGKILL after the grace); it is reported KILL."""
        with self._lock:
            h = self.inflight.held.get(task_instance_id)
            if h is not None:
                self.executor.cancel(h, Cancel.KILL)
            return h is not None

    @property
    def running(self) -> list[int]:
        """Task instance ids this worker holds right now."""
        with self._lock:
            return sorted(self.inflight.held)

    @property
    def zk(self) -> ZkClient | None:
        session = self.keeper.session
        return session.zk if session is not None else None

    @property
    def epoch(self) -> int:
        """The epoch of the current registration (the last one while there is none)."""
        return self.keeper.epoch

    @property
    def registration_paths(self) -> list[str]:
        return list(self.keeper.registration_paths)

    # the steps of a pass

    def _enter_safe_mode(self, reason: str, hold_s: float) -> Pass:
        self.stats["safe_mode"] += 1
        if self.safe.enter(reason, self._clock(), hold_s):  # new, or not said for a while
            self.log.warning("safe mode, not claiming for %.1fs: %s", hold_s, reason)
        else:
            self.log.debug("safe mode goes on: %s", reason)
        return Pass(events=(f"safe mode: {reason}",), reason=f"safe mode, not claiming: {reason}")

    def _registration(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "pid": os.getpid(),
            "start_time": self.start_time,
            "capacity": self.capacity,
            "load": len(self.inflight.held),
            "groups": self.groups,
            "worker_id": self.worker_id,
            "log_server": self.logserver.url if self.logserver is not None else "",
            "metrics_port": self.settings.metrics.port or None,  # worker/daemon.py binds it
            "draining": self.drain.active,
        }

    def _finish(self) -> int:
        session = self.keeper.session
        return self.inflight.finish(session.fetcher if session else None, self._session_ok())

    def _on_done(self, h: AttemptHandle) -> None:
        self.inflight.on_done(h)  # runner thread
        self._wake.set()

    def _session_ok(self) -> bool:
        return not self.keeper.problem(self._clock())

    def _wait_s(self, timeout: float) -> float:
        now = self._clock()
        left = self.keeper.wait_s(timeout, bool(self.inflight.held), now)
        safe_left = self.safe.left_s(now)
        return min(left, safe_left) if safe_left > 0 else left

    def _handle_signals(self) -> int:
        session = self.keeper.session
        if session is None or not self._session_ok():
            return 0
        return self.inflight.kill_requested(session.inbox)

    def _check_fence(self, events: list[str]) -> int:
        """The self-fence and the watchdog: kill every attempt now (see ``fence_due``)."""
        why = self.keeper.fence_due(self._clock(), len(self.inflight.held))
        if why is None:
            return 0
        events.append(why)
        return self.inflight.cancel_all(Cancel.FENCE)

    def _session_lost(self) -> int:
        self.log.error(
            "ZooKeeper session lost (epoch %d); %d attempts abandoned (killed, nothing written"
            " about them), re-registering",
            self.epoch,
            len(self.inflight.held),
        )
        abandoned = self.inflight.abandon_all()
        self.stats["sessions_lost"] += 1
        self.keeper.lost()
        return abandoned

    def _reconnect(self, events: list[str]) -> None:
        """Register again after a lost session (at most every RECONNECT_BACKOFF_S)."""
        if not self.keeper.reconnect_due(self._clock()):
            return
        try:
            self.keeper.open(self._wake, self._registration)
        except BaseException as exc:
            self.keeper.next_connect = self._clock() + RECONNECT_BACKOFF_S
            if isinstance(exc, CoordinationUnavailable | DatabaseUnavailable):
                raise type(exc)(f"cannot re-register: {exc.message}") from exc
            raise
        self.log.info("re-registered with epoch %d", self.epoch)
        events.append(f"re-registered with epoch {self.epoch}")

    def _flush_zk(self, events: list[str], wait_s: float = 0.0) -> None:
        session = self.keeper.session
        if session is not None and self._session_ok():
            adopted = self.inflight.flush(session.fetcher, self._zk_wait_s, wait_s)
            if adopted:
                events.append(f"adopted {adopted} interrupted claims")

    def _heartbeat(self) -> None:
        def body() -> bytes:
            return json.dumps(self._registration() | {"epoch": self.epoch}).encode()

        self.keeper.heartbeat(len(self.inflight.held), body if self._session_ok() else None)

    def _claim_pass(self, events: list[str]) -> tuple[int, str]:
        now = self._clock()
        over = self.safe.leave_if_over(now)
        if over is not None:
            self.log.info("safe mode over (%s); claiming again", over)
            events.append("safe mode over")
        held = len(self.inflight.held)
        drain = self.drain.reason(now, held)
        view = ClaimView(
            self.capacity, held, self.keeper.problem(now), self.safe.active(now), drain
        )
        limit, reason = claim_limit(view)
        session = self.keeper.session
        if limit <= 0 or session is None:
            return 0, reason
        claimed = self.inflight.claim(
            session.fetcher, limit, session.lease_data, session.epoch, self._zk_wait_s
        )
        return claimed, claimed_reason(limit, claimed)
