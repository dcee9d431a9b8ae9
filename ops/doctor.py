"""The consistency doctor: reads a snapshot of PostgreSQL (the truth) and ZooKeeper
(coordination), diagnoses it (``ops.doctor_rules``, pure), repairs what is safe to fix and
reports the findings; ``dagkeeper doctor`` runs it."""

from __future__ import annotations

import json
import logging

from kazoo.exceptions import NoNodeError, NotEmptyError
from sqlalchemy import text

from coord import membership
from coord.queue import QueueEntry, QueueKey, TaskQueue, parse_key
from coord.zk import ZkClient
from core import task_types
from core.states import TASK_IN_FLIGHT, WORKFLOW_TERMINAL, TaskState, WorkflowState
from db import attempts as q_attempts
from db.engine import SessionFactory
from db.notify import notify_owner
from db.serial import ACTIVE as SERIAL_ACTIVE
from ops.doctor_rules import STOPPING, WAITING, AttemptFact, Finding, Snapshot, diagnose

log = logging.getLogger(__name__)

__all__ = ["Finding", "Snapshot", "diagnose", "exit_code", "is_clean", "report", "run"]


def is_clean(findings: list[Finding]) -> bool:
    """No finding but harmless ones."""
    return all(f.harmless for f in findings)


def exit_code(findings: list[Finding], repaired: bool) -> int:
    """``dagkeeper doctor``: 0 when clean (or everything found was repaired), else 1."""
    if is_clean(findings) or (repaired and all(f.repairable for f in findings)):
        return 0
    return 1


def _read_signals(zk: ZkClient) -> dict[str, list[str]]:
    out = {}
    for worker_id in zk.children(zk.paths.signals_root()):
        try:
            out[worker_id] = zk.children(zk.paths.signals(worker_id))
        except ValueError:  # a name no worker id can have
            continue
    return out


def _read_members(zk: ZkClient) -> tuple[set[tuple[str, int]], set[str]]:
    """(master id, epoch) of the registered masters and the ids of the registered workers."""
    return membership.live_masters(zk), membership.worker_ids(zk)


# owned instances that are not over and not waiting to be claimed
_UNFINISHED = sorted({s.value for s in WORKFLOW_TERMINAL} | {WorkflowState.SUBMITTED.value})


def take_snapshot(sf: SessionFactory, zk: ZkClient) -> Snapshot:
    # Signal inboxes before registrations: a worker creates its inbox after registering, so an
    # inbox seen here whose worker is not registered below belongs to a dead worker.
    signals = _read_signals(zk)
    live, workers = _read_members(zk)
    queue = TaskQueue(zk.client, zk.paths)
    # ZooKeeper first, then PostgreSQL: an attempt that moves in between looks older, never lost.
    entries = {g: queue.entries(g) for g in queue.groups()}
    leases = queue.lease_ids()
    with sf.begin() as s:
        inst = s.execute(
            text(
                "SELECT id, owner, owner_epoch, state FROM workflow_instance WHERE (owner IS NOT"
                " NULL OR state = ANY(:stopping)) AND NOT state = ANY(:unfinished)"
            ),
            {"stopping": list(STOPPING), "unfinished": _UNFINISHED},
        ).all()
        att = s.execute(
            text(
                "SELECT t.id, t.state, t.worker_group, t.workflow_instance_id, w.priority,"
                " t.priority, t.lease_token FROM task_instance t JOIN workflow_instance w"
                " ON w.id = t.workflow_instance_id"
                " WHERE t.state = ANY(:in_flight)"
                # master-run attempts (SUB_PROCESS, DEPENDENT, ...) hold no worker and no lease
                " AND NOT (t.state = :running AND t.worker_id IS NULL"
                " AND t.type = ANY(:logical))"
                # queued FANOUT sub-executions wait on their host's queue; their driver expires them
                " AND NOT (t.parent_id IS NOT NULL AND t.state <> :running)"
            ),
            {
                "in_flight": sorted(st.value for st in TASK_IN_FLIGHT),
                "running": TaskState.RUNNING.value,
                "logical": task_types.master_run_types(),
            },
        ).all()
        stalled = s.execute(
            text(
                "SELECT w.id FROM workflow_instance w WHERE w.state = :serial_wait"
                " AND NOT EXISTS (SELECT 1 FROM workflow_instance a"
                " WHERE a.workflow_id = w.workflow_id AND a.state = ANY(:active))"
            ),
            {"active": list(SERIAL_ACTIVE), "serial_wait": WorkflowState.SERIAL_WAIT.value},
        ).all()
    return Snapshot(
        live_masters=live,
        active_instances=[(int(r[0]), r[1], r[2]) for r in inst if r[1] is not None],
        active_attempts={
            int(r[0]): AttemptFact(r[1], r[2], int(r[3]), int(r[4]), int(r[5]), r[6]) for r in att
        },
        queue=entries,
        leases=leases,
        live_workers=workers,
        signals=signals,
        serial_stalled=[int(r[0]) for r in stalled],
        stopping=[(int(r[0]), r[1], r[2]) for r in inst if r[3] in STOPPING],
    )


