"""The pure decision of one workflow-instance step: which attempts to create now, when to look
again, and whether the instance is finished. No I/O; the runner acts on the result."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common import dag as dag_mod
from common.spec import WorkflowSpec
from common.states import TASK_IN_FLIGHT, TASK_SUCCESSFUL, TaskState, WorkflowState


@dataclass(frozen=True)
class AttemptView:
    name: str
    attempt: int
    state: TaskState
    end_time: datetime | None = None


@dataclass(frozen=True)
class ToCreate:
    name: str
    attempt: int
    reason: str


@dataclass
class Decision:
    create: list[ToCreate] = field(default_factory=list)
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


def decide(
    spec: WorkflowSpec,
    dag: dag_mod.Dag,
    attempts: Iterable[AttemptView],
    now: datetime,
    failure_strategy: str = "CONTINUE",
    scope: set[str] | None = None,
) -> Decision:
    """Next step of an instance given every attempt so far (all attempts, not only the latest)."""
    all_attempts = list(attempts)
    latest = latest_attempts(all_attempts)
    failures: dict[str, int] = {}
    for a in all_attempts:
        if a.state == TaskState.FAILURE:
            failures[a.name] = failures.get(a.name, 0) + 1
    in_scope = scope if scope is not None else set(dag.deps)

    create: list[ToCreate] = []
    wake: datetime | None = None
    in_flight = [n for n, a in latest.items() if a.state in TASK_IN_FLIGHT]
    failed_final: list[str] = []
    for name, a in latest.items():
        task = spec.task(name)
        if a.state == TaskState.NEED_FAULT_TOLERANCE:
            create.append(ToCreate(name, a.attempt + 1, "fault tolerance"))
        elif a.state == TaskState.FAILURE and failures.get(name, 0) <= task.retries:
            due = (a.end_time or now) + timedelta(seconds=task.retry_interval_s)
            if due <= now:
                create.append(ToCreate(name, a.attempt + 1, f"retry {failures[name]}"))
            else:
                wake = due if wake is None else min(wake, due)
        elif a.state in (TaskState.FAILURE, TaskState.KILL):
            failed_final.append(name)

    stop_new = bool(failed_final) and failure_strategy == "END"
    if not stop_new:
        succeeded = [n for n, a in latest.items() if a.state in TASK_SUCCESSFUL]
        for name in dag_mod.ready_tasks(dag, succeeded, latest.keys(), in_scope):
            create.append(ToCreate(name, 1, "ready"))
    else:
        create = [c for c in create if c.reason == "fault tolerance"]

    if create or in_flight or wake is not None:
        parts = []
        if create:
            parts.append(f"create {len(create)}")
        if in_flight:
            parts.append(f"{len(in_flight)} in flight")
        if wake is not None:
            parts.append(f"retry due {wake.isoformat()}")
        return Decision(create=create, wake_at=wake, reason=", ".join(parts))
    if failed_final:
        return Decision(
            finish=WorkflowState.FAILURE, reason=f"failed: {', '.join(sorted(failed_final))}"
        )
    done = [n for n in in_scope if n in latest and latest[n].state in TASK_SUCCESSFUL]
    if len(done) == len(in_scope):
        return Decision(finish=WorkflowState.SUCCESS, reason=f"all {len(done)} tasks succeeded")
    blocked = sorted(n for n in in_scope if n not in latest)
    return Decision(
        finish=WorkflowState.FAILURE,
        reason=f"tasks can no longer run: {', '.join(blocked[:10])}",
    )


def resolve_env(
    spec: WorkflowSpec,
    task_name: str,
    startup: Mapping[str, str],
    upstream_outputs: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    """Parameters a task sees: global < upstream outputs < start-up < task-local."""
    task = spec.task(task_name)
    env: dict[str, str] = dict(spec.params)
    for up in task.depends_on:
        env.update({k: str(v) for k, v in upstream_outputs.get(up, {}).items()})
    env.update({k: str(v) for k, v in startup.items()})
    env.update(task.params)
    return env
