"""One leased attempt from claim to outcome (``AttemptHandle``), the outcomes the runner hands
back to the loop and the reasons the worker cancels an attempt for, with the state each reports."""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum

from core.states import TaskState
from db.attempts_worker import WorkerAttempt
from worker.fetcher import Claim
from worker.task_types import TaskType


class Outcome(StrEnum):
    """What the loop does with the lease once an attempt is over."""

    FINISHED = "finished"  # final state written (or given up to failover): release the lease
    SKIPPED = "skipped"  # the row was not startable or lost the RUNNING race: release the lease
    UNCLAIM = "unclaim"  # never started (stopping, PostgreSQL down): put the queue key back
    FENCED = "fenced"  # killed while the session was suspended: report once it resumes
    ABANDONED = "abandoned"  # the session was lost with the lease: write nothing


class Cancel(StrEnum):
    """Why the worker stops an attempt; the task's log names it (``Cancel.KILL.name``)."""

    SHUTDOWN = "shutdown"  # the worker stops: NEED_FAULT_TOLERANCE, the master runs it again
    TIMEOUT = "timeout"  # spec timeout_s passed: FAILURE
    KILL = "kill"  # a user asked: KILL
    FENCE = "fence"  # the session may be expiring: SIGKILL now, report later or never


CANCEL_STATE: dict[Cancel, TaskState] = {
    Cancel.SHUTDOWN: TaskState.NEED_FAULT_TOLERANCE,
    Cancel.TIMEOUT: TaskState.FAILURE,
    Cancel.KILL: TaskState.KILL,
    Cancel.FENCE: TaskState.NEED_FAULT_TOLERANCE,
}


@dataclass(eq=False)
class AttemptHandle:
    """One leased attempt from claim to outcome; ``lock`` guards proc/cancel/abandoned."""

    claim: Claim
    lock: threading.Lock = field(default_factory=threading.Lock)
    future: Future[None] | None = None
    proc: subprocess.Popen[bytes] | None = None
    task_type: TaskType | None = None
    cancel: Cancel | None = None
    kill_at: float | None = None
    abandoned: bool = False
    attempt: WorkerAttempt | None = None
    running: bool = False
    state: TaskState | None = None
    exit_code: int | None = None
    output: dict[str, str] = field(default_factory=dict)
    outcome: Outcome | None = None
    reason: str | None = None

    @property
    def ti_id(self) -> int:
        return self.claim.task_instance_id
