"""Runs leased attempts in a pool of ``capacity`` threads: load the row, spawn, mark RUNNING, stream
output to the log file, collect setValue outputs, report the final state (``worker.report``).
ZooKeeper is not touched here: each outcome goes back to the server, which owns the leases."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from sqlalchemy import Engine

from core import metrics
from core.errors import DatabaseUnavailable
from core.settings import Settings
from core.states import TaskState
from db.attempts_worker import Connections, WorkerAttempt
from worker import WorkerLog
from worker import kill as kills
from worker.attempt import CANCEL_STATE, AttemptHandle, Cancel, Outcome
from worker.fetcher import Claim
from worker.guardian_client import Guardian
from worker.logship import LogShipper
from worker.report import Reporter
from worker.task_types import (
    UnknownTaskType,
    configure,
    exit_code_of,
    get_task_type,
    kill_process_group,
    pump_output,
)

DB_BACKOFF_S = 1.0  # claiming pauses this long after PostgreSQL was unreachable
# Variables a task inherits from the worker's environment (never DAGKEEPER_*: it holds secrets).
# fmt: off
INHERITED_ENV = frozenset((
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "JAVA_HOME", "SPARK_HOME", "HADOOP_HOME", "HADOOP_CONF_DIR", "PYSPARK_PYTHON",
))
# fmt: on


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
        guardian: Guardian | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.host = settings.worker.host
        self.log = WorkerLog(__name__, self.worker_id)
        self.capacity = settings.worker.capacity
        self.kill_grace_s = settings.worker.kill_grace_s
        self.log_root = settings.log_path
        self.exec_root = settings.exec_path
        self._on_done = on_done
        self._env = base_env()
        configure(settings, engine)  # task types: worker context and plugin discovery
        self._log_dirs: set[Path] = set()  # log directories known to exist
        self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix=f"task-{worker_id}")
        self.guardian = guardian  # kills our groups if we die
        self.shipper = LogShipper(engine, settings.logs, self.host, self.log)  # logs -> PostgreSQL
        self.shipper.start()
        size = min(self.capacity, settings.db.pool_size) + 1
        self.reporter = Reporter(
            engine,
            size,
            worker_id,
            self.host,
            settings.worker.report_retry_deadline_s,
            self.shipper,
            self.log,
        )

    @property
    def _db_conns(self) -> Connections:
        return self.reporter.conns

    @_db_conns.setter
    def _db_conns(self, conns: Connections) -> None:  # a test swaps in a dead database
        self.reporter.conns = conns

    def submit(self, claim: Claim) -> AttemptHandle:
        h = AttemptHandle(claim)
        h.future = self._pool.submit(self._run, h)
        return h

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
        self.shipper.close()
        self.reporter.close()

    def log_file(self, att: WorkerAttempt) -> Path:
        return (
            self.log_root / str(att.workflow_id) / str(att.workflow_instance_id) / f"{att.id}.log"
        )

    def cancel(self, h: AttemptHandle, reason: Cancel) -> None:
        """SIGTERM now, SIGKILL after kill_grace_s (FENCE: SIGKILL now); see ``worker.kill``."""
        kills.cancel(h, reason, self.kill_grace_s, self.log)

    def withdraw(self, h: AttemptHandle) -> bool:
        return kills.withdraw(h)

    def abandon(self, h: AttemptHandle) -> None:
        kills.abandon(h)

    def report(self, h: AttemptHandle) -> bool:
        return self.reporter.report(h)

    def take_db_outage(self) -> DatabaseUnavailable | None:
        """An outage a runner thread gave up on since the last call (the loop's safe mode)."""
        return self.reporter.take_outage()

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
        h.state, h.exit_code = TaskState.FAILURE, None
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
            att = self.reporter.load(c.task_instance_id)
        except DatabaseUnavailable:
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
                ok = self.reporter.mark_running(h, proc.pid, str(log_file))
            except DatabaseUnavailable:
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
            metrics.task_started(att.type)
            self.shipper.track(att.id, log_file)
            self.log.debug(
                "task %d attempt %d %s pid %d", att.id, att.attempt, TaskState.RUNNING, proc.pid
            )
            collector = tt.output_collector()
            tick = kills.watchdog(
                h,
                tt,
                logf,
                att.spec,
                on_timeout=lambda x: self.cancel(x, Cancel.TIMEOUT),
                alert=self.reporter.timeout_alert,
                log=self.log,
            )
            pump_output(proc, logf, collector, tick)
            frozen = self.guardian.lapse_of(proc.pid, proc.returncode) if self.guardian else None
            if frozen is not None:  # the worker was frozen: a fence, not the task's failure
                logf.write(f"[dagkeeper] {frozen}\n".encode())
                self.cancel(h, Cancel.FENCE)
            if h.cancel is not None:
                kills.finish_kill(h, tt, proc)
            if h.cancel is not None and h.cancel is not Cancel.TIMEOUT and frozen is None:
                logf.write(f"[dagkeeper] stopped by the worker ({h.cancel.name})\n".encode())
        with h.lock:
            cancel, abandoned = h.cancel, h.abandoned
        if abandoned:
            return Outcome.ABANDONED
        h.exit_code = exit_code_of(proc.returncode)
        h.output = collector.values
        if cancel is Cancel.FENCE or cancel is Cancel.TIMEOUT or (cancel and proc.returncode):
            h.state = CANCEL_STATE[cancel]  # (a task that exited 0 anyway keeps its SUCCESS)
        else:
            h.state = TaskState.SUCCESS if proc.returncode == 0 else TaskState.FAILURE
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
            ok = self.reporter.mark_running(h, None, log_path)
        except DatabaseUnavailable:
            return Outcome.UNCLAIM
        if not ok:
            return Outcome.SKIPPED
        h.running = True
        self.shipper.track(att.id, Path(log_path))
        h.state, h.exit_code = TaskState.FAILURE, None
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
