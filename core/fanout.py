"""FANOUT (KunlunBase's Task of Channels), the pure part: validate the task's fields, resolve its
targets, expand one sub-execution per target host with its own parameters, and judge the node
from its sub-executions' states (all SUCCESS, or FAILURE; fail-fast; unclaimed deadlines)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.states import TASK_SUCCESSFUL, TASK_TERMINAL, TASK_UNSTARTED, TaskState

FANOUT = "FANOUT"
# A sub-execution nobody claimed (its host's worker is gone) fails after per_target_timeout_s,
# or after this long when the task sets no timeout.
DEFAULT_CLAIM_DEADLINE_S = 300.0
# Sub-execution (task attempt) states that are final; anything else is pending or running.
SUCCESS_STATES = frozenset(s.value for s in TASK_SUCCESSFUL)
FAILED_STATES = frozenset(s.value for s in TASK_TERMINAL - TASK_SUCCESSFUL)
FINAL_STATES = SUCCESS_STATES | FAILED_STATES
UNSTARTED = frozenset(s.value for s in TASK_UNSTARTED)
# env var every sub-execution gets: the host it was meant for
TARGET_ENV = "DAGKEEPER_FANOUT_TARGET"
MAX_NAME = 200

FieldProblem = tuple[str, str]


@dataclass(frozen=True)
class FanoutSpec:
    """The parsed FANOUT fields: exactly one of ``group`` and ``hosts``."""

    command: str
    group: str | None = None
    hosts: tuple[str, ...] = ()
    target_params: dict[str, dict[str, str]] = field(default_factory=dict)
    per_target_timeout_s: float | None = None
    fail_fast: bool = False


@dataclass(frozen=True)
class SubExecution:
    """One planned sub-execution: its host, row name and parameters (template + overrides)."""

    host: str
    name: str
    params: dict[str, str]


def _is_host(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip()) and "/" not in v and v not in (".", "..")


def validate(t: Mapping[str, Any]) -> list[FieldProblem]:
    """(field, problem) pairs of a FANOUT task's fields; empty when it is runnable."""
    out: list[FieldProblem] = []
    command, script = t.get("command"), t.get("script")
    if command is not None and script is not None:
        out.append(("script", "give command or script, not both"))
    body = command if command is not None else script
    if not isinstance(body, str) or not body.strip():
        out.append(("command", "is required (a non-empty bash script; or give script)"))
    targets = t.get("targets")
    hosts: list[str] | None = None
    if not isinstance(targets, dict) or not targets:
        out.append(("targets", 'is required: {"group": "g"} or {"hosts": ["h1", ...]}'))
    else:
        unknown = sorted(set(targets) - {"group", "hosts"})
        if unknown:
            out.append(("targets", f"unknown key(s) {', '.join(unknown)}; use group or hosts"))
        if "group" in targets and "hosts" in targets:
            out.append(("targets", "give group or hosts, not both"))
        elif "group" in targets:
            g = targets["group"]
            if not isinstance(g, str) or not g.strip() or "/" in g:
                out.append(("targets.group", "must be a worker group name"))
        elif "hosts" in targets:
            h = targets["hosts"]
            if not isinstance(h, list) or not h or not all(_is_host(x) for x in h):
                out.append(("targets.hosts", "must be a non-empty list of host names"))
            elif len(set(h)) != len(h):
                out.append(("targets.hosts", "lists a host twice"))
            else:
                hosts = list(h)
    tp = t.get("target_params")
    if tp is not None:
        if not isinstance(tp, dict) or not all(
            isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) for v in tp.values()
        ):
            out.append(("target_params", "must be an object host -> {name: string value}"))
        elif hosts is not None:
            extra = sorted(set(tp) - set(hosts))
            if extra:
                out.append(("target_params", f"names host(s) not in targets.hosts: {extra}"))
    timeout = t.get("per_target_timeout_s")
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
    ):
        out.append(("per_target_timeout_s", "must be a positive number of seconds"))
    ff = t.get("fail_fast")
    if ff is not None and not isinstance(ff, bool):
        out.append(("fail_fast", "must be true or false"))
    return out


def parse(t: Mapping[str, Any]) -> FanoutSpec:
    """The FANOUT fields of a task; ValueError naming the fields if they are not valid."""
    problems = validate(t)
    if problems:
        raise ValueError("; ".join(f"{f}: {m}" for f, m in problems))
    targets = t["targets"]
    command = t.get("command") if t.get("command") is not None else t.get("script")
    timeout = t.get("per_target_timeout_s")
    return FanoutSpec(
        command=str(command),
        group=str(targets["group"]) if "group" in targets else None,
        hosts=tuple(str(h) for h in targets.get("hosts") or ()),
        target_params={
            str(h): {str(k): str(v) for k, v in p.items()}
            for h, p in (t.get("target_params") or {}).items()
        },
        per_target_timeout_s=float(timeout) if timeout is not None else None,
        fail_fast=bool(t.get("fail_fast")),
    )


