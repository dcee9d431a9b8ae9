"""The worker's writes about its attempts to PostgreSQL (load, RUNNING, the final state, the timeout
alert), each fenced by the lease token and retried through a connection outage until the report
deadline; an outage that outlasts it is kept for the loop, which then stops claiming a moment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from core.errors import DatabaseUnavailable
from core.states import TaskState
from db.attempts_worker import (
    Connections,
    WorkerAttempt,
    add_timeout_alert,
    finish_attempt,
    load_attempt,
    mark_running,
)
from db.engine import is_outage
from worker import WorkerLog, sql_mail
from worker.attempt import AttemptHandle
from worker.logship import LogShipper

T = TypeVar("T")


class Reporter:
    """One statement per call on a few autocommit connections (``conns``)."""

    def __init__(
        self,
        engine: Engine,
        size: int,
        worker_id: str,
        host: str,
        deadline_s: float,
        shipper: LogShipper,
        log: WorkerLog,
    ) -> None:
        self.conns = Connections(engine, size)
        self.worker_id = worker_id
        self.host = host
        self.deadline_s = deadline_s
        self.shipper = shipper
        self.log = log
        self._lock = threading.Lock()
        self._outage: DatabaseUnavailable | None = None

    def take_outage(self) -> DatabaseUnavailable | None:
        """The last outage a write gave up on since the previous call (then forgotten)."""
        with self._lock:
            exc, self._outage = self._outage, None
        return exc

    def close(self) -> None:
        self.conns.close()

    def load(self, ti_id: int) -> WorkerAttempt | None:
        return self._db("load", ti_id, lambda s: load_attempt(s, ti_id))

    def mark_running(self, h: AttemptHandle, pid: int | None, log_path: str) -> bool:
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

    def timeout_alert(self, h: AttemptHandle, timeout_s: float, strategy: str) -> None:
        try:
            self._db(
                "timeout alert",
                h.ti_id,
                lambda s: add_timeout_alert(
                    s, h.ti_id, lease_token=h.claim.epoch, timeout_s=timeout_s, strategy=strategy
                ),
            )
        except DatabaseUnavailable:
            self.log.error("task %d: cannot write its timeout alert", h.ti_id)

    def report(self, h: AttemptHandle) -> bool:
        """Write the attempt's final state with its lease token; False if stale or unreachable.
        The rest of its log is shipped first (one INSERT shared with whatever else is due)."""
        state = h.state or TaskState.FAILURE
        result = sql_mail.take_result(h)  # a SQL task's rows to mail: not an output of its own
        if not self.shipper.flush(h.ti_id, min(self.deadline_s / 2, 2.0)):
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
        except DatabaseUnavailable:
            self.log.error("task %d: cannot report %s; leaving it to failover", h.ti_id, state)
            return False
        if ok and result is not None and state == TaskState.SUCCESS:
            self._db("result mail", h.ti_id, lambda s: sql_mail.add_alert(s, h, result))
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
        deadline; then keep the outage for the loop and raise DatabaseUnavailable."""
        deadline = time.monotonic() + self.deadline_s
        delay = 0.05
        while True:
            try:
                with self.conns.connection() as s:
                    return fn(s)
            except DBAPIError as exc:
                if not is_outage(exc):
                    raise
                if time.monotonic() + delay >= deadline:
                    self.log.error("task %d: %s failed: %s", ti_id, what, exc)
                    first = str(exc.orig or exc).strip().splitlines()
                    outage = DatabaseUnavailable(
                        f"task {ti_id}: {what}: PostgreSQL unreachable"
                        f" ({first[0] if first else type(exc).__name__})"
                    )
                    with self._lock:
                        self._outage = outage
                    raise outage from exc
                self.log.warning("task %d: %s failed, retrying: %s", ti_id, what, exc)
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
