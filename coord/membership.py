"""The one reader of live membership: the masters and workers registered in ZooKeeper (ephemeral
znodes), each with the epoch its registration carries, its data and (workers) every group it
serves, and the cron leader. Masters, the doctor and the API all read membership through here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from coord.zk import ZkClient, registration_epoch
from core.zk_paths import ZkPaths


@dataclass
class Registration:
    id: str
    epoch: int
    data: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # workers: every group registered under

    @property
    def host(self) -> str | None:
        host = self.data.get("host")
        return host if isinstance(host, str) and host else None


def _read(zk: ZkClient, member_id: str, path: str) -> Registration | None:
    """A registration's data and epoch (from the data, never the czxid); None once it is gone."""
    try:
        raw, stat = zk.client.get(path)
    except NoNodeError:
        return None
    try:
        data = json.loads(raw.decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        data = {}
    data = data if isinstance(data, dict) else {}
    return Registration(member_id, registration_epoch(raw, int(stat.czxid)), data)


def masters(zk: ZkClient) -> list[Registration]:
    """Every registered master, by id."""
    paths = zk.paths
    found = (_read(zk, mid, paths.master(mid)) for mid in sorted(zk.children(paths.masters())))
    return [r for r in found if r is not None]


def live_masters(zk: ZkClient) -> set[tuple[str, int]]:
    """(master id, epoch) of every registered master: what ownership is checked against."""
    return {(r.id, r.epoch) for r in masters(zk)}


def workers(zk: ZkClient, group: str | None = None) -> list[Registration]:
    """Every registered worker (of ``group``, or of every group), one entry per worker id with
    the groups it registered under merged, by id."""
    paths = zk.paths
    groups = [group] if group is not None else sorted(zk.children(paths.workers_root()))
    by_id: dict[str, Registration] = {}
    for g in groups:
        for wid in sorted(zk.children(paths.workers(g))):
            if wid in by_id:
                if g not in by_id[wid].groups:
                    by_id[wid].groups.append(g)
                continue
            reg = _read(zk, wid, paths.worker(g, wid))
            if reg is None:
                continue
            listed = reg.data.get("groups")
            reg.groups = [str(x) for x in listed] if isinstance(listed, list) else []
            if g not in reg.groups:
                reg.groups.append(g)
            by_id[wid] = reg
    return [by_id[k] for k in sorted(by_id)]


def worker_ids(zk: ZkClient) -> set[str]:
    """Ids of the registered workers (of any group), without reading their data."""
    paths = zk.paths
    out: set[str] = set()
    for g in zk.children(paths.workers_root()):
        out.update(zk.children(paths.workers(g)))
    return out


def live_hosts(zk: ZkClient, group: str | None) -> list[str]:
    """Host names of the live workers of ``group`` (of every group when None)."""
    return sorted({r.host for r in workers(zk, group) if r.host})


def cron_leader(client: KazooClient, paths: ZkPaths) -> str | None:
    """The identifier held by the lowest-sequence contender of the cron election."""
    base = paths.cron_election()
    try:
        contenders = client.get_children(base)
    except NoNodeError:
        return None
    if not contenders:
        return None
    first = min(contenders, key=lambda c: c.rsplit("__", 1)[-1][-10:])
    try:
        raw, _ = client.get(f"{base}/{first}")
    except NoNodeError:
        return None
    return raw.decode("utf-8", "replace") or first
