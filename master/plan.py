"""Planning, pure (no I/O): turn a decision into the attempt rows to insert — each one's resolved
spec and parameters, its first state (queued for a worker, started by a driver, a branch routed at
once, a dry run, a type this master cannot run) — and admit attempts into full task groups."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from core import branching, task_types
from core import params as params_mod
from core.errors import ValidationError
from core.spec import TaskSpec
from core.states import TASK_SUCCESSFUL, TaskState
from db.attempts import AttemptRow, NewAttempt
from master.decide import BRANCH_KEY, AttemptView, Decision
from master.owned import OwnedInstance

log = logging.getLogger(__name__)

S = TaskState


def view(inst: OwnedInstance, r: AttemptRow) -> AttemptView:
    """The decision's view of a cached row, built once per row version (rows are immutable)."""
    hit = inst.views.get(r.id)
    if hit is not None and hit[0] is r:
        return hit[1]
    v = AttemptView(r.name, r.attempt, TaskState(r.state), r.end_time, r.id, r.output)
    inst.views[r.id] = (r, v)
    return v


def latest_outputs(rows: list[AttemptRow]) -> dict[str, dict[str, str]]:
    """Each task's outputs from its latest successful attempt (internal ``__`` keys left out)."""
    best: dict[str, AttemptRow] = {}
    for r in rows:
        if r.state in TASK_SUCCESSFUL:
            cur = best.get(r.name)
            if cur is None or r.attempt > cur.attempt:
                best[r.name] = r
    return {
        n: {str(k): str(v) for k, v in (r.output or {}).items() if not str(k).startswith("__")}
        for n, r in best.items()
    }


def new_attempt(
    inst: OwnedInstance,
    name: str,
    attempt: int,
    outputs: dict[str, dict[str, str]],
    now: datetime,
) -> NewAttempt:
    """A SUBMITTED attempt with its resolved parameters (built-ins from the run's base time,
    stable across attempts, retries and failover) and rendered command; a parameter that cannot
    be resolved is recorded as ``render_error`` (the worker fails the attempt with it)."""
    task = inst.spec.task(name)
    spec = task.model_dump()
    startup = {str(k): str(v) for k, v in (inst.row.params or {}).items()}
    base = inst.row.schedule_time or inst.row.start_time or now
    try:
        upstream = params_mod.merge_upstream_outputs(task.depends_on, outputs)
        resolved = params_mod.resolve_task_params(
            inst.spec.params, upstream, startup, task.params, base, inst.spec.timezone
        )
        spec["env"] = params_mod.params_to_env(resolved)
        if name in inst.driven:
            spec["params"] = resolved  # what its driver gets (LogicalContext.params)
        if task.type == "SHELL" and task.command:
            spec["command"] = params_mod.render_shell(
                task.command, resolved, base, inst.spec.timezone
            )
    except ValidationError as exc:
        log.warning("instance %d task %s: %s", inst.row.id, name, exc.message)
        spec["env"] = {}
        spec["render_error"] = exc.message
    group = task.worker_group
    if group == "default" and inst.row.run_options.get("worker_group"):
        group = str(inst.row.run_options["worker_group"])
    return NewAttempt(
        workflow_instance_id=inst.row.id,
        name=name,
        type=task.type,
        attempt=attempt,
        priority=inst.priorities[name],
        worker_group=group,
        spec=spec,
    )


def first_state(
    inst: OwnedInstance, task: TaskSpec, a: NewAttempt, latest: Mapping[str, AttemptRow]
) -> NewAttempt:
    """Where a new attempt starts: a branch is routed at once (final), a driven type is RUNNING
    (its driver starts it in the same transaction), a logical type without a driver here fails,
    a dry run succeeds without running, anything else waits SUBMITTED for a worker (in its task
    group, if any)."""
    if task.type in branching.BRANCH_TYPES:
        return route(task, a, latest)
    if task.name in inst.driven:
        if inst.dry_run:
            return replace(a, state=S.SUCCESS.value, reason="dry run: not executed")
        return replace(a, state=S.RUNNING.value)
    if task_types.is_logical(task.type):
        why = f"{task.type} tasks are not supported by this master"
        return replace(a, state=S.FAILURE.value, reason=why)
    if inst.dry_run:
        return replace(a, state=S.SUCCESS.value, reason="dry run: not executed")
    if task.task_group:
        return replace(a, task_group=task.task_group)
    return a


