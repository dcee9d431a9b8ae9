"""Master-run task types: the driver contract (start, poll, cancel over a RUNNING attempt that no
worker holds) and the registry of drivers by type name. The runner calls drivers inside its own
fenced transactions; a driver holds no thread and never blocks on another workflow."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from coord.zk import ZkClient
from core.spec import TaskSpec, WorkflowSpec
from core.states import TaskState
from db import instances as q_instances
from db.attempts import AttemptRow
from db.engine import SessionFactory

log = logging.getLogger(__name__)

# Modules that register the built-in drivers when imported (a missing one is skipped).
BUILTIN_MODULES = ("master.sub_process", "master.dependent", "master.fanout")
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


DRIVERS: dict[str, LogicalDriver] = {}
_loaded = False


def register(type_name: str, driver: LogicalDriver) -> None:
    """Make ``driver`` run every task of ``type_name`` (a later call wins)."""
    DRIVERS[type_name.upper()] = driver


def driver_for(type_name: str) -> LogicalDriver | None:
    return DRIVERS.get(type_name.upper())


def load_builtin() -> frozenset[str]:
    """Import the modules of the built-in drivers once; returns the registered type names."""
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in BUILTIN_MODULES:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:
                    log.exception("logical tasks: cannot load the drivers of %s", mod)
            except Exception:  # a broken driver module must not keep the master from running
                log.exception("logical tasks: cannot load the drivers of %s", mod)
    return frozenset(DRIVERS)
