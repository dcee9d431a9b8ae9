"""The small interfaces the worker loop talks through: a clock, the runner of attempts (the
executor), one ZooKeeper registration (its queue fetcher, kill inbox, events and heartbeat) and
the function that opens one. The real classes implement them, and so do ``tests/fakes``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol, TypeAlias, TypeVar

from coord.zk import ZkClient
from core.errors import DatabaseUnavailable
from worker.attempt import AttemptHandle, Cancel
from worker.fetcher import Claim

H = TypeVar("H")

Clock = Callable[[], float]  # monotonic seconds
Log: TypeAlias = "logging.LoggerAdapter[logging.Logger] | logging.Logger"


class ClaimSource(Protocol):
    """The queues of one session (``worker.fetcher.QueueFetcher``)."""

    def claim(self, limit: int, lease_data: bytes, epoch: int, timeout: float) -> list[Claim]: ...

    def flush(
        self, running: Collection[int], timeout: float, wait_s: float = 0.0
    ) -> list[Claim]: ...

    def release_later(self, ti_id: int) -> None: ...

    def put_back_later(self, claim: Claim) -> None: ...

    def close(self) -> None: ...


class KillInbox(Protocol):
    """Kill requests addressed to this worker (``worker.signals.SignalInbox``)."""

    def handle(self, held: Mapping[int, H], log: Log) -> list[H]: ...

    def remove_all(self) -> None: ...

    def close(self) -> None: ...


class Session(Protocol):
    """One registration: a ZooKeeper session and an epoch (``worker.registration.ZkSession``)."""

    @property
    def epoch(self) -> int: ...

    @property
    def lease_data(self) -> bytes: ...

    @property
    def registration_paths(self) -> list[str]: ...

    @property
    def zk(self) -> ZkClient | None: ...

    @property
    def fetcher(self) -> ClaimSource: ...

    @property
    def inbox(self) -> KillInbox: ...

    def next_event(self) -> str | None:
        """The next session event (``coord.zk.SESSION_*``), None when there is none."""
        ...

    def connected(self) -> bool: ...

    def send_beat(self, data: bytes | None, on_answer: Callable[[bool], None]) -> None:
        """Write ``data`` to every registration (None: read one); ``on_answer(ok)`` later."""
        ...

    def sweep(self, held: Collection[int], grace_s: float, log: Log) -> list[int]:
        """Kill this host's orphaned task process groups; the pgids killed."""
        ...

    def close(self) -> None:
        """End the session: its registrations and leases go with it."""
        ...


# Opens a registration: (the loop's wake-up event, the registration's data) -> a live Session.
# Raises CoordinationUnavailable or DatabaseUnavailable (no epoch without PostgreSQL).
Connect = Callable[[threading.Event, Callable[[], dict[str, Any]]], Session]


class AttemptRunner(Protocol):
    """Runs attempts (``worker.executor.Executor``); each outcome comes back through the
    ``on_done`` callback the server gives it."""

    def submit(self, claim: Claim) -> AttemptHandle: ...

    def cancel(self, h: AttemptHandle, reason: Cancel) -> None: ...

    def withdraw(self, h: AttemptHandle) -> bool: ...

    def abandon(self, h: AttemptHandle) -> None: ...

    def report(self, h: AttemptHandle) -> bool: ...

    def take_db_outage(self) -> DatabaseUnavailable | None: ...

    def shutdown(self, wait: bool = True) -> None: ...


# Makes the runner, given the callback that hands each finished handle back to the loop.
MakeRunner = Callable[[Callable[[AttemptHandle], None]], AttemptRunner]


class ProcessGuardian(Protocol):
    """Kills the task process groups if the worker dies or freezes
    (``worker.guardian_client.Guardian``)."""

    @property
    def grace_s(self) -> float: ...

    def start(self) -> None: ...

    def close(self) -> None: ...