def resolve_targets(spec: FanoutSpec, live_hosts: Iterable[str]) -> tuple[list[str], list[str]]:
    """(targets, targets without a live worker): a group's targets are the hosts of its live
    workers (one per host, sorted); an explicit list is kept in order, its dead hosts named."""
    live = {h for h in live_hosts if h}
    if spec.group is not None:
        return sorted(live), []
    return list(spec.hosts), [h for h in spec.hosts if h not in live]


def sub_name(task: str, host: str) -> str:
    """The row name of a sub-execution: ``<task>@<host>`` (``@`` is never in a task name), with
    a digest instead of the host's tail when that would not fit the column."""
    name = f"{task}@{host}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(host.encode()).hexdigest()[:16]
    return f"{task}@{host[: MAX_NAME - len(task) - 18]}~{digest}"


def expand(
    task: str, spec: FanoutSpec, targets: list[str], params: Mapping[str, str]
) -> list[SubExecution]:
    """One sub-execution per target: the task's resolved ``params`` as the template, overridden
    by ``target_params[host]``."""
    out = []
    for host in targets:
        merged = {str(k): str(v) for k, v in params.items()}
        merged.update(spec.target_params.get(host, {}))
        out.append(SubExecution(host=host, name=sub_name(task, host), params=merged))
    return out


@dataclass(frozen=True)
class SubState:
    """What the judge needs of one sub-execution row."""

    id: int
    host: str
    state: str
    queued_at: datetime | None  # submit or dispatch time (for the unclaimed deadline)
    exit_code: int | None = None
    reason: str | None = None
    worker_id: str | None = None
    lease_token: int | None = None


@dataclass(frozen=True)
class Judgement:
    """``state`` None = still running. ``expire``: unstarted sub-executions past their claim
    deadline (fail them); ``cancel``: the rest after a fail-fast failure (kill them)."""

    state: str | None
    reason: str = ""
    expire: tuple[int, ...] = ()
    cancel: tuple[int, ...] = ()
    wake_at: datetime | None = None


def claim_deadline_s(spec: FanoutSpec) -> float:
    return spec.per_target_timeout_s or DEFAULT_CLAIM_DEADLINE_S


def judge(spec: FanoutSpec, subs: list[SubState], now: datetime) -> Judgement:
    """The node's verdict over its sub-executions: SUCCESS when all succeeded; FAILURE once all
    are final and one failed, or at the first failure with fail_fast (cancelling the rest).
    Unstarted ones past the claim deadline are expired (they count as failed)."""
    if not subs:
        return Judgement(TaskState.FAILURE.value, "no targets")
    deadline = timedelta(seconds=claim_deadline_s(spec))
    expire = tuple(
        s.id
        for s in subs
        if s.state in UNSTARTED and s.queued_at is not None and now - s.queued_at >= deadline
    )
    states = {s.id: (TaskState.FAILURE.value if s.id in expire else s.state) for s in subs}
    failed = [s for s in subs if states[s.id] in FAILED_STATES]
    pending = [s for s in subs if states[s.id] not in FAILED_STATES | SUCCESS_STATES]
    if failed and (spec.fail_fast or not pending):
        hosts = ", ".join(s.host for s in failed)
        why = f"{len(failed)} of {len(subs)} target(s) failed: {hosts}"
        if pending:
            why += f"; fail-fast cancels {len(pending)}"
        return Judgement(TaskState.FAILURE.value, why, expire, tuple(s.id for s in pending))
    if not pending:
        return Judgement(TaskState.SUCCESS.value, f"all {len(subs)} target(s) succeeded", expire)
    waits = [s.queued_at + deadline for s in pending if s.state in UNSTARTED and s.queued_at]
    return Judgement(
        None,
        f"{len(pending)} of {len(subs)} target(s) running",
        expire,
        (),
        min(waits) if waits else None,
    )


def summary(subs: list[SubState], outputs: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The FANOUT attempt's output: per host, the sub-execution's id, state and exit code, and
    its setValue outputs under ``<host>.<name>``."""
    out: dict[str, Any] = {}
    for s in subs:
        out[f"{s.host}.state"] = s.state
        if s.exit_code is not None:
            out[f"{s.host}.exit_code"] = str(s.exit_code)
        for k, v in (outputs.get(s.id) or {}).items():
            if not str(k).startswith("__"):
                out[f"{s.host}.{k}"] = str(v)
    return out
