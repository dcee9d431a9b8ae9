"""The single home of every state enum, command type, priority, execution type and the
allowed-transition tables; SQL binds these values (``state = ANY(:states)``), never literals."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum


class Priority(IntEnum):
    """Dispatch priority; the integer is the queue-key digit (0 sorts first)."""

    HIGHEST = 0
    HIGH = 1
    MEDIUM = 2
    LOW = 3
    LOWEST = 4

    @classmethod
    def parse(cls, value: str | int | Priority) -> Priority:
        if isinstance(value, Priority):
            return value
        if isinstance(value, int):
            return cls(value)
        return cls[value.upper()]


class WorkflowState(StrEnum):
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    READY_PAUSE = "READY_PAUSE"
    PAUSE = "PAUSE"
    READY_STOP = "READY_STOP"
    STOP = "STOP"
    FAILURE = "FAILURE"
    SUCCESS = "SUCCESS"
    SERIAL_WAIT = "SERIAL_WAIT"
    FAILOVER = "FAILOVER"


class TaskState(StrEnum):
    SUBMITTED = "SUBMITTED"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    KILL = "KILL"
    PAUSE = "PAUSE"
    NEED_FAULT_TOLERANCE = "NEED_FAULT_TOLERANCE"
    FORCED_SUCCESS = "FORCED_SUCCESS"
    DELAY_EXECUTION = "DELAY_EXECUTION"
    SKIPPED = "SKIPPED"


class BackfillState(StrEnum):
    """A backfill is RUNNING until every date's instance is terminal, then DONE (or STOPPED)."""

    RUNNING = "RUNNING"
    DONE = "DONE"
    STOPPED = "STOPPED"


class ReleaseState(StrEnum):
    """A workflow's release state: an OFFLINE workflow cannot be run and its schedules do not
    fire (nor do its backfills submit dates) until it is ONLINE again."""

    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


class ExecutionType(StrEnum):
    """How a new run of a workflow treats its running ones: run beside them, wait (oldest
    first), be discarded (STOPped with a reason), or wait (highest priority first)."""

    PARALLEL = "PARALLEL"
    SERIAL_WAIT = "SERIAL_WAIT"
    SERIAL_DISCARD = "SERIAL_DISCARD"
    SERIAL_PRIORITY = "SERIAL_PRIORITY"


SERIAL_EXECUTION: frozenset[ExecutionType] = frozenset(
    set(ExecutionType) - {ExecutionType.PARALLEL}
)


class CommandType(StrEnum):
    START_PROCESS = "START_PROCESS"
    START_CURRENT_TASK_PROCESS = "START_CURRENT_TASK_PROCESS"
    REPEAT_RUNNING = "REPEAT_RUNNING"
    START_FAILURE_TASK_PROCESS = "START_FAILURE_TASK_PROCESS"
    PAUSE = "PAUSE"
    RECOVER_SUSPENDED_PROCESS = "RECOVER_SUSPENDED_PROCESS"
    STOP = "STOP"
    SCHEDULER = "SCHEDULER"
    COMPLEMENT_DATA = "COMPLEMENT_DATA"
    RECOVER_TOLERANCE_FAULT_PROCESS = "RECOVER_TOLERANCE_FAULT_PROCESS"


class WarningType(StrEnum):
    """Which ends of a workflow's runs mail its alert group (DolphinScheduler's warning type)."""

    NONE = "NONE"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    ALL = "ALL"


class AlertStatus(StrEnum):
    """Delivery of one alert row: WAIT (to send, or to retry at ``next_try_at``), SENT (every
    channel took it), FAILED (a channel still refused it after the last try), SKIPPED (no
    channel to send it to)."""

    WAIT = "WAIT"
    SENT = "SENT"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


W = WorkflowState
T = TaskState

WORKFLOW_TERMINAL: frozenset[WorkflowState] = frozenset({W.STOP, W.FAILURE, W.SUCCESS})
WORKFLOW_ACTIVE: frozenset[WorkflowState] = frozenset(
    set(WorkflowState) - WORKFLOW_TERMINAL - {W.PAUSE}
)

