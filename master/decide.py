"""The pure decision of one workflow-instance step: which attempts to create, skip or cancel now,
when to look again, and whether the instance is finished. No I/O; the runner acts on the result.

Rules (documented in the README's "Workflow semantics" section):
- A task whose latest attempt failed is retried while failures <= retries, after retry_interval_s
  (doubled per retry with retry_backoff, capped by retry_max_delay_s). A NEED_FAULT_TOLERANCE or
  PAUSE attempt is started again without using a retry.
- A task starts when its trigger rule holds over its upstream tasks' final states, and is SKIPPED
  when the rule can no longer hold. A CONDITIONS/SWITCH upstream that did not choose a task counts as
  skipped for it.
- A final failure is *handled* when a direct downstream task reacts to failure (trigger rule
  all_done, all_failed or one_failed, or a CONDITIONS node); an unhandled failure fails the
  workflow, and with failure strategy END also cancels everything in flight and starts nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from core import branching, waiting
from core import dag as dag_mod
from core.spec import TaskSpec, WorkflowSpec
from core.states import TASK_IN_FLIGHT, TASK_SUCCESSFUL, TaskState, WorkflowState

# Output key under which a branching node records the names of the tasks it chose.
BRANCH_KEY = "__branch__"
# Trigger rules under which a downstream task reacts to its upstreams' failure.
FAILURE_HANDLING_RULES = frozenset({"all_done", "all_failed", "one_failed"})

S = TaskState


class Mode(StrEnum):
    """What the instance is asked to do: run, drain for a pause, or stop."""

    RUN = "run"
    PAUSE = "pause"  # start nothing; not-yet-running attempts are paused; finish PAUSE when idle
    STOP = "stop"  # start nothing; cancel everything in flight; finish STOP when idle
    FAIL = "fail"  # like STOP but finish FAILURE (workflow timeout)


@dataclass(frozen=True)
class AttemptView:
    name: str
    attempt: int
    state: TaskState
    end_time: datetime | None = None
    id: int = 0
    output: Mapping[str, str] | None = None


@dataclass(frozen=True)
class ToCreate:
    name: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class ToSkip:
    name: str
    attempt: int
    reason: str


@dataclass
class Decision:
    create: list[ToCreate] = field(default_factory=list)
    skip: list[ToSkip] = field(default_factory=list)
    # in-flight task names to cancel, and the state they end in (KILL, or PAUSE if not running)
    cancel: list[str] = field(default_factory=list)
    cancel_state: TaskState = TaskState.KILL
    finish: WorkflowState | None = None
    wake_at: datetime | None = None
    reason: str = ""


def latest_attempts(attempts: Iterable[AttemptView]) -> dict[str, AttemptView]:
    latest: dict[str, AttemptView] = {}
    for a in attempts:
        cur = latest.get(a.name)
        if cur is None or a.attempt > cur.attempt:
            latest[a.name] = a
    return latest


def visible_attempts(
    attempts: Iterable[AttemptView],
    since_id: int,
    keep_successes: bool,
    logical: frozenset[str] = frozenset(),
) -> list[AttemptView]:
    """The attempts of the current run of an instance. A rerun ignores every attempt with an id up
    to ``since_id``; a recovery (``keep_successes``) keeps a task's earlier latest attempt when it
    succeeded, unless the task is evaluated by the master (``logical``: evaluated again)."""
    all_attempts = list(attempts)
    if since_id <= 0:
        return all_attempts
    old_latest = latest_attempts(a for a in all_attempts if a.id <= since_id)
    kept = {
        a.id
        for a in old_latest.values()
        if keep_successes and a.state in TASK_SUCCESSFUL and a.name not in logical
    }
    return [a for a in all_attempts if a.id > since_id or a.id in kept]


def retry_delay(task: TaskSpec, failures: int) -> float:
    """Seconds to wait before retry number ``failures`` (1-based): core.waiting's rule, which
    the API's waiting reasons read too."""
    return waiting.retry_delay(
        task.retry_interval_s, task.retry_backoff, task.retry_max_delay_s, failures
    )


