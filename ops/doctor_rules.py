"""The doctor's rules, pure: a snapshot of PostgreSQL (the truth) and ZooKeeper (coordination)
in, the findings out — each with its kind, ids, whether ``--repair`` may fix it and whether it is
harmless (a left-over that disturbs nothing: the cluster is still clean)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from coord.queue import parse_key
from core.lost import lost_reason
from core.states import TaskState, WorkflowState

log = logging.getLogger(__name__)

S = TaskState
# Waiting for their master to act on a stop or pause request.
STOPPING = (WorkflowState.READY_STOP.value, WorkflowState.READY_PAUSE.value)
# Attempts that wait for a worker: a queue entry of one is expected.
WAITING = (S.SUBMITTED.value, S.DISPATCHED.value)


@dataclass(frozen=True)
class AttemptFact:
    """What the doctor knows of an in-flight attempt from PostgreSQL."""

    state: str
    worker_group: str
    instance_id: int
    workflow_priority: int
    task_priority: int
    lease_token: int | None = None


@dataclass(frozen=True)
class Snapshot:
    live_masters: set[tuple[str, int]]
    # (instance id, owner, epoch) of owned non-terminal, non-SUBMITTED instances
    active_instances: list[tuple[int, str | None, int | None]]
    # attempt id -> its state, group, instance, priorities and lease token
    active_attempts: dict[int, AttemptFact]
    queue: dict[str, list[str]]
    leases: set[int]
    # ids of registered workers, and the signal inbox of every worker id: its request names
    live_workers: set[str] = field(default_factory=set)
    signals: dict[str, list[str]] = field(default_factory=dict)
    # SERIAL_WAIT instances of workflows that have no active run (nothing will wake them)
    serial_stalled: list[int] = field(default_factory=list)
    # (instance id, owner, epoch) of READY_STOP / READY_PAUSE instances
    stopping: list[tuple[int, str | None, int | None]] = field(default_factory=list)


@dataclass
class Finding:
    kind: str
    message: str
    ids: list[int] = field(default_factory=list)
    repairable: bool = False
    harmless: bool = False  # a left-over that disturbs nothing: the cluster is still clean


def diagnose(snap: Snapshot) -> list[Finding]:
    """Pure: every inconsistency between the two stores."""
    out: list[Finding] = []
    stopping_ids = {i for i, _, _ in snap.stopping}
    orphaned = [
        i
        for i, o, e in snap.active_instances
        if (o, e) not in snap.live_masters and i not in stopping_ids
    ]
    if orphaned:
        out.append(
            Finding(
                "instance_without_owner",
                f"{len(orphaned)} running instance(s) whose owning master is gone"
                " (a live master adopts them)",
                orphaned,
            )
        )
    queued_ids: dict[int, tuple[str, str]] = {}
    stray: list[tuple[str, str]] = []
    for group, keys in snap.queue.items():
        for k in keys:
            try:
                tid = parse_key(k).task_instance_id
            except ValueError:
                stray.append((group, k))
                continue
            a = snap.active_attempts.get(tid)
            if a is None or a.state not in WAITING:
                stray.append((group, k))
            else:
                queued_ids[tid] = (group, k)
    if stray:
        out.append(
            Finding(
                "queue_entry_without_row",
                f"{len(stray)} queue entr(y/ies) without a waiting attempt: "
                + ", ".join(f"{g}/{k}" for g, k in stray[:5]),
                [],
                repairable=True,
            )
        )
    # the one lost-attempt decision (core.lost), as the masters' failover takes it
    lost = {
        t: a.state
        for t, a in snap.active_attempts.items()
        if lost_reason(a.state, t in snap.leases, t in queued_ids) is not None
    }
    running_no_lease = sorted(t for t, st in lost.items() if st == S.RUNNING)
    if running_no_lease:
        out.append(
            Finding(
                "running_without_lease",
                f"{len(running_no_lease)} attempt(s) RUNNING without a lease",
                running_no_lease,
                repairable=True,
            )
        )
    dispatched_lost = sorted(t for t, st in lost.items() if st == S.DISPATCHED)
    if dispatched_lost:
        out.append(
            Finding(
                "dispatched_without_entry",
                f"{len(dispatched_lost)} attempt(s) DISPATCHED with neither queue entry nor lease",
                dispatched_lost,
                repairable=True,
            )
        )
    out += _diagnose_instances(snap)
    out += _diagnose_signals(snap)
    return out


def _diagnose_instances(snap: Snapshot) -> list[Finding]:
    """Pure: runs that nothing drives: stop/pause requests whose owner is gone, serial runs
    waiting behind nothing."""
    out = []
    unowned = sorted(i for i, o, e in snap.stopping if (o, e) not in snap.live_masters)
    if unowned:
        out.append(
            Finding(
                "stop_or_pause_without_owner",
                f"{len(unowned)} READY_STOP/READY_PAUSE instance(s) whose owning master is gone"
                " (a live master adopts them and completes the request)",
                unowned,
            )
        )
    if snap.serial_stalled:
        out.append(
            Finding(
                "serial_wait_without_active",
                f"{len(snap.serial_stalled)} SERIAL_WAIT instance(s) of workflows with no active"
                " run (a master promotes the next one when it reconciles)",
                sorted(snap.serial_stalled),
            )
        )
    return out


def _diagnose_signals(snap: Snapshot) -> list[Finding]:
    """Pure: kill requests to workers that are not registered (nobody will ever act on them),
    and empty inboxes left by dead workers (harmless)."""
    out = []
    stale = {w: names for w, names in snap.signals.items() if w not in snap.live_workers}
    requests = {w: names for w, names in stale.items() if names}
    if requests:
        ids = sorted({int(n) for names in requests.values() for n in names if n.isdigit()})
        out.append(
            Finding(
                "signal_for_unregistered_worker",
                f"{sum(len(v) for v in requests.values())} signal(s) to worker(s) that are not"
                f" registered: {', '.join(sorted(requests)[:5])}",
                ids,
                repairable=True,
            )
        )
    empty = sorted(w for w, names in stale.items() if not names)
    if empty:
        out.append(
            Finding(
                "stale_signal_inbox",
                f"{len(empty)} empty signal inbox(es) of worker(s) that are not registered: "
                + ", ".join(empty[:5]),
                repairable=True,
                harmless=True,
            )
        )
    return out
