"""Which control requests an instance or a task attempt accepts right now, and the reason a
refused one gives: the same rules and the same words as db/control.py (a test runs both on
every state), so the UI can disable a button with the API's own message."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.states import (
    TaskState,
    WorkflowState,
    can_transition_task,
    can_transition_workflow,
)

W = WorkflowState
T = TaskState

INSTANCE_ACTIONS = ("stop", "pause", "resume", "rerun", "recover-failed")
TASK_ACTIONS = ("kill", "force-success")

_KILLABLE = frozenset({T.SUBMITTED, T.DISPATCHED, T.DELAY_EXECUTION, T.RUNNING})
# state -> the request's answer when the instance is already on its way (202, nothing done)
_NO_OPS = {
    "stop": {W.READY_STOP: "already stopping"},
    "pause": {W.READY_PAUSE: "already pausing", W.PAUSE: "already pausing"},
}
# requests that write a command: the states they accept and the refusal's reason
_COMMANDS = {
    "resume": ({W.PAUSE}, "resume", "only a PAUSE instance can be resumed"),
    "rerun": ({W.SUCCESS, W.FAILURE, W.STOP}, "rerun", "only a finished instance can be run again"),
    "recover-failed": (
        {W.FAILURE, W.STOP},
        "recover",
        "only a FAILURE or STOP instance can be recovered",
    ),
}


@dataclass(frozen=True)
class Allowed:
    """``allowed`` False: the request would be refused (409) or change nothing; ``reason`` says
    why in the API's words."""

    allowed: bool
    reason: str | None = None


def _refusal(instance_id: int, state: str, what: str, why: str) -> str:
    return f"cannot {what} instance {instance_id}: it is {state}; {why}"


@dataclass(frozen=True)
class Pending:
    """The instance's command that no master has taken yet (``action``: what it asks for)."""

    id: int
    action: str


def instance_action(
    action: str, instance_id: int, state: WorkflowState, pending: Pending | None = None
) -> Allowed:
    """The answer ``POST /instances/{id}/<action>`` would give for an instance in ``state``
    (a request that writes a command waits until ``pending`` has been taken)."""
    noop = _NO_OPS.get(action, {}).get(state)
    if noop is not None:
        return Allowed(False, f"instance {instance_id}: {noop}")
    if action == "stop":
        if state in (W.SUBMITTED, W.SERIAL_WAIT, W.PAUSE) or can_transition_workflow(
            state, W.READY_STOP
        ):
            return Allowed(True)
        return Allowed(False, _refusal(instance_id, state, "stop", "it has already finished"))
    if action == "pause":
        if can_transition_workflow(state, W.READY_PAUSE):
            return Allowed(True)
        why = "only a RUNNING instance can be paused"
        return Allowed(False, _refusal(instance_id, state, "pause", why))
    accepted, what, why = _COMMANDS[action]
    if state not in accepted:
        return Allowed(False, _refusal(instance_id, state, what, why))
    if pending is not None:
        return Allowed(
            False,
            f"cannot {what} instance {instance_id}: its {pending.action} request (command"
            f" {pending.id}) is still waiting for a master; try again once it has been taken",
        )
    return Allowed(True)


def instance_actions(
    instance_id: int, state: str, pending: Pending | None = None
) -> dict[str, Allowed]:
    st = WorkflowState(state)
    return {a: instance_action(a, instance_id, st, pending) for a in INSTANCE_ACTIONS}


def task_action(
    action: str, task_id: int, name: str, state: TaskState, latest: int, attempt: int
) -> Allowed:
    """The answer ``POST /task-instances/{id}/<action>`` would give; ``latest`` is the highest
    attempt number of the task's name in its instance."""
    if action == "kill":
        if state in _KILLABLE:
            return Allowed(True)
        return Allowed(False, f"cannot kill task instance {task_id}: it is {state}, not running")
    if not can_transition_task(state, T.FORCED_SUCCESS):
        return Allowed(
            False,
            f"cannot force success of task instance {task_id}: it is {state}"
            " (only FAILURE or KILL can be forced)",
        )
    if latest > attempt:
        return Allowed(
            False,
            f"cannot force success of task instance {task_id}: attempt {latest} of '{name}'"
            " came after it",
        )
    return Allowed(True)


@dataclass(frozen=True)
class AttemptRef:
    id: int
    name: str
    state: str
    attempt: int


def task_actions(attempts: Iterable[AttemptRef]) -> dict[int, dict[str, Allowed]]:
    """Both task requests for every attempt of one instance."""
    rows = list(attempts)
    latest: dict[str, int] = {}
    for r in rows:  # db/control.force_success compares with max(attempt) of the name
        latest[r.name] = max(latest.get(r.name, 0), r.attempt)
    out: dict[int, dict[str, Allowed]] = {}
    for r in rows:
        top = latest[r.name]
        st = TaskState(r.state)
        out[r.id] = {a: task_action(a, r.id, r.name, st, top, r.attempt) for a in TASK_ACTIONS}
    return out


def forbid_all(actions: dict[str, Allowed], reason: str) -> dict[str, Allowed]:
    """Every action refused with the 403 the caller's role would get (the state's own refusal
    matters only to someone who may act)."""
    return {name: Allowed(False, reason) for name in actions}
