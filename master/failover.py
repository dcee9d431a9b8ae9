"""Failover: adopt the instances of dead masters (under a ZooKeeper lock, by compare-and-set
from the dead epoch to ours) and re-offer attempts whose worker lease is gone."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from coord.queue import TaskQueue, parse_key
from coord.zk import ZkClient
from db import attempts as q_attempts
from db import instances as q_instances
from db.engine import SessionFactory

log = logging.getLogger(__name__)


def live_masters(zk: ZkClient) -> set[tuple[str, int]]:
    """(master id, epoch) of every registered master; the epoch is the one in the znode's data
    (from PostgreSQL), never its czxid, which a wiped ZooKeeper hands out again."""
    out = set()
    for child in zk.children(zk.paths.masters()):
        epoch = zk.member_epoch(zk.paths.master(child))
        if epoch is not None:
            out.add((child, epoch))
    return out


def orphans(
    owners: list[tuple[int, str | None, int | None]], live: set[tuple[str, int]]
) -> list[tuple[int, str | None, int | None]]:
    """Pure: the instances whose (owner, epoch) is not a live master registration."""
    return [o for o in owners if (o[1], o[2]) not in live]


def adopt_orphans(
    sf: SessionFactory, zk: ZkClient, master_id: str, epoch: int, lock_timeout: float
) -> list[int]:
    """Under the failover lock, take over every instance whose owner is gone."""
    lock = zk.client.Lock(zk.paths.lock("failover"), f"{master_id}@{epoch}")
    if not lock.acquire(timeout=lock_timeout):
        log.info("master %s@%d: failover lock busy; will retry", master_id, epoch)
        return []
    try:
        live = live_masters(zk)
        if (master_id, epoch) not in live:
            log.warning("master %s@%d: not registered; no adoption", master_id, epoch)
            return []
        with sf.begin() as s:
            candidates = orphans(q_instances.active_owners(s), live)
        adopted: list[int] = []
        by_dead: dict[str, list[int]] = {}
        for iid, owner, old_epoch in candidates:
            with sf.begin() as s:
                if q_instances.adopt(s, iid, owner, old_epoch, master_id, epoch):
                    adopted.append(iid)
                    by_dead.setdefault(f"{owner}@{old_epoch}", []).append(iid)
        if by_dead:
            with sf.begin() as s:
                for dead, ids in by_dead.items():
                    q_instances.add_alert(
                        s,
                        "MASTER_FAILOVER",
                        f"master {dead} is gone; {len(ids)} instance(s)"
                        f" adopted by {master_id}@{epoch}",
                        {
                            "dead_master": dead,
                            "adopted_by": f"{master_id}@{epoch}",
                            "instances": ids,
                        },
                    )
            log.warning(
                "master %s@%d: adopted %d instance(s) of %s",
                master_id,
                epoch,
                len(adopted),
                sorted(by_dead),
            )
        return adopted
    finally:
        lock.release()


def reoffer_lost_attempts(
    sf: SessionFactory,
    zk: ZkClient,
    queue: TaskQueue,
    instance_ids: list[int],
    dispatch_deadline_s: float,
    actor: str,
) -> set[int]:
    """Attempts RUNNING without a lease, or DISPATCHED long ago with neither queue entry nor
    lease, become NEED_FAULT_TOLERANCE; return the instances to step."""
    with sf.begin() as s:
        rows = q_attempts.in_flight_of(s, instance_ids)
    if not rows:
        return set()
    leases = queue.lease_ids()
    now = datetime.now(UTC)
    queued: dict[str, set[int]] = {}
    lost = []
    for r in rows:
        if r.id in leases:
            continue
        if r.state == "DISPATCHED":
            if r.parent_id is not None:
                continue  # a FANOUT sub-execution on a host queue: its driver times it out
            if r.dispatch_time and now - r.dispatch_time < timedelta(seconds=dispatch_deadline_s):
                continue
            if r.worker_group not in queued:
                queued[r.worker_group] = {
                    parse_key(k).task_instance_id for k in queue.entries(r.worker_group)
                }
            if r.id in queued[r.worker_group]:
                continue
            # Re-check the lease: a claim may have happened since we listed them.
            if zk.client.exists(zk.paths.lease(r.id)):
                continue
        lost.append(r)
    touched = set()
    with sf.begin() as s:
        for r in lost:
            if q_attempts.mark_need_fault_tolerance(s, r):
                touched.add(r.workflow_instance_id)
                log.warning(
                    "%s: task instance %d (%s) lost its lease; re-offering", actor, r.id, r.state
                )
    return touched