def _upstream_status(
    up: str, name: str, latest: Mapping[str, AttemptView], final_failed: set[str]
) -> str:
    """'success', 'failed', 'skipped' or 'pending' of upstream ``up`` as seen by task ``name``."""
    a = latest.get(up)
    if a is None:
        return "pending"
    if a.state in TASK_SUCCESSFUL:
        chosen = (a.output or {}).get(BRANCH_KEY)
        if chosen is not None and name not in chosen.split(","):
            return "skipped"
        return "success"
    if a.state == S.SKIPPED:
        return "skipped"
    if up in final_failed:
        return "failed"
    return "pending"


def trigger(rule: str, statuses: list[str]) -> tuple[bool | None, str]:
    """(True: run, False: skip, None: wait) and the reason, for a trigger rule over upstream
    statuses; a task without upstreams runs."""
    n = len(statuses)
    s, f, k = statuses.count("success"), statuses.count("failed"), statuses.count("skipped")
    done = s + f + k == n
    if rule == "all_success":
        if f:
            return False, "upstream failed"
        if k:
            return False, "upstream skipped"
        return (True, "ready") if done else (None, "")
    if rule == "all_done":
        return (True, "all upstream done") if done else (None, "")
    if rule == "all_failed":
        if s or k:
            return False, "not all upstream failed"
        return (True, "all upstream failed") if done else (None, "")
    if rule == "one_success":
        if s:
            return True, "one upstream succeeded"
        return (False, "no upstream succeeded") if done else (None, "")
    if rule == "one_failed":
        if f:
            return True, "one upstream failed"
        return (False, "no upstream failed") if done else (None, "")
    if rule == "none_failed":
        if f:
            return False, "upstream failed"
        return (True, "no upstream failed") if done else (None, "")
    raise ValueError(f"unknown trigger rule {rule!r}")


def _handles_failure(task: TaskSpec) -> bool:
    return task.trigger_rule in FAILURE_HANDLING_RULES or task.type == "CONDITIONS"


