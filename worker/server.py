"""The worker server: registers under every group it serves, claims within its capacity, owns the
leases, acts on kill requests, and handles its ZooKeeper session (suspended: stop claiming; lost:
kill every task, forget its leases, re-register with a new epoch). A guardian process kills its
task groups if it dies; at start it sweeps groups that outlived an earlier worker on this host."""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import wait as wait_futures
from typing import Any

from sqlalchemy import Engine

from coord.zk import SESSION_CONNECTED, SESSION_LOST, SESSION_SUSPENDED, ZkClient
from core.settings import Settings
from db.engine import make_engine
from db.epochs import next_epoch
from worker import WorkerLog
from worker.executor import AttemptHandle, Cancel, Executor, Outcome
from worker.fetcher import QueueFetcher
from worker.guardian import Guardian
from worker.heartbeat import Heartbeat
from worker.logserver import LogServer
from worker.orphans import sweep
from worker.signals import SignalInbox

DEFAULT_STOP_GRACE_S = 10.0  # how long a graceful stop lets running tasks finish
RECONNECT_BACKOFF_S = 1.0
GUARDIAN_GRACE_S = 0.5  # SIGTERM-to-SIGKILL grace of the guardian and the sweep (at most)
_seq = itertools.count(1)


def default_worker_id(host: str) -> str:
    """``<host>-<pid>``, with a suffix for a second server in the same process."""
    n = next(_seq)
    base = f"{host.replace('/', '_')}-{os.getpid()}"
    return base if n == 1 else f"{base}-{n}"


