"""Fakes of the worker loop's parts (``worker.ports``): a clock, a ZooKeeper that hands out
sessions over one shared queue, each session's fetcher and kill inbox, an executor whose attempts
finish when the test says so, and a guardian. ``make_worker`` builds a ``WorkerServer`` on them."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

from core.errors import DatabaseUnavailable
from core.settings import (
    DbSettings,
    LogSettings,
    MasterSettings,
    Settings,
    WorkerSettings,
    ZkSettings,
)
from core.states import TaskState
from worker.attempt import AttemptHandle, Cancel, Outcome
from worker.fetcher import Claim
from worker.ports import Log
from worker.server import WorkerServer

H = TypeVar("H")


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeQueue:
    """The queue entries every session sees: (group, task instance id) in dispatch order."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, int]] = []

    def push(self, *ti_ids: int, group: str = "default") -> None:
        self.entries.extend((group, t) for t in ti_ids)


class FakeFetcher:
    """One session's claims on the shared queue (``worker.ports.ClaimSource``). ``fail`` is
    raised by the next claim, as if ZooKeeper went away in the middle of a pass."""

    def __init__(self, queue: FakeQueue) -> None:
        self.queue = queue
        self.limits: list[int] = []  # the limit of every claim call
        self.released: list[int] = []
        self.put_back: list[Claim] = []  # every claim handed back (on the queue after a flush)
        self._to_put_back: list[Claim] = []
        self.uncertain: list[Claim] = []  # interrupted claims that did succeed
        self.fail: BaseException | None = None
        self.closed = False

    def claim(self, limit: int, lease_data: bytes, epoch: int, timeout: float) -> list[Claim]:
        self.limits.append(limit)
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        taken, self.queue.entries[:limit] = self.queue.entries[:limit], []
        return [Claim(g, f"key-{t}", t, epoch) for g, t in taken]

    def flush(self, running: Collection[int], timeout: float, wait_s: float = 0.0) -> list[Claim]:
        self.queue.entries.extend((c.group, c.task_instance_id) for c in self._to_put_back)
        self._to_put_back.clear()
        adopted = [c for c in self.uncertain if c.task_instance_id not in running]
        self.uncertain.clear()
        return adopted

    def release_later(self, ti_id: int) -> None:
        self.released.append(ti_id)

    def put_back_later(self, claim: Claim) -> None:
        self.put_back.append(claim)
        self._to_put_back.append(claim)

    def close(self) -> None:
        self.closed = True


class FakeInbox:
    """Kill requests (``worker.ports.KillInbox``)."""

    def __init__(self) -> None:
        self.requests: list[int] = []
        self.removed = False

    def handle(self, held: Mapping[int, H], log: Log) -> list[H]:
        out = [held[t] for t in self.requests if t in held]
        self.requests.clear()
        return out

    def remove_all(self) -> None:
        self.removed = True

    def close(self) -> None:
        pass


class FakeSession:
    """One registration (``worker.ports.Session``). ``answering`` False: ZooKeeper is silent
    (beats get no answer); ``events`` are delivered in order (``coord.zk.SESSION_*``)."""

    zk = None

    def __init__(self, epoch: int, queue: FakeQueue, registration: dict[str, Any]) -> None:
        self.epoch = epoch
        self.lease_data = f'{{"epoch": {epoch}}}'.encode()
        self.registration_paths = [f"/workers/default/w-{epoch}"]
        self.registration = registration
        self.fetcher = FakeFetcher(queue)
        self.inbox = FakeInbox()
        self.events: deque[str] = deque()
        self.is_connected = True
        self.answering = True
        self.beats: list[bytes | None] = []
        self.unanswered: list[Callable[[bool], None]] = []
        self.closed = False

    def next_event(self) -> str | None:
        return self.events.popleft() if self.events else None

    def connected(self) -> bool:
        return self.is_connected and not self.closed

    def send_beat(self, data: bytes | None, on_answer: Callable[[bool], None]) -> None:
        self.beats.append(data)
        if self.answering:
            on_answer(True)
        else:
            self.unanswered.append(on_answer)

    def answer_all(self) -> None:
        """ZooKeeper speaks again: every beat waiting for an answer gets one."""
        self.answering = True
        for on_answer in self.unanswered:
            on_answer(True)
        self.unanswered.clear()

    def sweep(self, held: Collection[int], grace_s: float, log: Log) -> list[int]:
        return []

    def close(self) -> None:
        self.closed = True