def repair(sf: SessionFactory, zk: ZkClient, snap: Snapshot, findings: list[Finding]) -> int:
    """Fix what is safe: drop stray queue entries, re-queue lost DISPATCHED attempts, hand
    RUNNING attempts without a lease to their master for fault tolerance (the same fenced
    write as the masters' failover: on the state and lease token seen), delete signals to (and
    empty inboxes of) workers that are not registered."""
    queue = TaskQueue(zk.client, zk.paths)
    fixed = 0
    for f in findings:
        if f.kind == "queue_entry_without_row":
            for group, keys in snap.queue.items():
                for k in keys:
                    try:
                        tid = parse_key(k).task_instance_id
                    except ValueError:
                        tid = -1
                    a = snap.active_attempts.get(tid)
                    if (a is None or a.state not in WAITING) and queue.remove(group, k):
                        fixed += 1
        elif f.kind == "dispatched_without_entry":
            entries = []
            for tid in f.ids:
                a = snap.active_attempts[tid]
                key = QueueKey(a.workflow_priority, a.instance_id, a.task_priority, tid)
                entries.append(QueueEntry(a.worker_group, key))
            fixed += queue.push(entries)
        elif f.kind == "running_without_lease":
            with sf.begin() as s:
                for tid in f.ids:
                    if zk.client.exists(zk.paths.lease(tid)):
                        continue
                    a = snap.active_attempts[tid]
                    row = q_attempts.InFlightRow(
                        tid, a.instance_id, a.state, a.worker_group, a.lease_token, None
                    )
                    if q_attempts.mark_need_fault_tolerance(s, row):
                        notify_owner(s, a.instance_id, tid)
                        fixed += 1
        elif f.kind in ("signal_for_unregistered_worker", "stale_signal_inbox"):
            fixed += _remove_signals(zk, snap, requests=f.kind == "signal_for_unregistered_worker")
    return fixed


def _remove_signals(zk: ZkClient, snap: Snapshot, requests: bool) -> int:
    """Delete the requests to unregistered workers (``requests``), or their empty inboxes;
    each worker's registration is checked again right before (it may have come back)."""
    _, workers = _read_members(zk)
    fixed = 0
    for worker_id, names in sorted(snap.signals.items()):
        if worker_id in snap.live_workers or worker_id in workers or bool(names) != requests:
            continue
        if requests:
            for name in names:
                try:
                    zk.client.delete(f"{zk.paths.signals(worker_id)}/{name}")
                    fixed += 1
                except NoNodeError:
                    pass
            continue
        try:
            # an inbox that got a request meanwhile is not empty any more: NotEmptyError
            zk.client.delete(zk.paths.signals(worker_id))
            fixed += 1
        except (NoNodeError, NotEmptyError):
            pass
    return fixed


def run(sf: SessionFactory, zk: ZkClient, do_repair: bool) -> tuple[list[Finding], int]:
    """Take a snapshot of both stores, diagnose it and (``do_repair``) fix what is safe."""
    snap = take_snapshot(sf, zk)
    findings = diagnose(snap)
    fixed = repair(sf, zk, snap, findings) if do_repair and findings else 0
    return findings, fixed


def report(findings: list[Finding], fixed: int, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "clean": is_clean(findings),
                "fixed": fixed,
                "findings": [f.__dict__ for f in findings],
            },
            indent=2,
        )
    if is_clean(findings):
        lines = ["doctor: PostgreSQL and ZooKeeper agree; the cluster is clean"]
    else:
        lines = [f"doctor: {sum(not f.harmless for f in findings)} finding(s)"]
    for f in findings:
        tag = "repairable" if f.repairable else "report only"
        tag = f"harmless, {tag}" if f.harmless else tag
        ids = f" ids={f.ids[:10]}" if f.ids else ""
        lines.append(f"  - [{f.kind}] {f.message} ({tag}){ids}")
    if fixed:
        lines.append(f"doctor: repaired {fixed} item(s)")
    return "\n".join(lines)
