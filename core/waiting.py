"""Why is it waiting (pure): for every task of a live instance that is neither running nor
finished, a machine code and a sentence from a snapshot of the instance, its attempts and the
cluster — upstream not done (naming it), no live worker in its group, task group full (n/m and
the instances holding it), queue high-water (its position), dependency not satisfied (naming the
missing item), serial wait (behind which instance), retry delay (until when), failover."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.states import TASK_SUCCESSFUL, TASK_TERMINAL, TaskState, WorkflowState

S, W = TaskState, WorkflowState
UPSTREAM = "UPSTREAM_NOT_DONE"
UPSTREAM_FAILED = "UPSTREAM_FAILED"
NO_WORKER = "NO_LIVE_WORKER"
TASK_GROUP_FULL = "TASK_GROUP_FULL"
HIGH_WATER = "QUEUE_HIGH_WATER"
QUEUED = "QUEUED"
DEPENDENCY = "DEPENDENCY_NOT_SATISFIED"
SERIAL = W.SERIAL_WAIT.value
RETRY = "RETRY_DELAY"
FAILOVER = W.FAILOVER.value
PAUSED = "PAUSED"
NOT_CLAIMED = "NOT_CLAIMED"
DISPATCHING = "DISPATCHING"
READY = "READY"
CODES = (UPSTREAM, UPSTREAM_FAILED, NO_WORKER, TASK_GROUP_FULL, HIGH_WATER, QUEUED, DEPENDENCY,
         SERIAL, RETRY, FAILOVER, PAUSED, NOT_CLAIMED, DISPATCHING, READY)  # fmt: skip


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    since: datetime | None = None  # how long it has waited (the doctor's threshold)


@dataclass(frozen=True)
class TaskFacts:
    name: str
    type: str
    depends_on: tuple[str, ...] = ()
    worker_group: str = "default"
    task_group: str | None = None
    retries: int = 0
    retry_interval_s: float = 0.0
    retry_backoff: bool = False
    retry_max_delay_s: float | None = None
    master_run: bool = False  # DEPENDENT, SUB_PROCESS...: the master runs it, no worker


@dataclass(frozen=True)
class AttemptFacts:
    id: int
    name: str
    attempt: int
    state: str
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class TaskGroupFacts:
    capacity: int
    used: int
    holders: tuple[int, ...] = ()  # instances with attempts in flight in it


@dataclass
class Snapshot:
    """What the decision reads; ``queue_position`` / ``held_position`` are 1-based, by attempt
    id; ``live_workers`` counts live workers per group (a missing group: none)."""

    instance_id: int
    state: str
    start_time: datetime | None
    owner: str | None = None
    owner_alive: bool = True
    serial_behind: int | None = None
    tasks: Sequence[TaskFacts] = ()
    attempts: Sequence[AttemptFacts] = ()
    live_workers: dict[str, int] = field(default_factory=dict)
    queue_depth: dict[str, int] = field(default_factory=dict)
    queue_position: dict[int, int] = field(default_factory=dict)
    held_position: dict[int, int] = field(default_factory=dict)
    high_water: int = 5000
    task_groups: dict[str, TaskGroupFacts] = field(default_factory=dict)


def retry_delay(retry_interval_s: float, backoff: bool, max_delay_s: float | None,
                failures: int) -> float:  # fmt: skip
    """Seconds to wait before retry number ``failures`` (1-based): the interval, doubled per
    retry with backoff, at most ``max_delay_s`` (the master's rule, master/decide.py)."""
    delay = float(retry_interval_s)
    if backoff and failures > 1:
        delay *= 2 ** min(failures - 1, 30)
    if max_delay_s is not None:
        delay = min(delay, float(max_delay_s))
    return delay


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _instance_wide(snap: Snapshot) -> Reason | None:
    """A reason that holds for every waiting task of the instance, if any."""
    st = snap.state
    if st == W.SERIAL_WAIT:
        behind = f"instance {snap.serial_behind}" if snap.serial_behind else "an earlier run"
        return Reason(SERIAL, f"the instance waits behind {behind} of the same workflow"
                      " (serial execution)", snap.start_time)  # fmt: skip
    if st == W.SUBMITTED and not snap.owner:
        return Reason(NOT_CLAIMED, "the instance waits for a master to claim its command")
    if st == W.FAILOVER or (snap.owner and not snap.owner_alive):
        return Reason(FAILOVER, f"failover in progress: its master {snap.owner} is gone and"
                      " another master adopts the instance")  # fmt: skip
    if st in (W.READY_PAUSE, W.PAUSE):
        return Reason(PAUSED, "the instance is paused")
    return None


def _queued(t: TaskFacts, a: AttemptFacts, snap: Snapshot) -> Reason:
    g = t.worker_group
    live = snap.live_workers.get(g, 0)
    if live <= 0:
        return Reason(NO_WORKER, f"no live worker in group {g}", a.submit_time)
    if a.state == S.DISPATCHED:
        pos = snap.queue_position.get(a.id)
        n = snap.queue_depth.get(g, 0)
        where = f"position {pos} of {n}" if pos else f"one of {n} entries"
        return Reason(QUEUED, f"queued at {where} in group {g}; its {live} live worker(s) have"
                      " no free slot yet", a.submit_time)  # fmt: skip
    held = snap.held_position.get(a.id)
    if held is not None:
        return Reason(HIGH_WATER, f"held in PostgreSQL at position {held}: the queue of group {g}"
                      f" is at its high-water mark ({snap.queue_depth.get(g, 0)}/"
                      f"{snap.high_water})", a.submit_time)  # fmt: skip
    return Reason(DISPATCHING, f"the master is putting it on the queue of group {g}",
                  a.submit_time)  # fmt: skip


def _not_created(t: TaskFacts, latest: Mapping[str, AttemptFacts], snap: Snapshot) -> Reason:
    pending, failed = [], []
    ends = [snap.start_time] if snap.start_time else []
    for u in t.depends_on:
        ua = latest.get(u)
        if ua is None:
            pending.append(f"{u} (not started)")
        elif ua.state not in TASK_TERMINAL:
            pending.append(f"{u} ({ua.state})")
        elif ua.state not in TASK_SUCCESSFUL and ua.state != S.SKIPPED:
            failed.append(f"{u} ({ua.state})")
        if ua is not None and ua.end_time is not None:
            ends.append(ua.end_time)
    since = max(ends) if ends else None
    if pending:
        return Reason(UPSTREAM, f"waits for upstream {_names(pending)}", since)
    if failed:
        return Reason(UPSTREAM_FAILED, f"upstream {_names(failed)} did not succeed; the master"
                      " decides whether it runs", since)  # fmt: skip
    if t.task_group:
        tg = snap.task_groups.get(t.task_group)
        if tg is None:
            return Reason(TASK_GROUP_FULL, f"task group {t.task_group} does not exist", since)
        if tg.used >= tg.capacity:
            holders = [str(i) for i in tg.holders]
            by = f", held by instance(s) {_names(holders)}" if holders else ""
            return Reason(TASK_GROUP_FULL, f"task group {t.task_group} is full ({tg.used}/"
                          f"{tg.capacity}){by}", since)  # fmt: skip
    return Reason(READY, "ready: the master creates its attempt on its next step", since)


def reasons(snap: Snapshot, now: datetime) -> dict[str, Reason]:
    """Task name -> why it waits, for every task neither running nor finished (a running task
    the master runs for its dependencies, DEPENDENT, counts as waiting)."""
    if snap.state in (W.SUCCESS, W.FAILURE, W.STOP):
        return {}
    latest: dict[str, AttemptFacts] = {}
    failures: dict[str, int] = {}
    for a in snap.attempts:
        if a.name not in latest or a.attempt > latest[a.name].attempt:
            latest[a.name] = a
        if a.state == S.FAILURE:
            failures[a.name] = failures.get(a.name, 0) + 1
    wide = _instance_wide(snap)
    out: dict[str, Reason] = {}
    for t in snap.tasks:
        found = latest.get(t.name)
        if found is None:
            out[t.name] = wide or _not_created(t, latest, snap)
            continue
        a, st = found, found.state
        if st == S.RUNNING:
            if t.type == "DEPENDENT":
                out[t.name] = Reason(DEPENDENCY, a.reason or "waiting for its dependencies",
                                     a.start_time)  # fmt: skip
        elif st in (S.SUBMITTED, S.DISPATCHED):
            out[t.name] = wide if wide and wide.code == FAILOVER else _queued(t, a, snap)
        elif st == S.NEED_FAULT_TOLERANCE:
            out[t.name] = Reason(FAILOVER, f"attempt {a.attempt} lost its worker; attempt"
                                 f" {a.attempt + 1} follows", a.end_time)  # fmt: skip
        elif st == S.PAUSE:
            out[t.name] = Reason(PAUSED, "paused before it finished", a.end_time)
        elif st == S.FAILURE and failures.get(t.name, 0) <= t.retries:
            n = failures[t.name]
            delay = retry_delay(t.retry_interval_s, t.retry_backoff, t.retry_max_delay_s, n)
            due = (a.end_time or now) + timedelta(seconds=delay)
            when = "now" if due <= now else f"at {due.isoformat(timespec='seconds')}"
            out[t.name] = Reason(RETRY, f"retry {n} of {t.retries} {when}", a.end_time)
    return out