class FakeZooKeeper:
    """Opens sessions (``worker.ports.Connect``) with epochs 1, 2, ...; the exceptions in
    ``fail`` are raised by the next openings, one each."""

    def __init__(self) -> None:
        self.queue = FakeQueue()
        self.sessions: list[FakeSession] = []
        self.fail: list[BaseException] = []
        self.attempts = 0
        self._epochs = itertools.count(1)

    def connect(
        self, wake: threading.Event, registration: Callable[[], dict[str, Any]]
    ) -> FakeSession:
        self.attempts += 1
        if self.fail:
            raise self.fail.pop(0)
        session = FakeSession(next(self._epochs), self.queue, registration())
        self.sessions.append(session)
        return session

    @property
    def session(self) -> FakeSession:
        """The newest session."""
        return self.sessions[-1]


class FakeExecutor:
    """Runs nothing (``worker.ports.AttemptRunner``): attempts stay running until ``finish``
    hands their outcome back the way a runner thread does."""

    def __init__(self, on_done: Callable[[AttemptHandle], None]) -> None:
        self.on_done = on_done
        self.handles: dict[int, AttemptHandle] = {}
        self.cancelled: list[tuple[int, Cancel]] = []
        self.abandoned: list[int] = []
        self.reported: list[int] = []
        self.outage: DatabaseUnavailable | None = None
        self.shut_down = False

    def submit(self, claim: Claim) -> AttemptHandle:
        h = AttemptHandle(claim)
        self.handles[claim.task_instance_id] = h
        return h

    def cancel(self, h: AttemptHandle, reason: Cancel) -> None:
        h.cancel = reason
        self.cancelled.append((h.ti_id, reason))

    def withdraw(self, h: AttemptHandle) -> bool:
        return False

    def abandon(self, h: AttemptHandle) -> None:
        h.abandoned = True
        self.abandoned.append(h.ti_id)

    def report(self, h: AttemptHandle) -> bool:
        self.reported.append(h.ti_id)
        return True

    def take_db_outage(self) -> DatabaseUnavailable | None:
        exc, self.outage = self.outage, None
        return exc

    def shutdown(self, wait: bool = True) -> None:
        self.shut_down = True

    # what the test does

    def finish(
        self,
        ti_id: int,
        outcome: Outcome = Outcome.FINISHED,
        state: TaskState | None = TaskState.SUCCESS,
    ) -> AttemptHandle:
        h = self.handles[ti_id]
        h.outcome, h.state = outcome, state
        self.on_done(h)
        return h

    def database_down(self, what: str = "finish") -> None:
        """A runner thread gave up on PostgreSQL (as ``worker.report.Reporter`` records it)."""
        self.outage = DatabaseUnavailable(f"{what}: PostgreSQL unreachable (connection refused)")


class FakeGuardian:
    grace_s = 0.5

    def __init__(self) -> None:
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True


def worker_settings(tmp_path: Path, **worker: Any) -> Settings:
    """Settings for a worker on fakes: 4 s sessions, 1 s heartbeats, no log server."""
    return Settings(
        data_dir=str(tmp_path),
        db=DbSettings(url="postgresql+psycopg2://nobody@127.0.0.1:1/none", managed=False),
        zk=ZkSettings(hosts="127.0.0.1:1", session_timeout_s=4, managed=False),
        master=MasterSettings(heartbeat_interval_s=1),
        worker=WorkerSettings(
            **{
                "capacity": 3,
                "heartbeat_interval_s": 1,
                "report_retry_deadline_s": 2,
                "host": "fake-host",
                **worker,
            }
        ),
        logs=LogSettings(server_enabled=False, ship=False),
    )


def make_worker(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper, **worker: Any
) -> tuple[WorkerServer, FakeExecutor]:
    """A started ``WorkerServer`` on fakes, and its executor."""
    w = WorkerServer(
        worker_settings(tmp_path, **worker),
        worker_id="w-test",
        executor=FakeExecutor,
        connect=zk.connect,
        guardian=FakeGuardian(),
        clock=clock,
    )
    w.start()
    assert isinstance(w.executor, FakeExecutor)
    return w, w.executor
