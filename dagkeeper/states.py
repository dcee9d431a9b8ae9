"""The states the REST API reports, as the SDK sees them (the API's contract: upper-case names;
the server's own tables live server-side, and a unit test keeps the two equal)."""

from __future__ import annotations

from enum import StrEnum, auto


class _Upper(StrEnum):
    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
        return name


class WorkflowState(_Upper):
    SUBMITTED = auto()
    RUNNING = auto()
    READY_PAUSE = auto()
    PAUSE = auto()
    READY_STOP = auto()
    STOP = auto()
    FAILURE = auto()
    SUCCESS = auto()
    SERIAL_WAIT = auto()
    FAILOVER = auto()


class TaskState(_Upper):
    SUBMITTED = auto()
    DISPATCHED = auto()
    RUNNING = auto()
    SUCCESS = auto()
    FAILURE = auto()
    KILL = auto()
    PAUSE = auto()
    NEED_FAULT_TOLERANCE = auto()
    FORCED_SUCCESS = auto()
    DELAY_EXECUTION = auto()
    SKIPPED = auto()


W, T = WorkflowState, TaskState
WORKFLOW_TERMINAL = frozenset({W.SUCCESS, W.FAILURE, W.STOP})
# a run that rests: finished, or paused until somebody resumes it
WORKFLOW_SETTLED = WORKFLOW_TERMINAL | {W.PAUSE}
TASK_TERMINAL = frozenset(
    {T.SUCCESS, T.FAILURE, T.KILL, T.PAUSE, T.NEED_FAULT_TOLERANCE, T.FORCED_SUCCESS, T.SKIPPED}
)
TASK_SUCCESSFUL = frozenset({T.SUCCESS, T.FORCED_SUCCESS})
TASK_FAILED = frozenset({T.FAILURE, T.KILL, T.NEED_FAULT_TOLERANCE})


class BackfillState(_Upper):
    RUNNING = auto()
    DONE = auto()
    STOPPED = auto()
