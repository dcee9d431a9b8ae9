"""Stopping attempts: cancel (SIGTERM now, SIGKILL after the grace; a fence SIGKILLs at once),
withdraw and abandon, the pump's watchdog (the spec's timeout and its strategy, the SIGKILL
escalation of a cancel) and the last SIGKILL for group members that ignore SIGTERM."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import IO

from worker import WorkerLog
from worker.attempt import AttemptHandle, Cancel
from worker.task_types import TaskType, group_alive


def cancel(h: AttemptHandle, reason: Cancel, kill_grace_s: float, log: WorkerLog) -> None:
    """Stop an attempt: SIGTERM now and SIGKILL after ``kill_grace_s`` (FENCE: SIGKILL now). An
    attempt not spawned yet is never spawned."""
    with h.lock:
        if h.abandoned or (h.cancel is not None and reason is not Cancel.FENCE):
            return
        h.cancel = reason
        proc, tt = h.proc, h.task_type
        if proc is None or tt is None:
            return
        if reason is Cancel.FENCE:
            tt.kill(proc)
        else:
            tt.terminate(proc)
            h.kill_at = time.monotonic() + kill_grace_s
    log.info("task %d pid %d cancelled (%s)", h.ti_id, proc.pid, reason.name)


def withdraw(h: AttemptHandle) -> bool:
    """Cancel an attempt only if it has not been spawned yet (it is then put back)."""
    with h.lock:
        if h.proc is not None or h.cancel is not None or h.abandoned:
            return False
        h.cancel = Cancel.SHUTDOWN
        return True


def abandon(h: AttemptHandle) -> None:
    """The lease is gone with the session: SIGKILL the group and never write about it."""
    with h.lock:
        h.abandoned = True
        proc, tt = h.proc, h.task_type
        if proc is not None and tt is not None:
            tt.kill(proc)


def finish_kill(h: AttemptHandle, tt: TaskType, proc: subprocess.Popen[bytes]) -> None:
    """The leader is dead but members of its group may ignore SIGTERM: SIGKILL them when the
    grace runs out."""
    while h.kill_at is not None and time.monotonic() < h.kill_at and group_alive(proc.pid):
        time.sleep(0.05)
    h.kill_at = None
    tt.kill(proc)


def watchdog(
    h: AttemptHandle,
    tt: TaskType,
    logf: IO[bytes],
    spec: dict[str, object],
    *,
    on_timeout: Callable[[AttemptHandle], None],
    alert: Callable[[AttemptHandle, float, str], None],
    log: WorkerLog,
) -> Callable[[float], float | None]:
    """The pump's tick: enforce the spec's timeout (``timeout_strategy`` FAILED: kill, the
    attempt fails; WARN: one TASK_TIMEOUT alert, it goes on; WARN_FAILED: both) and a cancel's
    SIGKILL escalation. Returns the next moment it must be called at (None: no deadline)."""
    timeout_s = spec.get("timeout_s")
    strategy = str(spec.get("timeout_strategy") or "FAILED")
    deadline: float | None = None
    if isinstance(timeout_s, int | float) and timeout_s > 0:
        deadline = time.monotonic() + float(timeout_s)

    def tick(now: float) -> float | None:
        nonlocal deadline
        if deadline is not None and now >= deadline:
            deadline = None
            assert isinstance(timeout_s, int | float)
            if strategy in ("WARN", "WARN_FAILED"):
                alert(h, float(timeout_s), strategy)
            if strategy == "WARN":
                logf.write(f"[dagkeeper] running past its timeout of {timeout_s}s\n".encode())
                log.warning("task %d ran past its timeout of %ss", h.ti_id, timeout_s)
            else:
                logf.write(f"[dagkeeper] timed out after {timeout_s}s; killing\n".encode())
                log.warning("task %d timed out after %ss", h.ti_id, timeout_s)
                h.reason = f"timed out after {timeout_s}s ({strategy})"
                on_timeout(h)
        kill_at = h.kill_at
        if kill_at is not None and now >= kill_at and h.proc is not None:
            h.kill_at = None
            tt.kill(h.proc)
        due = [t for t in (deadline, h.kill_at) if t is not None]
        return min(due) if due else None

    return tick
