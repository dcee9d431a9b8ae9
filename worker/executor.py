"""Runs leased attempts in a pool of ``capacity`` threads: load the row, spawn, mark RUNNING, stream
output to the log file, collect setValue outputs, report the final state fenced by the lease token.
ZooKeeper is not touched here: each outcome goes back to the server, which owns the leases."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from core.settings import Settings
from core.states import TaskState
from db.attempts_worker import (
    Connections,
    WorkerAttempt,
    add_timeout_alert,
    finish_attempt,
    load_attempt,
    mark_running,
)
from worker import WorkerLog
from worker.fetcher import Claim
from worker.guardian import Guardian
from worker.logship import LogShipper
from worker.task_types import (
    TaskType,
    UnknownTaskType,
    configure,
    exit_code_of,
    get_task_type,
    group_alive,
    kill_process_group,
    pump_output,
)

T = TypeVar("T")

DB_BACKOFF_S = 1.0  # claiming pauses this long after PostgreSQL was unreachable
# Variables a task inherits from the worker's environment (never DAGKEEPER_*: it holds secrets).
# fmt: off
INHERITED_ENV = frozenset((
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "JAVA_HOME", "SPARK_HOME", "HADOOP_HOME", "HADOOP_CONF_DIR", "PYSPARK_PYTHON",
))
# fmt: on


class Outcome(StrEnum):
    FINISHED = "FINISHED"  # final state written (or given up to failover): release the lease
    SKIPPED = "SKIPPED"  # the row was not startable or lost the RUNNING race: release the lease
    UNCLAIM = "UNCLAIM"  # never started (stopping, PostgreSQL down): put the queue key back
    FENCED = "FENCED"  # killed while the session was suspended: report once it resumes
    ABANDONED = "ABANDONED"  # the session was lost with the lease: write nothing


class Cancel(StrEnum):
    SHUTDOWN = "SHUTDOWN"  # the worker stops: NEED_FAULT_TOLERANCE, the master runs it again
    TIMEOUT = "TIMEOUT"  # spec timeout_s passed: FAILURE
    KILL = "KILL"  # a user asked: KILL
    FENCE = "FENCE"  # the session may be expiring: SIGKILL now, report later or never


_CANCEL_STATE = {
    Cancel.SHUTDOWN: TaskState.NEED_FAULT_TOLERANCE.value,
    Cancel.TIMEOUT: TaskState.FAILURE.value,
    Cancel.KILL: TaskState.KILL.value,
    Cancel.FENCE: TaskState.NEED_FAULT_TOLERANCE.value,
}


_CONNECTION_ERRORS = (OperationalError, InterfaceError)


class DbUnavailable(Exception):
    """PostgreSQL did not answer within the report deadline."""


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
    state: str | None = None
    exit_code: int | None = None
    output: dict[str, str] = field(default_factory=dict)
    outcome: Outcome | None = None
    reason: str | None = None

    @property
    def ti_id(self) -> int:
        return self.claim.task_instance_id


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in INHERITED_ENV or k.startswith("LC_")}


class Executor:
    """A pool of ``capacity`` runner threads; ``on_done`` gets every handle once it has an outcome."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        engine: Engine,
        on_done: Callable[[AttemptHandle], None],
    ) -> None:
        self.worker_id = worker_id
        self.host = settings.worker.host
        self.log = WorkerLog(__name__, self.worker_id)
        self.capacity = settings.worker.capacity
        self.kill_grace_s = settings.worker.kill_grace_s
        self.report_deadline_s = settings.worker.report_retry_deadline_s
        self.log_root = settings.log_path
        self.exec_root = settings.exec_path
        self._db_conns = Connections(engine, min(self.capacity, settings.db.pool_size) + 1)
        self._on_done = on_done
        self._env = base_env()
        configure(settings, engine)  # task types: worker context and plugin discovery
        self._log_dirs: set[Path] = set()  # log directories known to exist
        self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix=f"task-{worker_id}")
        self.db_backoff_until = 0.0
        self.guardian: Guardian | None = None  # set by the server: kills our groups if we die
        self.shipper = LogShipper(engine, settings.logs, self.host, self.log)  # logs -> PostgreSQL
        self.shipper.start()

    def submit(self, claim: Claim) -> AttemptHandle:
        h = AttemptHandle(claim)
        h.future = self._pool.submit(self._run, h)
        return h

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
        self.shipper.close()
        self._db_conns.close()

    def log_file(self, att: WorkerAttempt) -> Path:
        return (
            self.log_root / str(att.workflow_id) / str(att.workflow_instance_id) / f"{att.id}.log"
        )

    def cancel(self, h: AttemptHandle, reason: Cancel) -> None:
        """Stop an attempt: SIGTERM now and SIGKILL after kill_grace_s (FENCE: SIGKILL now). An
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
                h.kill_at = time.monotonic() + self.kill_grace_s
        self.log.info("task %d pid %d cancelled (%s)", h.ti_id, proc.pid, reason)

    def withdraw(self, h: AttemptHandle) -> bool:
        """Cancel an attempt only if it has not been spawned yet (it is then put back)."""
        with h.lock:
            if h.proc is not None or h.cancel is not None or h.abandoned:
                return False
            h.cancel = Cancel.SHUTDOWN
            return True

    def abandon(self, h: AttemptHandle) -> None:
        """The lease is gone with the session: SIGKILL the group and never write about it."""
        with h.lock:
            h.abandoned = True
            proc, tt = h.proc, h.task_type
            if proc is not None and tt is not None:
                tt.kill(proc)

    # the runner thread

    def _run(self, h: AttemptHandle) -> None:
        try:
            h.outcome = self._execute(h)
        except Exception:
            self.log.exception("task %d: unexpected error", h.ti_id)
            if h.proc is not None and h.proc.poll() is None:
                kill_process_group(h.proc, 0)
            h.outcome = self._after_crash(h)
        finally:
            if h.proc is not None and self.guardian is not None:
                self.guardian.forget(h.proc.pid)
            self.shipper.end(h.ti_id)
            self._on_done(h)

    def _after_crash(self, h: AttemptHandle) -> Outcome:
        if h.abandoned:
            return Outcome.ABANDONED
        if not h.running:
            return Outcome.UNCLAIM
        h.state, h.exit_code = TaskState.FAILURE.value, None
        try:
            self.report(h)
        except Exception:
            self.log.exception("task %d: cannot report the failure", h.ti_id)
        return Outcome.FINISHED

    def _execute(self, h: AttemptHandle) -> Outcome:
        c = h.claim
        if h.abandoned:
            return Outcome.ABANDONED
        if h.cancel is not None:
            return Outcome.UNCLAIM
        try:
            att = self._db(
                "load", c.task_instance_id, lambda s: load_attempt(s, c.task_instance_id)
            )
        except DbUnavailable:
            return Outcome.UNCLAIM
        h.attempt = att
        if att is None:
            self.log.warning("task %d does not exist; dropping its lease", c.task_instance_id)
            return Outcome.SKIPPED
        if not att.startable:
            self.log.info(
                "task %d attempt %d is %s, not startable; dropping its lease",
                att.id,
                att.attempt,
                att.state,
            )
            return Outcome.SKIPPED
        workdir = self.exec_root / str(att.workflow_instance_id) / str(att.id)
        log_file = self.log_file(att)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            if log_file.parent not in self._log_dirs:
                log_file.parent.mkdir(parents=True, exist_ok=True)
                if len(self._log_dirs) > 10000:
                    self._log_dirs.clear()
                self._log_dirs.add(log_file.parent)
            logf = open(log_file, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            return self._fail_to_start(h, att, str(log_file), None, f"cannot prepare files: {exc}")
        with logf:
            try:
                tt = get_task_type(att.type)
                env = self._task_env(att, workdir)
                if att.spec.get("render_error"):  # the master could not resolve its parameters
                    h.reason = f"parameters: {att.spec['render_error']}"
                    raise ValueError(h.reason)
                argv = tt.prepare(att.spec, env, workdir)
            except (UnknownTaskType, ValueError, OSError) as exc:
                return self._fail_to_start(h, att, str(log_file), logf, str(exc))
            spawn_error: OSError | None = None
            with h.lock:
                if h.abandoned:
                    return Outcome.ABANDONED
                if h.cancel is not None:
                    return Outcome.UNCLAIM
                try:
                    h.proc, h.task_type = tt.spawn(argv, env, workdir), tt
                except OSError as exc:
                    spawn_error = exc
                if h.proc is not None and self.guardian is not None:
                    self.guardian.watch(h.proc.pid, att.id)
            if spawn_error is not None or h.proc is None:
                return self._fail_to_start(h, att, str(log_file), logf, f"spawn: {spawn_error}")
            proc = h.proc
            try:
                ok = self._mark_running(h, proc.pid, str(log_file))
            except DbUnavailable:
                kill_process_group(proc, 0)
                return Outcome.UNCLAIM
            if not ok:
                self.log.info(
                    "task %d attempt %d moved on before it started; killing pid %d",
                    att.id,
                    att.attempt,
                    proc.pid,
                )
                kill_process_group(proc, 0)
                return Outcome.SKIPPED
            h.running = True
            self.shipper.track(att.id, log_file)
            self.log.debug("task %d attempt %d RUNNING pid %d", att.id, att.attempt, proc.pid)
            collector = tt.output_collector()
            pump_output(proc, logf, collector, self._watchdog(h, tt, logf, att.spec))
            if h.cancel is not None:
                self._finish_kill(h, tt, proc)
            if h.cancel is not None and h.cancel is not Cancel.TIMEOUT:
                logf.write(f"[dagkeeper] stopped by the worker ({h.cancel.value})\n".encode())
        with h.lock:
            cancel, abandoned = h.cancel, h.abandoned
        if abandoned:
            return Outcome.ABANDONED
        h.exit_code = exit_code_of(proc.returncode)
        h.output = collector.values
        if cancel is Cancel.FENCE or cancel is Cancel.TIMEOUT or (cancel and proc.returncode):
            h.state = _CANCEL_STATE[cancel]  # (a task that exited 0 anyway keeps its SUCCESS)
        else:
            h.state = TaskState.SUCCESS.value if proc.returncode == 0 else TaskState.FAILURE.value
        if cancel is Cancel.FENCE:
            return Outcome.FENCED
        self.report(h)
        return Outcome.FINISHED

    def _fail_to_start(
        self, h: AttemptHandle, att: WorkerAttempt, log_path: str, logf: IO[bytes] | None, why: str
    ) -> Outcome:
        """The attempt cannot run here: RUNNING (no pid) then FAILURE, with the reason in its log."""
        self.log.error("task %d attempt %d cannot start: %s", att.id, att.attempt, why)
        if logf is not None:
            logf.write(f"[dagkeeper] cannot start the task: {why}\n".encode())
        try:
            ok = self._mark_running(h, None, log_path)
        except DbUnavailable:
            return Outcome.UNCLAIM
        if not ok:
            return Outcome.SKIPPED
        h.running = True
        self.shipper.track(att.id, Path(log_path))
        h.state, h.exit_code = TaskState.FAILURE.value, None
        self.report(h)
        return Outcome.FINISHED

    def _task_env(self, att: WorkerAttempt, workdir: Path) -> dict[str, str]:
        env = dict(self._env)
        extra = att.spec.get("env") or {}
        if isinstance(extra, dict):
            env.update({str(k): "" if v is None else str(v) for k, v in extra.items()})
        env.update(
            DAGKEEPER_TASK_INSTANCE_ID=str(att.id),
            DAGKEEPER_TASK_NAME=att.name,
            DAGKEEPER_ATTEMPT=str(att.attempt),
            DAGKEEPER_WORKFLOW_ID=str(att.workflow_id),
            DAGKEEPER_WORKFLOW_INSTANCE_ID=str(att.workflow_instance_id),
            DAGKEEPER_WORKER_ID=self.worker_id,
            DAGKEEPER_WORKDIR=str(workdir),
        )
        return env

    def _finish_kill(self, h: AttemptHandle, tt: TaskType, proc: subprocess.Popen[bytes]) -> None:
        """The leader is dead but members of its group may ignore SIGTERM: SIGKILL them when the
        grace runs out."""
        while h.kill_at is not None and time.monotonic() < h.kill_at and group_alive(proc.pid):
            time.sleep(0.05)
        h.kill_at = None
        tt.kill(proc)

    def _watchdog(
        self, h: AttemptHandle, tt: TaskType, logf: IO[bytes], spec: dict[str, object]
    ) -> Callable[[float], float | None]:
        """The pump's tick: enforce the spec's timeout (``timeout_strategy`` FAILED: kill, the
        attempt fails; WARN: one TASK_TIMEOUT alert, it goes on; WARN_FAILED: both) and a
        cancel's SIGKILL escalation."""
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
                    self._timeout_alert(h, float(timeout_s), strategy)
                if strategy == "WARN":
                    logf.write(f"[dagkeeper] running past its timeout of {timeout_s}s\n".encode())
                    self.log.warning("task %d ran past its timeout of %ss", h.ti_id, timeout_s)
                else:
                    logf.write(f"[dagkeeper] timed out after {timeout_s}s; killing\n".encode())
                    self.log.warning("task %d timed out after %ss", h.ti_id, timeout_s)
                    h.reason = f"timed out after {timeout_s}s ({strategy})"
                    self.cancel(h, Cancel.TIMEOUT)
            kill_at = h.kill_at
            if kill_at is not None and now >= kill_at and h.proc is not None:
                h.kill_at = None
                tt.kill(h.proc)
            due = [t for t in (deadline, h.kill_at) if t is not None]
            return min(due) if due else None

        return tick

    # PostgreSQL

    def _timeout_alert(self, h: AttemptHandle, timeout_s: float, strategy: str) -> None:
        try:
            self._db(
                "timeout alert",
                h.ti_id,
                lambda s: add_timeout_alert(
                    s, h.ti_id, lease_token=h.claim.epoch, timeout_s=timeout_s, strategy=strategy
                ),
            )
        except DbUnavailable:
            self.log.error("task %d: cannot write its timeout alert", h.ti_id)

    def _mark_running(self, h: AttemptHandle, pid: int | None, log_path: str) -> bool:
        def write(s: Connection) -> bool:
            return mark_running(
                s,
                h.ti_id,
                host=self.host,
                worker_id=self.worker_id,
                lease_token=h.claim.epoch,
                pid=pid,
                log_path=log_path,
            )

        return self._db("mark RUNNING", h.ti_id, write)

    def report(self, h: AttemptHandle) -> bool:
        """Write the attempt's final state with its lease token; False if stale or unreachable.
        The rest of its log is shipped first (one INSERT shared with whatever else is due)."""
        state = h.state or TaskState.FAILURE.value
        if not self.shipper.flush(h.ti_id, min(self.report_deadline_s / 2, 2.0)):
            self.log.warning("task %d: the end of its log is not in PostgreSQL yet", h.ti_id)
        try:
            ok = self._db(
                "finish",
                h.ti_id,
                lambda s: finish_attempt(
                    s,
                    h.ti_id,
                    lease_token=h.claim.epoch,
                    state=state,
                    exit_code=h.exit_code,
                    output=h.output,
                    reason=h.reason,
                ),
            )
        except DbUnavailable:
            self.log.error("task %d: cannot report %s; leaving it to failover", h.ti_id, state)
            return False
        if ok:
            att = h.attempt
            where = f"attempt {att.attempt} of instance {att.workflow_instance_id}" if att else ""
            self.log.info("task %d %s %s exit %s", h.ti_id, where, state, h.exit_code)
        else:
            self.log.warning(
                "task %d: token %d is stale or the attempt moved on; %s discarded",
                h.ti_id,
                h.claim.epoch,
                state,
            )
        return ok

    def _db(self, what: str, ti_id: int, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` (one autocommit statement), retrying connection failures until the
        deadline; then raise DbUnavailable and pause claiming for a moment."""
        deadline = time.monotonic() + self.report_deadline_s
        delay = 0.05
        while True:
            try:
                with self._db_conns.connection() as s:
                    return fn(s)
            except DBAPIError as exc:
                if not (exc.connection_invalidated or isinstance(exc, _CONNECTION_ERRORS)):
                    raise
                if time.monotonic() + delay >= deadline:
                    self.db_backoff_until = time.monotonic() + DB_BACKOFF_S
                    self.log.error("task %d: %s failed: %s", ti_id, what, exc)
                    raise DbUnavailable(str(exc)) from exc
                self.log.warning("task %d: %s failed, retrying: %s", ti_id, what, exc)
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
