"""The consistency doctor: compares PostgreSQL (the truth) with ZooKeeper (coordination) and
reports drift; ``repair`` fixes what is safe to fix. The comparison itself is a pure function.
Harmless findings (left-overs that disturb nothing) are listed but leave the cluster clean."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from kazoo.exceptions import NoNodeError, NotEmptyError
from sqlalchemy import text

from coord.queue import QueueEntry, QueueKey, TaskQueue, parse_key
from coord.zk import ZkClient, registration_epoch
from core import task_types
from db.engine import SessionFactory
from db.serial import ACTIVE as SERIAL_ACTIVE

log = logging.getLogger(__name__)


# Waiting for their master to act on a stop or pause request.
STOPPING = ("READY_STOP", "READY_PAUSE")


@dataclass(frozen=True)
class Snapshot:
    live_masters: set[tuple[str, int]]
    # (instance id, owner, epoch) of owned non-terminal, non-SUBMITTED instances
    active_instances: list[tuple[int, str | None, int | None]]
    # attempt id -> (state, worker group, workflow instance id, wf priority, task priority)
    active_attempts: dict[int, tuple[str, str, int, int, int]]
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


def is_clean(findings: list[Finding]) -> bool:
    """No finding but harmless ones."""
    return all(f.harmless for f in findings)


def exit_code(findings: list[Finding], repaired: bool) -> int:
    """``dagkeeper doctor``: 0 when clean (or everything found was repaired), else 1."""
    if is_clean(findings) or (repaired and all(f.repairable for f in findings)):
        return 0
    return 1


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
            if a is None or a[0] not in ("SUBMITTED", "DISPATCHED"):
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
    running_no_lease = sorted(
        t for t, a in snap.active_attempts.items() if a[0] == "RUNNING" and t not in snap.leases
    )
    if running_no_lease:
        out.append(
            Finding(
                "running_without_lease",
                f"{len(running_no_lease)} attempt(s) RUNNING without a lease",
                running_no_lease,
                repairable=True,
            )
        )
    dispatched_lost = sorted(
        t
        for t, a in snap.active_attempts.items()
        if a[0] == "DISPATCHED" and t not in queued_ids and t not in snap.leases
    )
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


def _read_signals(zk: ZkClient) -> dict[str, list[str]]:
    out = {}
    for worker_id in zk.children(zk.paths.signals_root()):
        try:
            out[worker_id] = zk.children(zk.paths.signals(worker_id))
        except ValueError:  # a name no worker id can have
            continue
    return out


def _read_members(zk: ZkClient) -> tuple[set[tuple[str, int]], set[str]]:
    """(master id, epoch) of the registered masters (the epoch from the znode's data) and the
    ids of the registered workers."""
    masters = set()
    for child in zk.children(zk.paths.masters()):
        try:
            raw, stat = zk.client.get(zk.paths.master(child))
        except NoNodeError:
            continue
        masters.add((child, registration_epoch(raw, int(stat.czxid))))
    workers = set()
    root = zk.paths.workers_root()
    for group in zk.children(root):
        workers.update(zk.children(f"{root}/{group}"))
    return masters, workers


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
                " NULL OR state = ANY(:stopping))"
                " AND state NOT IN ('SUCCESS','FAILURE','STOP','SUBMITTED')"
            ),
            {"stopping": list(STOPPING)},
        ).all()
        att = s.execute(
            text(
                "SELECT t.id, t.state, t.worker_group, t.workflow_instance_id, w.priority,"
                " t.priority FROM task_instance t JOIN workflow_instance w"
                " ON w.id = t.workflow_instance_id"
                " WHERE t.state IN ('SUBMITTED','DISPATCHED','RUNNING')"
                # master-run attempts (SUB_PROCESS, DEPENDENT, ...) hold no worker and no lease
                " AND NOT (t.state = 'RUNNING' AND t.worker_id IS NULL"
                " AND t.type = ANY(:logical))"
                # queued FANOUT sub-executions wait on their host's queue; their driver expires them
                " AND NOT (t.parent_id IS NOT NULL AND t.state <> 'RUNNING')"
            ),
            {"logical": task_types.master_run_types()},
        ).all()
        stalled = s.execute(
            text(
                "SELECT w.id FROM workflow_instance w WHERE w.state = 'SERIAL_WAIT'"
                " AND NOT EXISTS (SELECT 1 FROM workflow_instance a"
                " WHERE a.workflow_id = w.workflow_id AND a.state = ANY(:active))"
            ),
            {"active": list(SERIAL_ACTIVE)},
        ).all()
    return Snapshot(
        live_masters=live,
        active_instances=[(int(r[0]), r[1], r[2]) for r in inst if r[1] is not None],
        active_attempts={int(r[0]): (r[1], r[2], int(r[3]), int(r[4]), int(r[5])) for r in att},
        queue=entries,
        leases=leases,
        live_workers=workers,
        signals=signals,
        serial_stalled=[int(r[0]) for r in stalled],
        stopping=[(int(r[0]), r[1], r[2]) for r in inst if r[3] in STOPPING],
    )


def repair(sf: SessionFactory, zk: ZkClient, snap: Snapshot, findings: list[Finding]) -> int:
    """Fix what is safe: drop stray queue entries, re-queue lost DISPATCHED attempts, hand
    RUNNING attempts without a lease to their master for fault tolerance, delete signals to
    (and empty inboxes of) workers that are not registered."""
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
                    if (a is None or a[0] not in ("SUBMITTED", "DISPATCHED")) and queue.remove(
                        group, k
                    ):
                        fixed += 1
        elif f.kind == "dispatched_without_entry":
            entries = []
            for tid in f.ids:
                _, group, wfi, wpri, tpri = snap.active_attempts[tid]
                entries.append(QueueEntry(group, QueueKey(wpri, wfi, tpri, tid)))
            fixed += queue.push(entries)
        elif f.kind == "running_without_lease":
            with sf.begin() as s:
                for tid in f.ids:
                    if zk.client.exists(zk.paths.lease(tid)):
                        continue
                    row = s.execute(
                        text(
                            "UPDATE task_instance SET state = 'NEED_FAULT_TOLERANCE', end_time = now()"
                            " WHERE id = :id AND state = 'RUNNING'"
                            " AND NOT (worker_id IS NULL AND type = ANY(:logical))"
                            " RETURNING workflow_instance_id"
                        ),
                        {"id": tid, "logical": task_types.master_run_types()},
                    ).first()
                    if row is not None:
                        s.execute(
                            text("SELECT pg_notify('dagkeeper_task', :p)"), {"p": str(row[0])}
                        )
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
