"""The consistency doctor: compares PostgreSQL (the truth) with ZooKeeper (coordination) and
reports drift; ``repair`` fixes what is safe to fix. The comparison itself is a pure function."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from kazoo.exceptions import NoNodeError
from sqlalchemy import text

from common.db.engine import SessionFactory
from common.task_queue import QueueEntry, QueueKey, TaskQueue, parse_key
from common.zk import ZkClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    live_masters: set[tuple[str, int]]
    # (instance id, owner, epoch) of non-terminal, non-SUBMITTED instances
    active_instances: list[tuple[int, str | None, int | None]]
    # attempt id -> (state, worker group, workflow instance id, wf priority, task priority)
    active_attempts: dict[int, tuple[str, str, int, int, int]]
    queue: dict[str, list[str]]
    leases: set[int]


@dataclass
class Finding:
    kind: str
    message: str
    ids: list[int] = field(default_factory=list)
    repairable: bool = False


def diagnose(snap: Snapshot) -> list[Finding]:
    """Pure: every inconsistency between the two stores."""
    out: list[Finding] = []
    orphaned = [i for i, o, e in snap.active_instances if (o, e) not in snap.live_masters]
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
    return out


def take_snapshot(sf: SessionFactory, zk: ZkClient) -> Snapshot:
    live = set()
    for child in zk.children(zk.paths.masters()):
        try:
            _, stat = zk.client.get(zk.paths.master(child))
            live.add((child, int(stat.czxid)))
        except NoNodeError:
            continue
    queue = TaskQueue(zk.client, zk.paths)
    # ZooKeeper first, then PostgreSQL: an attempt that moves in between looks older, never lost.
    entries = {g: queue.entries(g) for g in queue.groups()}
    leases = queue.lease_ids()
    with sf.begin() as s:
        inst = s.execute(
            text(
                "SELECT id, owner, owner_epoch FROM workflow_instance WHERE owner IS NOT NULL"
                " AND state NOT IN ('SUCCESS','FAILURE','STOP','SUBMITTED')"
            )
        ).all()
        att = s.execute(
            text(
                "SELECT t.id, t.state, t.worker_group, t.workflow_instance_id, w.priority,"
                " t.priority FROM task_instance t JOIN workflow_instance w"
                " ON w.id = t.workflow_instance_id"
                " WHERE t.state IN ('SUBMITTED','DISPATCHED','RUNNING')"
            )
        ).all()
    return Snapshot(
        live_masters=live,
        active_instances=[(int(r[0]), r[1], r[2]) for r in inst],
        active_attempts={int(r[0]): (r[1], r[2], int(r[3]), int(r[4]), int(r[5])) for r in att},
        queue=entries,
        leases=leases,
    )


def repair(sf: SessionFactory, zk: ZkClient, snap: Snapshot, findings: list[Finding]) -> int:
    """Fix what is safe: drop stray queue entries, re-queue lost DISPATCHED attempts, hand
    RUNNING attempts without a lease to their master for fault tolerance."""
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
                            " WHERE id = :id AND state = 'RUNNING' RETURNING workflow_instance_id"
                        ),
                        {"id": tid},
                    ).first()
                    if row is not None:
                        s.execute(
                            text("SELECT pg_notify('dagkeeper_task', :p)"), {"p": str(row[0])}
                        )
                        fixed += 1
    return fixed


def run(sf: SessionFactory, zk: ZkClient, do_repair: bool) -> tuple[list[Finding], int]:
    snap = take_snapshot(sf, zk)
    findings = diagnose(snap)
    fixed = repair(sf, zk, snap, findings) if do_repair and findings else 0
    return findings, fixed


def report(findings: list[Finding], fixed: int, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {"clean": not findings, "fixed": fixed, "findings": [f.__dict__ for f in findings]},
            indent=2,
        )
    if not findings:
        return "doctor: PostgreSQL and ZooKeeper agree; the cluster is clean"
    lines = [f"doctor: {len(findings)} finding(s)"]
    for f in findings:
        tag = "repairable" if f.repairable else "report only"
        ids = f" ids={f.ids[:10]}" if f.ids else ""
        lines.append(f"  - [{f.kind}] {f.message} ({tag}){ids}")
    if fixed:
        lines.append(f"doctor: repaired {fixed} item(s)")
    return "\n".join(lines)
