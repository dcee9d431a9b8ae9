"""Failover: adopt the instances of dead masters (under a ZooKeeper lock, by compare-and-set
from the dead epoch to ours) and re-offer attempts whose worker lease is gone."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from coord import membership
from coord.queue import TaskQueue, parse_key
from coord.zk import ZkClient
from core import metrics
from core.lost import lost_reason
from core.states import TaskState
from db import alert_outbox
from db import attempts as q_attempts
from db import instances as q_instances
from db.engine import SessionFactory

log = logging.getLogger(__name__)


def orphans(
    owners: list[tuple[int, str | None, int | None]], live: set[tuple[str, int]]
) -> list[tuple[int, str | None, int | None]]:
    """Pure: the instances whose (owner, epoch) is not a live master registration."""
    return [o for o in owners if (o[1], o[2]) not in live]


def adopt_orphans(
    sf: SessionFactory, zk: ZkClient, master_id: str, epoch: int, lock_timeout: float
) -> list[int]:
    """Under the failover lock, take over every instance whose owner is gone."""
    started = time.monotonic()
    lock = zk.client.Lock(zk.paths.lock("failover"), f"{master_id}@{epoch}")
    if not lock.acquire(timeout=lock_timeout):
        log.info("master %s@%d: failover lock busy; will retry", master_id, epoch)
        return []
    try:
        live = membership.live_masters(zk)
        if (master_id, epoch) not in live:
            log.warning("master %s@%d: not registered; no adoption", master_id, epoch)
            return []
        with sf.begin() as s:
            candidates = orphans(q_instances.active_owners(s), live)
        adopted: list[int] = []
        by_dead: dict[str, list[int]] = {}
        handed: dict[str, list[int]] = {}  # released by a graceful stop (epoch NULL): no alert
        for iid, owner, old_epoch in candidates:
            with sf.begin() as s:
                if q_instances.adopt(s, iid, owner, old_epoch, master_id, epoch):
                    adopted.append(iid)
                    if old_epoch is None:
                        handed.setdefault(str(owner), []).append(iid)
                    else:
                        by_dead.setdefault(f"{owner}@{old_epoch}", []).append(iid)
        for gone, ids in handed.items():
            log.info(
                "master %s@%d: took over %d instance(s) handed over by %s: %s",
                master_id,
                epoch,
                len(ids),
                gone,
                ids[:20],
            )
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
        metrics.failover("master", len(adopted) - sum(map(len, handed.values())))
        if adopted:
            metrics.ADOPTION.observe(time.monotonic() - started)
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
    """In-flight attempts of ``instance_ids`` that lost their worker (``core.lost``) become
    NEED_FAULT_TOLERANCE; return the instances to step. The cheap facts come first: the queue
    and the lease are read again only for a DISPATCHED attempt past its deadline."""
    with sf.begin() as s:
        rows = q_attempts.in_flight_of(s, instance_ids)
    if not rows:
        return set()
    leases = queue.lease_ids()
    now = datetime.now(UTC)
    queued: dict[str, set[int]] = {}
    lost: list[tuple[q_attempts.InFlightRow, str]] = []
    for r in rows:
        age = (now - r.dispatch_time).total_seconds() if r.dispatch_time else None
        sub = r.parent_id is not None
        why = lost_reason(r.state, r.id in leases, False, sub, age, dispatch_deadline_s)
        if why is None:
            continue
        if r.state == TaskState.DISPATCHED:
            if r.worker_group not in queued:
                queued[r.worker_group] = {
                    parse_key(k).task_instance_id for k in queue.entries(r.worker_group)
                }
            # re-check the lease: a claim may have happened since we listed them
            leased = zk.client.exists(zk.paths.lease(r.id)) is not None
            why = lost_reason(r.state, leased, r.id in queued[r.worker_group], sub, age,
                              dispatch_deadline_s)  # fmt: skip
            if why is None:
                continue
        lost.append((r, why))
    touched, moved = set(), []
    with sf.begin() as s:
        for r, why in lost:
            if q_attempts.mark_need_fault_tolerance(s, r):
                touched.add(r.workflow_instance_id)
                moved.append(r.id)
                log.warning("%s: task instance %d: %s; re-offering", actor, r.id, why)
        alert_outbox.add_worker_failover(s, moved, actor)  # one alert per dead worker
    metrics.failover("worker", len(moved))
    return touched