class WorkerServer:
    """One worker: ``start()``, then ``run_once()`` or ``serve_forever()``, then ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str | None = None,
        engine: Engine | None = None,
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
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._lock = threading.RLock()
        self._done: queue.SimpleQueue[AttemptHandle] = queue.SimpleQueue()
        self.executor = Executor(settings, self.worker_id, self.engine, self._on_done)
        grace = min(settings.worker.kill_grace_s, GUARDIAN_GRACE_S)
        self.guardian = Guardian(self.worker_id, grace, self.log)
        self.executor.guardian = self.guardian
        self.logserver: LogServer | None = None
        if settings.logs.server_enabled:
            self.logserver = LogServer(settings, self.engine, self.executor.shipper, self.worker_id)
        self.zk: ZkClient | None = None
        self._fetcher: QueueFetcher | None = None
        self._inbox: SignalInbox | None = None
        self.epoch = 0
        self._lease_data = b""
        self._reg_paths: list[str] = []
        self._inflight: dict[int, AttemptHandle] = {}
        self._fenced: list[AttemptHandle] = []
        self._claiming = False
        self._suspended_since: float | None = None
        self._beat = Heartbeat(settings.worker.heartbeat_interval_s, settings.zk.session_timeout_s)
        self._zk_wait_s = settings.zk.session_timeout_s / 4  # longest wait for one answer
        self._next_connect = 0.0
        self._state = "new"  # new -> running -> stopping -> stopped
        self.start_time = time.time()
        self.stats: Counter[str] = Counter()

    # lifecycle

    def start(self) -> None:
        """Connect, register under every group, start the queue watches. Raises
        CoordinationUnavailable when ZooKeeper cannot be reached."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"worker {self.worker_id} is {self._state}")
            self.settings.log_path.mkdir(parents=True, exist_ok=True)
            self.settings.exec_path.mkdir(parents=True, exist_ok=True)
            self._state = "running"
            try:
                self.guardian.start()
                if self.logserver is not None:
                    self.logserver.start()  # before registering: its address is published
                self._connect()
            except BaseException:
                self._state = "new"
                self.guardian.close()
                if self.logserver is not None:
                    self.logserver.close()
                raise
            self._sweep()
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
        while not stop_event.is_set() and self._state == "running":
            try:
                self.run_once(timeout=poll_s)
            except Exception:
                self.log.exception("error in the claim loop")
                stop_event.wait(RECONNECT_BACKOFF_S)

    def run_once(self, timeout: float = 0.0) -> int:
        """Wait up to ``timeout`` for something to happen, then one pass: session events, finished
        attempts, lease releases, one claim pass. Returns the number of attempts claimed."""
        if timeout > 0:
            self._wake.wait(self._wait_s(timeout))
        with self._lock:
            if self._state != "running":
                return 0
            self._wake.clear()
            self._session_events()
            self._process_done()
            self._handle_signals()
            self._check_fence()
            self._maybe_reconnect()
            self._flush_zk()
            self._heartbeat()
            return self._claim_pass()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running attempts finish for up to ``grace`` seconds, kill the rest
        (reported NEED_FAULT_TOLERANCE), put unstarted claims back on the queue, deregister."""
        grace = DEFAULT_STOP_GRACE_S if grace is None else grace
        with self._lock:
            if self._state == "stopped":
                return
            was = self._state
            self._state = "stopping"
            self._claiming = False
            for h in self._inflight.values():
                self.executor.withdraw(h)
        self._wake.set()
        if was == "running":
            self.log.info("stopping, %d tasks running, grace %.1fs", len(self._inflight), grace)
            self._wait_inflight(time.monotonic() + grace, hurry=True)
            with self._lock:
                for h in self._inflight.values():
                    self.executor.cancel(h, Cancel.SHUTDOWN)
            limit = self.settings.worker.kill_grace_s + self.settings.worker.report_retry_deadline_s
            self._wait_inflight(time.monotonic() + limit + 5.0, hurry=False)
        with self._lock:
            self._process_done()
            self._resume_fenced()
            self._flush_zk()
            self._flush_zk(wait_s=self.settings.zk.session_timeout_s / 2)
            if self._inbox is not None and self._session_ok():
                self._inbox.remove_all()
            self._teardown_zk()
            self._state = "stopped"
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
                self._process_done()
                self._flush_zk()
                pending = [h.future for h in self._inflight.values() if h.future is not None]
            left = deadline - time.monotonic()
            if not pending or left <= 0 or (hurry and self._hurry.is_set()):
                return
            wait_futures(pending, timeout=min(left, 0.5), return_when=FIRST_COMPLETED)

    def kill_task(self, task_instance_id: int) -> bool:
        """Kill a running attempt (SIGTERM, SIGKILL after the grace); it is reported KILL."""
        with self._lock:
            h = self._inflight.get(task_instance_id)
            if h is not None:
                self.executor.cancel(h, Cancel.KILL)
            return h is not None

    @property
    def running(self) -> list[int]:
        """Task instance ids this worker holds right now."""
        with self._lock:
            return sorted(self._inflight)

    @property
    def registration_paths(self) -> list[str]:
        return list(self._reg_paths)

    # ZooKeeper session

    def _connect(self) -> None:
        zk = ZkClient(self.settings.zk, name=f"worker {self.worker_id}")
        zk.client.add_listener(self._on_zk_state)
        try:
            zk.start()
            epoch = self._register(zk)
            fetcher = QueueFetcher(zk, self.groups, self._wake, self.worker_id, self.host)
            fetcher.start()
            inbox = SignalInbox(zk, self.worker_id, self._wake)
            inbox.start()
        except BaseException:
            zk.stop()
            raise
        self.zk, self._fetcher, self._inbox, self.epoch = zk, fetcher, inbox, epoch
        self._lease_data = json.dumps(
            {"worker": self.worker_id, "epoch": epoch, "host": self.host}
        ).encode()
        self._claiming = self._state == "running"
        self._suspended_since = None
        self._beat.reset()
        self._wake.set()

    def _registration(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "pid": os.getpid(),
            "start_time": self.start_time,
            "capacity": self.capacity,
            "load": len(self._inflight),
            "groups": self.groups,
            "worker_id": self.worker_id,
            "log_server": self.logserver.url if self.logserver is not None else "",
        }

    def _register(self, zk: ZkClient) -> int:
        """Take a new epoch from PostgreSQL (it is also the lease token of every claim of this
        registration, unique for ever, even across a wiped ZooKeeper) and register under every
        group with it. Raises without PostgreSQL; ``_maybe_reconnect`` tries again."""
        paths = [zk.paths.worker(g, self.worker_id) for g in self.groups]
        epoch = next_epoch(self.engine)
        data = self._registration()
        for path in paths:
            zk.register(path, data, epoch)
        self._reg_paths = paths
        return epoch

    def _teardown_zk(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
        if self._inbox is not None:
            self._inbox.close()
        if self.zk is not None:
            self.zk.stop()  # closing the session removes our registrations and leases
        self.zk, self._fetcher, self._inbox = None, None, None
        self._claiming = False
        self._suspended_since = None

    def _on_zk_state(self, _state: str) -> None:
        self._wake.set()  # kazoo thread: never block

    def _on_done(self, h: AttemptHandle) -> None:
        self._done.put(h)  # runner thread
        self._wake.set()

    def _session_ok(self) -> bool:
        return (
            self.zk is not None
            and self.zk.connected.is_set()
            and self._suspended_since is None
            and self._beat.in_contact(time.monotonic())
        )

    def _session_events(self) -> None:
        zk = self.zk
        while zk is not None:
            try:
                event = zk.events.get_nowait()
            except queue.Empty:
                return
            if event == SESSION_SUSPENDED and self._suspended_since is None:
                self.log.warning(
                    "ZooKeeper connection suspended (epoch %d); claiming paused", self.epoch
                )
                self._suspended_since = time.monotonic()
                self._claiming = False
            elif event == SESSION_CONNECTED and self._suspended_since is not None:
                self.log.info("ZooKeeper session resumed (epoch %d)", self.epoch)
                self._suspended_since = None
                self._claiming = self._state == "running"
            elif event == SESSION_LOST:
                self._session_lost()
                return

    def _session_lost(self) -> None:
        self.log.error(
            "ZooKeeper session lost (epoch %d); killing %d tasks, re-registering",
            self.epoch,
            len(self._inflight),
        )
        for h in self._inflight.values():
            self.executor.abandon(h)
        self.stats["abandoned"] += len(self._inflight)
        self.stats["sessions_lost"] += 1
        self._inflight.clear()
        self._fenced.clear()
        self._teardown_zk()
        self._next_connect = 0.0

    def _maybe_reconnect(self) -> None:
        if self.zk is not None or time.monotonic() < self._next_connect:
            return
        try:
            self._connect()
        except Exception as exc:
            self.log.error("cannot re-register: %s", exc)
            self._next_connect = time.monotonic() + RECONNECT_BACKOFF_S
            return
        self.log.info("re-registered with epoch %d", self.epoch)

    def _check_fence(self) -> None:
        now = time.monotonic()
        if self.zk is None or not self._beat.fence_now(now):
            return
        self.log.error(
            "no answer from ZooKeeper for %.1fs (epoch %d); killing %d tasks before the session "
            "can expire",
            now - self._beat.last_contact,
            self.epoch,
            len(self._inflight),
        )
        for h in self._inflight.values():
            self.executor.cancel(h, Cancel.FENCE)

    def _wait_s(self, timeout: float) -> float:
        return self._beat.wait_s(timeout, bool(self._inflight))

    # attempts

    def _sweep(self) -> None:
        """Kill task groups on this host that outlived their worker (see ``worker.orphans``)."""
        if self.zk is None:
            return
        try:
            killed = sweep(
                self.engine,
                self.zk,
                self.host,
                set(self._inflight),
                self.guardian.grace_s,
                self.log,
            )
        except Exception as exc:
            self.log.warning("start-up sweep of orphaned task groups failed: %s", exc)
            return
        self.stats["orphans_killed"] += len(killed)

    def _handle_signals(self) -> None:
        """Kill requests: an attempt we hold is cancelled (SIGTERM, SIGKILL after the grace;
        reported KILL); every request is then deleted."""
        if self._inbox is not None and self._session_ok():
            for h in self._inbox.handle(self._inflight, self.log):
                self.executor.cancel(h, Cancel.KILL)
                self.stats["kill_requests"] += 1

    def _process_done(self) -> None:
        while True:
            try:
                h = self._done.get_nowait()
            except queue.Empty:
                break
            if self._inflight.get(h.ti_id) is not h:
                continue  # abandoned with a lost session: its lease is gone already
            del self._inflight[h.ti_id]
            outcome = h.outcome or Outcome.FINISHED
            self.stats[outcome.value.lower()] += 1
            if h.state and outcome is Outcome.FINISHED:
                self.stats[h.state] += 1
            fetcher = self._fetcher  # None only once the session is gone, leases with it
            if fetcher and outcome in (Outcome.FINISHED, Outcome.SKIPPED):
                fetcher.release_later(h.ti_id)
            elif fetcher and outcome is Outcome.UNCLAIM:
                fetcher.put_back_later(h.claim)
            elif outcome is Outcome.FENCED:
                self._fenced.append(h)
        # a fenced attempt whose session survived: our token is still good, report it
        if self._fenced and self._session_ok():
            self._resume_fenced()

    def _resume_fenced(self) -> None:
        fetcher = self._fetcher
        if fetcher is None or not self._session_ok():
            return
        for h in self._fenced:
            self.executor.report(h)
            fetcher.release_later(h.ti_id)
        self._fenced.clear()

    def _flush_zk(self, wait_s: float = 0.0) -> None:
        if self._fetcher is not None and self._session_ok():
            for claim in self._fetcher.flush(self._inflight, self._zk_wait_s, wait_s):
                self._inflight[claim.task_instance_id] = self.executor.submit(claim)

    def _heartbeat(self) -> None:
        """Publish the load if it changed, else read our znode; answers refresh the fence."""
        zk = self.zk
        if zk is None or not self._reg_paths:
            return

        def body() -> bytes:
            return json.dumps(self._registration() | {"epoch": self.epoch}).encode()

        try:
            self._beat.beat(
                zk, self._reg_paths, len(self._inflight), body if self._session_ok() else None
            )
        except Exception as exc:
            self.log.warning("heartbeat failed: %s", exc)

    def _claim_pass(self) -> int:
        fetcher = self._fetcher
        if not self._claiming or fetcher is None or not self._session_ok():
            return 0
        if time.monotonic() < self.executor.db_backoff_until:
            return 0
        free = self.capacity - len(self._inflight)
        if free <= 0:
            return 0
        # a short wait per claim: the loop must stay free to fence (an unanswered claim is
        # checked on a later pass)
        claims = fetcher.claim(free, self._lease_data, self.epoch, self._zk_wait_s)
        for c in claims:
            self._inflight[c.task_instance_id] = self.executor.submit(c)
            self.log.debug("claimed task %d from %s", c.task_instance_id, c.group)
        self.stats["claimed"] += len(claims)
        return len(claims)