def decide(
    spec: WorkflowSpec,
    dag: dag_mod.Dag,
    attempts: Iterable[AttemptView],
    now: datetime,
    failure_strategy: str = "CONTINUE",
    scope: set[str] | None = None,
    mode: Mode = Mode.RUN,
    next_attempt: Mapping[str, int] | None = None,
    pausable: frozenset[str] = frozenset(),
    order: Sequence[str] | None = None,
    settle: bool = False,
) -> Decision:
    """Next step of an instance given the attempts of its current run. ``next_attempt`` gives, per
    task, the highest attempt number ever used (earlier runs included) so new rows never collide.
    A pause also cancels (with PAUSE) the running attempts of ``pausable`` tasks: master-run ones,
    whose drivers pass the pause on to what they own.

    Tasks are judged in ``order`` (topological), and a task skipped now counts as SKIPPED for
    the tasks after it in the same decision, so a chain of skips settles in one pass; with
    ``settle`` (a dry run: every new attempt but a branch is final at once) a created task
    counts as SUCCESS for its successors too."""
    all_attempts = list(attempts)
    latest = latest_attempts(all_attempts)
    tasks = spec.tasks_by_name()
    numbers = dict(next_attempt or {})
    for a in all_attempts:
        numbers[a.name] = max(numbers.get(a.name, 0), a.attempt)
    failures: dict[str, int] = {}
    for a in all_attempts:
        if a.state == S.FAILURE:
            failures[a.name] = failures.get(a.name, 0) + 1
    in_scope = scope if scope is not None else set(dag.deps)
    running = mode is Mode.RUN

    restart: list[ToCreate] = []
    wake: datetime | None = None
    in_flight = sorted(n for n, a in latest.items() if a.state in TASK_IN_FLIGHT)
    final_failed: set[str] = set()
    for name, a in latest.items():
        task = tasks[name]
        if a.state in (S.NEED_FAULT_TOLERANCE, S.PAUSE):
            if running:
                why = "fault tolerance" if a.state == S.NEED_FAULT_TOLERANCE else "resume"
                restart.append(ToCreate(name, numbers[name] + 1, why))
        elif a.state == S.FAILURE and failures.get(name, 0) <= task.retries and running:
            due = (a.end_time or now) + timedelta(seconds=retry_delay(task, failures[name]))
            if due <= now:
                restart.append(ToCreate(name, numbers[name] + 1, f"retry {failures[name]}"))
            else:
                wake = due if wake is None else min(wake, due)
        elif a.state in (S.FAILURE, S.KILL):
            final_failed.add(name)

    unhandled = sorted(
        n
        for n in final_failed
        if not any(d in in_scope and _handles_failure(tasks[d]) for d in dag.downstream.get(n, ()))
    )
    if mode in (Mode.STOP, Mode.FAIL) or (unhandled and failure_strategy == "END"):
        if in_flight:
            return Decision(
                cancel=in_flight,
                cancel_state=S.KILL,
                reason=f"{mode.value.lower()}: cancel {len(in_flight)} in flight"
                if mode is not Mode.RUN
                else f"END strategy after {', '.join(unhandled)} failed: cancel {len(in_flight)}",
            )
        if mode is Mode.STOP:
            return Decision(finish=WorkflowState.STOP, reason="stopped")
        if mode is Mode.FAIL:
            return Decision(finish=WorkflowState.FAILURE, reason="workflow timed out")
        return Decision(
            finish=WorkflowState.FAILURE,
            reason=f"failed: {', '.join(unhandled)} (failure strategy END)",
        )
    if mode is Mode.PAUSE:
        waiting = [n for n in in_flight if latest[n].state != S.RUNNING or n in pausable]
        if waiting:
            return Decision(
                cancel=waiting, cancel_state=S.PAUSE, reason=f"pause {len(waiting)} not started"
            )
        if in_flight:
            return Decision(reason=f"pausing: {len(in_flight)} still running")
        return Decision(finish=WorkflowState.PAUSE, reason="paused")

    create = list(restart)
    skip: list[ToSkip] = []
    judged = dict(latest)  # latest, plus what this decision settles for the tasks after it
    for name in order if order is not None else sorted(in_scope):
        if name in latest or name not in in_scope:
            continue
        ups = [u for u in dag.deps[name] if u in in_scope]
        statuses = [_upstream_status(u, name, judged, final_failed) for u in ups]
        task = tasks[name]
        # a CONDITIONS node routes on its upstreams' outcome, so it runs once they are all done
        rule = "all_done" if task.type == "CONDITIONS" else task.trigger_rule
        verdict, why = trigger(rule, statuses)
        n = numbers.get(name, 0) + 1
        if verdict is True:
            create.append(ToCreate(name, n, why))
            if settle and task.type not in branching.BRANCH_TYPES:  # routed when planned
                judged[name] = AttemptView(name, n, S.SUCCESS, now)
        elif verdict is False:
            skip.append(ToSkip(name, n, why))
            judged[name] = AttemptView(name, n, S.SKIPPED, now)
    create.sort(key=lambda c: c.name)
    skip.sort(key=lambda c: c.name)

    if create or skip or in_flight or wake is not None:
        parts = []
        if create:
            parts.append(f"create {len(create)}")
        if skip:
            parts.append(f"skip {len(skip)}")
        if in_flight:
            parts.append(f"{len(in_flight)} in flight")
        if wake is not None:
            parts.append(f"retry due {wake.isoformat()}")
        return Decision(create=create, skip=skip, wake_at=wake, reason=", ".join(parts))
    if unhandled:
        return Decision(finish=WorkflowState.FAILURE, reason=f"failed: {', '.join(unhandled)}")
    blocked = sorted(n for n in in_scope if n not in latest)
    if blocked:
        return Decision(
            finish=WorkflowState.FAILURE,
            reason=f"tasks can no longer run: {', '.join(blocked[:10])}",
        )
    handled = f" ({len(final_failed)} failure(s) handled downstream)" if final_failed else ""
    return Decision(finish=WorkflowState.SUCCESS, reason=f"all {len(in_scope)} tasks done{handled}")