# A finished task attempt: nothing more happens to this row.
TASK_TERMINAL: frozenset[TaskState] = frozenset(
    {T.SUCCESS, T.FAILURE, T.KILL, T.PAUSE, T.NEED_FAULT_TOLERANCE, T.FORCED_SUCCESS, T.SKIPPED}
)
# Attempts that occupy (or are about to occupy) a worker slot.
TASK_IN_FLIGHT: frozenset[TaskState] = frozenset({T.SUBMITTED, T.DISPATCHED, T.RUNNING})
# Attempts queued but not started: a worker that leases one may still start it.
TASK_UNSTARTED: frozenset[TaskState] = frozenset({T.SUBMITTED, T.DISPATCHED})
# Terminal states that count as a success for downstream tasks.
TASK_SUCCESSFUL: frozenset[TaskState] = frozenset({T.SUCCESS, T.FORCED_SUCCESS})

WORKFLOW_TRANSITIONS: dict[WorkflowState, frozenset[WorkflowState]] = {
    W.SUBMITTED: frozenset({W.RUNNING, W.SERIAL_WAIT, W.READY_STOP, W.STOP, W.FAILURE}),
    W.SERIAL_WAIT: frozenset({W.SUBMITTED, W.RUNNING, W.READY_STOP, W.STOP}),
    W.RUNNING: frozenset(
        {W.READY_PAUSE, W.READY_STOP, W.SUCCESS, W.FAILURE, W.FAILOVER, W.STOP, W.PAUSE}
    ),
    W.FAILOVER: frozenset({W.RUNNING, W.READY_PAUSE, W.READY_STOP, W.SUCCESS, W.FAILURE}),
    W.READY_PAUSE: frozenset({W.PAUSE, W.READY_STOP, W.SUCCESS, W.FAILURE, W.FAILOVER}),
    W.PAUSE: frozenset({W.RUNNING, W.READY_STOP, W.STOP}),
    W.READY_STOP: frozenset({W.STOP, W.FAILOVER}),
    # Terminal states may be re-run (REPEAT_RUNNING / START_FAILURE_TASK_PROCESS).
    W.STOP: frozenset({W.RUNNING}),
    W.FAILURE: frozenset({W.RUNNING}),
    W.SUCCESS: frozenset({W.RUNNING}),
}

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    T.SUBMITTED: frozenset(
        {
            T.DISPATCHED,
            T.RUNNING,
            T.KILL,
            T.PAUSE,
            T.DELAY_EXECUTION,
            T.SKIPPED,
            T.FAILURE,
            T.NEED_FAULT_TOLERANCE,
        }
    ),
    T.DELAY_EXECUTION: frozenset({T.SUBMITTED, T.DISPATCHED, T.KILL, T.PAUSE}),
    T.DISPATCHED: frozenset({T.RUNNING, T.KILL, T.NEED_FAULT_TOLERANCE, T.FAILURE, T.PAUSE}),
    T.RUNNING: frozenset({T.SUCCESS, T.FAILURE, T.KILL, T.NEED_FAULT_TOLERANCE}),
    T.FAILURE: frozenset({T.FORCED_SUCCESS}),
    T.SUCCESS: frozenset(),
    T.KILL: frozenset({T.FORCED_SUCCESS}),
    T.PAUSE: frozenset(),
    T.NEED_FAULT_TOLERANCE: frozenset(),
    T.FORCED_SUCCESS: frozenset(),
    T.SKIPPED: frozenset(),
}


def can_transition_workflow(src: WorkflowState, dst: WorkflowState) -> bool:
    """True when a workflow instance may move from ``src`` to ``dst``."""
    return dst in WORKFLOW_TRANSITIONS[src]


def can_transition_task(src: TaskState, dst: TaskState) -> bool:
    """True when a task attempt may move from ``src`` to ``dst``."""
    return dst in TASK_TRANSITIONS[src]


def workflow_sources(dst: WorkflowState) -> tuple[str, ...]:
    """The states from which ``dst`` is reachable, for conditional UPDATE ... WHERE state IN (...)."""
    return tuple(s.value for s, targets in WORKFLOW_TRANSITIONS.items() if dst in targets)


def task_sources(dst: TaskState) -> tuple[str, ...]:
    """The states from which ``dst`` is reachable, for conditional UPDATE ... WHERE state IN (...)."""
    return tuple(s.value for s, targets in TASK_TRANSITIONS.items() if dst in targets)


def values(states: Iterable[StrEnum]) -> list[str]:
    """The sorted values of ``states``: the list bound to ``state = ANY(:states)``."""
    return sorted(str(s.value) for s in states)
