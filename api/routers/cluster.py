"""/cluster: masters and workers as registered in ZooKeeper, the cron leader, queue depths."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Depends
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, ClusterOut, Member
from coord.zk import registration_epoch
from core.zk_paths import ZkPaths

log = logging.getLogger(__name__)

router = APIRouter(prefix="/cluster", tags=["cluster"], responses=ERROR_RESPONSES)


def _children(client: KazooClient, path: str) -> list[str]:
    try:
        return sorted(client.get_children(path))
    except NoNodeError:
        return []


def _read(client: KazooClient, path: str) -> tuple[dict[str, Any], int] | None:
    """The znode's JSON object and the member's epoch (from the data; None if it vanished)."""
    try:
        raw, stat = client.get(path)
    except NoNodeError:
        return None
    try:
        data = json.loads(raw.decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        data = {}
    return (data if isinstance(data, dict) else {}), registration_epoch(raw, int(stat.czxid))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def member(member_id: str, data: dict[str, Any], epoch: int, group: str | None = None) -> Member:
    groups = data.get("groups")
    group_list = [str(g) for g in groups] if isinstance(groups, list) else []
    if group and group not in group_list:
        group_list.append(group)
    return Member(
        id=member_id,
        epoch=epoch,
        host=data.get("host"),
        pid=_int(data.get("pid")),
        groups=group_list,
        capacity=_int(data.get("capacity")),
        load=_int(data.get("load")),
        start_time=data.get("start_time"),
        data=data,
    )


def read_masters(client: KazooClient, paths: ZkPaths) -> list[Member]:
    out = []
    for mid in _children(client, paths.masters()):
        got = _read(client, paths.master(mid))
        if got is not None:
            out.append(member(mid, *got))
    return out


def read_workers(client: KazooClient, paths: ZkPaths) -> list[Member]:
    """One entry per worker id, its groups merged over every group it registered under."""
    by_id: dict[str, Member] = {}
    for group in _children(client, paths.workers_root()):
        for wid in _children(client, paths.workers(group)):
            got = _read(client, paths.worker(group, wid))
            if got is None:
                continue
            if wid in by_id:
                if group not in by_id[wid].groups:
                    by_id[wid].groups.append(group)
                continue
            by_id[wid] = member(wid, got[0], got[1], group)
    return [by_id[k] for k in sorted(by_id)]


def queue_depths(client: KazooClient, paths: ZkPaths) -> dict[str, int]:
    out = {}
    for group in _children(client, paths.queue_root()):
        stat = client.exists(paths.queue(group))
        if stat is not None:
            out[group] = int(stat.numChildren)
    return out


def cron_leader(client: KazooClient, paths: ZkPaths) -> str | None:
    """The identifier held by the lowest-sequence contender of the cron election."""
    base = paths.cron_election()
    contenders = _children(client, base)
    if not contenders:
        return None
    first = min(contenders, key=lambda c: c.rsplit("__", 1)[-1][-10:])
    try:
        raw, _ = client.get(f"{base}/{first}")
    except NoNodeError:
        return None
    return raw.decode("utf-8", "replace") or first


@router.get("", response_model=ClusterOut)
def get_cluster(ctx: ApiContext = Depends(get_ctx)) -> ClusterOut:
    """Live membership (ephemeral znodes), the cron leader and the depth of each queue."""
    zk = ctx.require_zk()
    client, paths = zk.client, zk.paths
    stat = client.exists(paths.leases())
    return ClusterOut(
        masters=read_masters(client, paths),
        workers=read_workers(client, paths),
        queues=queue_depths(client, paths),
        leases=int(stat.numChildren) if stat is not None else 0,
        cron_leader=cron_leader(client, paths),
    )