def route(task: TaskSpec, a: NewAttempt, latest: Mapping[str, AttemptRow]) -> NewAttempt:
    """Evaluate a CONDITIONS or SWITCH node now: a final row naming the chosen tasks."""
    fields = task.model_dump()
    try:
        if task.type == branching.CONDITIONS:
            ok = all(latest[u].state in TASK_SUCCESSFUL for u in task.depends_on if u in latest)
            chosen_route = branching.route_conditions(fields, ok)
        else:
            env = {str(k): str(v) for k, v in (a.spec.get("env") or {}).items()}
            chosen_route = branching.route_switch(fields, env)
    except branching.ExpressionError as exc:
        return replace(a, state=S.FAILURE.value, reason=str(exc))
    chosen = ",".join(chosen_route.chosen)
    return replace(
        a,
        state=S.SUCCESS.value,
        output={BRANCH_KEY: chosen},
        reason=f"{chosen_route.reason}: {chosen or 'nothing'}",
    )


def latest_visible(rows: list[AttemptRow], visible: set[int]) -> dict[str, AttemptRow]:
    """Each task's latest attempt among the visible ones (the current run's)."""
    latest: dict[str, AttemptRow] = {}
    for r in sorted(rows, key=lambda r: r.attempt):
        if r.id in visible:
            latest[r.name] = r
    return latest


def rows_for(
    inst: OwnedInstance, d: Decision, rows: list[AttemptRow], visible: set[int], now: datetime
) -> list[NewAttempt]:
    """The rows a decision inserts: its new attempts in their first state, and its skips."""
    outputs = latest_outputs([r for r in rows if r.id in visible])
    latest = latest_visible(rows, visible) if d.create else {}
    out = []
    for c in d.create:
        task = inst.spec.task(c.name)
        out.append(
            first_state(inst, task, new_attempt(inst, c.name, c.attempt, outputs, now), latest)
        )
    for k in d.skip:
        task = inst.spec.task(k.name)
        out.append(
            NewAttempt(
                workflow_instance_id=inst.row.id,
                name=k.name,
                type=task.type,
                attempt=k.attempt,
                priority=inst.priorities[k.name],
                worker_group=task.worker_group,
                spec={},
                state=S.SKIPPED.value,
                reason=k.reason,
            )
        )
    return out


def cancels_for(
    d: Decision, rows: list[AttemptRow], views: list[AttemptView]
) -> list[tuple[AttemptRow, TaskState]]:
    """The latest visible attempt of each task the decision cancels, with the state it ends in."""
    visible = {v.id for v in views}
    latest = {r.name: r for r in sorted(rows, key=lambda r: r.attempt)}
    out = []
    for name in d.cancel:
        row = latest.get(name)
        if row is not None and row.id in visible:
            out.append((row, d.cancel_state))
    return out


@dataclass(frozen=True)
class Admission:
    """Which new attempts may be inserted now, and per instance the tasks held back and why."""

    keep: list[NewAttempt]
    waiting: dict[int, list[str]]


def gate(new: list[NewAttempt], slots: Mapping[str, tuple[int, int]]) -> Admission:
    """Task-group admission: SUBMITTED attempts of a task group are let in while the group has
    free slots (``slots``: group -> (capacity, used), counted by the caller under the group's
    lock), in priority order; the rest wait, each with a sentence saying for which group."""
    grouped = [a for a in new if a.task_group and a.state == S.SUBMITTED]
    if not grouped:
        return Admission(new, {})
    free = {g: cap - used for g, (cap, used) in slots.items()}
    keep = [a for a in new if not (a.task_group and a.state == S.SUBMITTED)]
    waiting: dict[int, list[str]] = {}
    for a in sorted(grouped, key=lambda a: (a.priority, a.workflow_instance_id, a.name)):
        g = str(a.task_group)
        if free.get(g, 0) > 0:
            free[g] -= 1
            keep.append(a)
            continue
        why = "does not exist" if g not in slots else f"full, {slots[g][0]} slot(s)"
        waiting.setdefault(a.workflow_instance_id, []).append(
            f"{a.name} waits for task group {g} ({why})"
        )
    return Admission(keep, waiting)


def grouped_names(new: list[NewAttempt]) -> list[str]:
    """The task groups the SUBMITTED attempts among ``new`` need slots of."""
    return [str(a.task_group) for a in new if a.task_group and a.state == S.SUBMITTED]


def cancel_reason(state: TaskState) -> str:
    return "paused before it started" if state == S.PAUSE else "cancelled before it ran"
