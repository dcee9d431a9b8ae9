"""The worker's queries on task attempts: one read to load an attempt, one conditional write to
mark it RUNNING, one fenced write (plus the owning master's wake-up) to finish it, a fenced
timeout alert, and the start-up sweep's read of process groups recorded for a host. Never commit;
each takes a Session or (the worker's hot path) an autocommit Connection."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Float, bindparam, text
from sqlalchemy.orm import Session

from core.states import TASK_UNSTARTED, TaskState, values
from db.engine import driver_rows
from db.notify import task_notify_select

log = logging.getLogger(__name__)

# States from which a worker may start an attempt it has leased.
STARTABLE: tuple[str, ...] = tuple(values(TASK_UNSTARTED))
# Final states a worker may report for an attempt it runs.
WORKER_FINAL: frozenset[str] = frozenset(
    {
        TaskState.SUCCESS.value,
        TaskState.FAILURE.value,
        TaskState.KILL.value,
        TaskState.NEED_FAULT_TOLERANCE.value,
    }
)


@dataclass(frozen=True)
class WorkerAttempt:
    """What a worker needs to run one attempt (``workflow_id`` comes from the instance)."""

    id: int
    workflow_instance_id: int
    workflow_id: int
    name: str
    type: str
    attempt: int
    state: str
    worker_group: str
    spec: dict[str, Any]

    @property
    def startable(self) -> bool:
        return self.state in STARTABLE


# The hot path's statements are driver SQL (``db.engine.driver_rows``: ``%(name)s`` bound by
# psycopg2): the worker runs them hundreds of times a second, and SQLAlchemy's statement machinery
# cost about three times the CPU of the statement itself. States are bound here, never passed.
_LOAD = (
    "SELECT ti.id, ti.workflow_instance_id, wi.workflow_id, ti.name, ti.type, ti.attempt,"
    " ti.state, ti.worker_group, ti.spec"
    " FROM task_instance ti JOIN workflow_instance wi ON wi.id = ti.workflow_instance_id"
    " WHERE ti.id = %(ti_id)s"
)

_MARK_RUNNING = (
    "UPDATE task_instance SET state = %(running)s, host = %(host)s, worker_id = %(worker_id)s,"
    " lease_token = %(token)s, pid = %(pid)s, log_path = %(log_path)s, start_time = now()"
    " WHERE id = %(ti_id)s AND (state = ANY(%(startable)s) OR (state = %(running)s"
    " AND worker_id = %(worker_id)s AND lease_token = %(token)s"
    " AND pid IS NOT DISTINCT FROM CAST(%(pid)s AS integer)))"
)
_RUNNING_STATES = {"running": TaskState.RUNNING.value, "startable": values(TASK_UNSTARTED)}

_FINISH = (
    "WITH done AS (UPDATE task_instance"
    " SET state = %(state)s, exit_code = %(exit_code)s, end_time = now(),"
    " output = CAST(%(output)s AS jsonb), reason = COALESCE(%(reason)s, reason)"
    " WHERE id = %(ti_id)s AND lease_token = %(token)s AND state = %(running)s"
    " RETURNING workflow_instance_id, id, parent_id)"
    # a FANOUT sub-execution names its FANOUT attempt instead, so that its owner polls that
    f" {task_notify_select('workflow_instance_id', 'COALESCE(parent_id, id)')} FROM done"
)

# One alert row, written only while the attempt is RUNNING under our token (a fenced worker
# cannot raise alerts about an attempt it no longer holds).
_TIMEOUT_ALERT = text(
    "INSERT INTO alert (kind, title, content, workflow_instance_id)"
    " SELECT 'TASK_TIMEOUT', 'task ' || ti.name || ' (attempt ' || ti.attempt || ') of instance '"
    " || ti.workflow_instance_id || ' ran past its timeout of ' || :timeout_s || 's',"
    " jsonb_build_object('task_instance_id', ti.id, 'task', ti.name, 'attempt', ti.attempt,"
    " 'workflow_instance_id', ti.workflow_instance_id, 'timeout_s', :timeout_s,"
    " 'strategy', CAST(:strategy AS text), 'worker_id', ti.worker_id, 'host', ti.host),"
    " ti.workflow_instance_id"
    " FROM task_instance ti WHERE ti.id = :ti_id AND ti.lease_token = :token"
    " AND ti.state = :running"
).bindparams(bindparam("timeout_s", type_=Float), running=TaskState.RUNNING.value)

# Process groups this host recorded for attempts that may still have processes: RUNNING ones
# and those a master already failed over (NEED_FAULT_TOLERANCE) after their worker died.
_RECORDED_GROUPS = text(
    "SELECT id, pid, worker_id, lease_token, state FROM task_instance"
    " WHERE host = :host AND pid IS NOT NULL AND state = ANY(:maybe_alive)"
).bindparams(maybe_alive=values({TaskState.RUNNING, TaskState.NEED_FAULT_TOLERANCE}))


@dataclass(frozen=True)
class RecordedGroup:
    """A process group recorded in PostgreSQL for an attempt on this host."""

    task_instance_id: int
    pgid: int
    worker_id: str | None
    lease_token: int | None
    state: str


def load_attempt(s: Session | Connection, task_instance_id: int) -> WorkerAttempt | None:
    """The attempt with its workflow id and resolved spec, or None if the row is gone."""
    rows = driver_rows(s, _LOAD, {"ti_id": task_instance_id}).rows
    if not rows:
        return None
    ti_id, instance_id, workflow_id, name, type_, attempt, state, group, spec = rows[0]
    if isinstance(spec, str):  # a connection without psycopg2's jsonb decoding
        spec = json.loads(spec)
    return WorkerAttempt(
        id=int(ti_id),
        workflow_instance_id=int(instance_id),
        workflow_id=int(workflow_id),
        name=str(name),
        type=str(type_),
        attempt=int(attempt),
        state=str(state),
        worker_group=str(group),
        spec=dict(spec or {}),
    )


def mark_running(
    s: Session | Connection,
    task_instance_id: int,
    *,
    host: str,
    worker_id: str,
    lease_token: int,
    pid: int | None,
    log_path: str,
) -> bool:
    """SUBMITTED/DISPATCHED -> RUNNING with our lease token; False if the row moved on (killed,
    failed over, already run). Idempotent for a retry of the same write (same token and pid)."""
    params = {
        "ti_id": task_instance_id,
        "host": host,
        "worker_id": worker_id,
        "token": lease_token,
        "pid": pid,
        "log_path": log_path,
        **_RUNNING_STATES,
    }
    return driver_rows(s, _MARK_RUNNING, params).rowcount == 1


def finish_attempt(
    s: Session | Connection,
    task_instance_id: int,
    *,
    lease_token: int,
    state: str,
    exit_code: int | None,
    output: dict[str, Any] | None = None,
    reason: str | None = None,
) -> bool:
    """RUNNING -> ``state`` only while ``lease_token`` is still the row's token, and in the same
    statement the owning master's wake-up naming the instance and the attempt (its FANOUT
    attempt instead, if it is a sub-execution). False = stale token or
    the attempt is no longer RUNNING; then nothing changed and nobody is notified."""
    if state not in WORKER_FINAL:
        raise ValueError(f"a worker cannot finish an attempt as {state!r}")
    params = {
        "ti_id": task_instance_id,
        "token": lease_token,
        "state": state,
        "exit_code": exit_code,
        "output": json.dumps(output or {}),
        "reason": reason,
        "running": TaskState.RUNNING.value,
    }
    return len(driver_rows(s, _FINISH, params).rows) >= 1


def add_timeout_alert(
    s: Session | Connection,
    task_instance_id: int,
    *,
    lease_token: int,
    timeout_s: float,
    strategy: str,
) -> bool:
    """One TASK_TIMEOUT alert naming the instance, task and attempt; False (nothing written) if
    the attempt is no longer RUNNING under ``lease_token``."""
    params = {
        "ti_id": task_instance_id,
        "token": lease_token,
        "timeout_s": float(timeout_s),
        "strategy": strategy,
    }
    return s.execute(_TIMEOUT_ALERT, params).rowcount == 1  # type: ignore[attr-defined]


def recorded_groups(s: Session | Connection, host: str) -> list[RecordedGroup]:
    """Every process group recorded on ``host`` whose attempt may still have processes."""
    return [
        RecordedGroup(int(r.id), int(r.pid), r.worker_id, r.lease_token, str(r.state))
        for r in s.execute(_RECORDED_GROUPS, {"host": host}).all()
    ]


class Connections:
    """A few long-lived autocommit connections for the worker's hot path: each statement above is
    then one round trip (no checkout ping, no BEGIN/COMMIT, no isolation-level reset, no ORM)."""

    def __init__(self, engine: Engine, size: int) -> None:
        self._engine = engine
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for one statement; one that failed is closed, not reused."""
        self._slots.acquire()
        conn: Connection | None = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            yield conn
        except BaseException:
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    log.debug("closing a failed connection", exc_info=True)
                conn = None
            raise
        finally:
            if conn is not None:
                with self._lock:
                    self._idle.append(conn)
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            try:
                conn.close()
            except Exception:
                log.debug("closing an idle connection", exc_info=True)
