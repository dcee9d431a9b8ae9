"""A real master and worker (in-process threads) and the API (TestClient) on real PostgreSQL and
ZooKeeper: the diamond a -> b, a -> c, (b, c) -> d runs in dependency order, and the znode layout
(members, queue keys, leases) is what the contract documents."""

from __future__ import annotations

import json
import os
import re
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from support import Cluster, instance, run, wait_terminal

from coord.queue import QueueKey, parse_key
from core.settings import Settings
from ops.localserver import wait_for

KEY_FORMAT = re.compile(r"^[0-9]_[0-9]{19}_[0-9]_[0-9]{19}$")
MEDIUM = 2


def znode_json(kz: KazooClient, path: str) -> tuple[dict[str, Any], Any]:
    data, stat = kz.get(path)
    return json.loads(data), stat


def children(kz: KazooClient, path: str) -> list[str]:
    try:
        return sorted(kz.get_children(path))
    except NoNodeError:
        return []


def test_diamond_runs_in_dependency_order(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(
        api,
        {
            "name": "diamond",
            "tasks": [
                {"name": "a", "type": "SHELL", "command": "echo a"},
                {"name": "b", "command": "sleep 0.3; echo b", "depends_on": ["a"]},
                {"name": "c", "command": "sleep 0.3; echo c", "depends_on": ["a"]},
                {"name": "d", "command": "echo d", "depends_on": ["b", "c"]},
            ],
        },
    )
    inst = wait_terminal(api, iid, 30 * timeout_scale)
    assert inst["state"] == "SUCCESS", inst
    tasks = {t["name"]: t for t in inst["tasks"]}
    assert sorted(tasks) == ["a", "b", "c", "d"] and len(inst["tasks"]) == 4, inst["tasks"]
    for t in tasks.values():
        assert t["state"] == "SUCCESS" and t["exit_code"] == 0, t
        assert t["start_time"] and t["end_time"], t
    # every time comes from PostgreSQL's clock
    start = {n: datetime.fromisoformat(t["start_time"]) for n, t in tasks.items()}
    end = {n: datetime.fromisoformat(t["end_time"]) for n, t in tasks.items()}
    assert start["b"] >= end["a"] and start["c"] >= end["a"], tasks
    assert start["d"] >= end["b"] and start["d"] >= end["c"], tasks
    assert start["b"] < end["c"] and start["c"] < end["b"], f"b and c did not overlap: {tasks}"
    assert datetime.fromisoformat(inst["end_time"]) >= end["d"]


def test_znode_layout_members_queue_and_lease(
    cluster: Cluster,
    api: TestClient,
    kz: KazooClient,
    settings: Settings,
    zk_root: str,
    tmp_path: Path,
    timeout_scale: float,
) -> None:
    master = cluster.start_master()
    data, stat = znode_json(kz, f"{zk_root}/nodes/masters/{master.master_id}")
    assert data["host"] == socket.gethostname() and data["pid"] == os.getpid(), data
    assert stat.ephemeralOwner != 0 and data["epoch"] == master.epoch

    # no worker yet: the attempt waits in the queue under its fixed-width key
    flag = tmp_path / "release"
    hold = f'while [ ! -e "{flag}" ]; do sleep 0.05; done; echo released'
    iid = run(api, {"name": "hold", "tasks": [{"name": "hold", "command": hold}]})
    queue = f"{zk_root}/queue/default"
    keys = wait_for(lambda: children(kz, queue), 15 * timeout_scale, 0.05, "a queue entry")
    assert len(keys) == 1 and KEY_FORMAT.match(keys[0]), keys
    (task,) = instance(api, iid)["tasks"]
    assert task["state"] in ("SUBMITTED", "DISPATCHED"), task
    assert parse_key(keys[0]) == QueueKey(MEDIUM, iid, MEDIUM, task["id"])
    ti_id = task["id"]

    # a worker drains the queue and holds the lease of the running attempt
    worker = cluster.start_worker()
    data, stat = znode_json(kz, f"{zk_root}/nodes/workers/default/{worker.worker_id}")
    assert data["host"] == settings.worker.host and data["pid"] == os.getpid(), data
    assert data["epoch"] == worker.epoch and data["groups"] == ["default"], data
    lease = f"{zk_root}/leases/{ti_id}"
    wait_for(lambda: kz.exists(lease), 15 * timeout_scale, 0.05, f"lease {lease}")
    assert children(kz, queue) == []
    data, stat = znode_json(kz, lease)
    assert data == {"worker": worker.worker_id, "epoch": worker.epoch, "host": worker.host}
    assert worker.zk is not None and stat.ephemeralOwner == worker.zk.client.client_id[0]

    def running() -> dict[str, Any]:
        row: dict[str, Any] = api.get(f"/api/v1/task-instances/{ti_id}").json()
        return row if row["state"] == "RUNNING" else {}

    row = wait_for(running, 15 * timeout_scale, 0.05, f"task {ti_id} RUNNING")
    assert row["lease_token"] == worker.epoch and row["worker_id"] == worker.worker_id, row

    # released: the attempt succeeds and its lease goes away
    flag.touch()
    assert wait_terminal(api, iid, 30 * timeout_scale)["state"] == "SUCCESS"
    wait_for(lambda: not kz.exists(lease), 15 * timeout_scale, 0.05, f"{lease} to go")
