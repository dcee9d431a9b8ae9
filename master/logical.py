"""Master-run task types: the driver contract (start, poll, cancel over a RUNNING attempt that no
worker holds) and the lookup of a type's driver through the one registry (``core.task_types``).
The runner calls drivers inside its own fenced transactions; a driver holds no thread and never
blocks on another workflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from coord.zk import ZkClient
from core import task_types
from core.spec import TaskSpec, WorkflowSpec
from core.states import TaskState
from db import instances as q_instances
from db.attempts import AttemptRow
from db.engine import SessionFactory

log = logging.getLogger(__name__)

# How soon a driver that raised is polled again.
RETRY_AFTER_ERROR_S = 5.0


@dataclass(frozen=True)
class LogicalContext:
    sf: SessionFactory
    zk: ZkClient | None
    master_id: str
    epoch: int
    instance: q_instances.InstanceRow  # the instance that holds the attempt
    spec: WorkflowSpec  # its workflow
    task: TaskSpec  # the logical task (task.model_dump() for type fields)
    params: dict[str, str]  # the task's resolved parameters (what a worker gets as env)
    # instances this master now owns because of the call (e.g. a child it created or resumed):
    # the runner loads and steps them after the transaction commits
    new_instances: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    state: TaskState | None = None  # None = still running
    output: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    wake_at: datetime | None = None  # poll again at this time (None = only on events)


class LogicalDriver(Protocol):
    def start(self, ctx: LogicalContext, s: Session, attempt_id: int, now: datetime) -> Verdict:
        """In the transaction that inserted the RUNNING attempt: create what it owns (a child
        instance, sub-executions). May return a final verdict at once."""
        ...

    def poll(self, ctx: LogicalContext, s: Session, attempt: AttemptRow, now: datetime) -> Verdict:
        """Called by the owning master when the attempt's instance is stepped and the attempt
        (or something it owns) changed, a wake time it asked for came due, or after the instance
        was (re)loaded, e.g. adopted after a failover. Must be idempotent."""
        ...

    def cancel(
        self, ctx: LogicalContext, s: Session, attempt: AttemptRow, target: TaskState, now: datetime
    ) -> Verdict:
        """Stop (target KILL) or pause (target PAUSE) or END-strategy cancel: propagate to what
        the attempt owns; a final verdict now, or state None when it finishes later (poll)."""
        ...


DRIVERS: dict[str, LogicalDriver] = {}  # loaded from the registry, or registered by a test
_broken: set[str] = set()  # types whose driver could not be loaded (logged once)


def register(type_name: str, driver: LogicalDriver) -> None:
    """Make ``driver`` run every task of ``type_name`` in this process (a later call wins)."""
    DRIVERS[type_name.upper()] = driver


def driver_for(type_name: str) -> LogicalDriver | None:
    """The driver of a master-run type, imported from the registry on first use; None for a type
    without one (its tasks fail with the reason) or whose driver cannot be loaded (logged)."""
    key = type_name.upper()
    drv = DRIVERS.get(key)
    if drv is not None or key in _broken:
        return drv
    d = task_types.get(key)
    if d is None or d.runs_on != task_types.RunsOn.MASTER or not d.impl:
        return None
    try:
        loaded: LogicalDriver = task_types.load_impl(key)
    except Exception:  # a broken driver module must not keep the master from running
        _broken.add(key)
        log.exception("logical tasks: cannot load the driver of %s (%s)", key, d.impl)
        return None
    DRIVERS[key] = loaded
    return loaded
