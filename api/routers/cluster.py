"""/cluster: masters and workers as registered in ZooKeeper (read by coord.membership), the cron
leader, queue depths."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from api.auth_scope import authorize
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, ClusterOut, Member
from coord import membership
from core import waiting
from core.zk_paths import ZkPaths

log = logging.getLogger(__name__)

router = APIRouter(prefix="/cluster", tags=["cluster"], responses=ERROR_RESPONSES)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def member(reg: membership.Registration) -> Member:
    data = reg.data
    return Member(
        id=reg.id,
        epoch=reg.epoch,
        host=data.get("host"),
        pid=_int(data.get("pid")),
        groups=list(reg.groups),
        capacity=_int(data.get("capacity")),
        load=_int(data.get("load")),
        start_time=data.get("start_time"),
        data=data,
    )


def queue_depths(client: KazooClient, paths: ZkPaths) -> dict[str, int]:
    try:
        groups = sorted(client.get_children(paths.queue_root()))
    except NoNodeError:
        return {}
    out = {}
    for group in groups:
        stat = client.exists(paths.queue(group))
        if stat is not None:
            out[group] = int(stat.numChildren)
    return out


@router.get("", response_model=ClusterOut, dependencies=[Depends(authorize("read"))])
def get_cluster(ctx: ApiContext = Depends(get_ctx)) -> ClusterOut:
    """Live membership (ephemeral znodes), the cron leader and the depth of each queue."""
    zk = ctx.require_zk()
    client, paths = zk.client, zk.paths
    stat = client.exists(paths.leases())
    workers = [member(r) for r in membership.workers(zk)]
    queues = queue_depths(client, paths)
    return ClusterOut(
        masters=[member(r) for r in membership.masters(zk)],
        workers=workers,
        queues=queues,
        leases=int(stat.numChildren) if stat is not None else 0,
        cron_leader=membership.cron_leader(client, paths),
        waiting=group_waits(queues, workers, ctx.settings.master.queue_high_water),
    )


def group_waits(queues: dict[str, int], workers: list[Member], high_water: int) -> dict[str, Any]:
    """Groups whose queue has entries that wait for a reason of the whole group."""
    live = {g for w in workers for g in w.groups}
    out: dict[str, Any] = {}
    for g, n in sorted(queues.items()):
        if n and g not in live:
            out[g] = {
                "code": waiting.NO_WORKER,
                "message": f"{n} queued; no live worker in group {g}",
            }
        elif n >= high_water:
            out[g] = {"code": waiting.HIGH_WATER,
                      "message": f"the queue is at its high-water mark ({n}/{high_water}); more"
                      " attempts wait in PostgreSQL"}  # fmt: skip
    return out
