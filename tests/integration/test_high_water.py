"""The ZooKeeper queue's high-water mark: with 200 ready tasks, a mark of 20 and one worker slot,
the queue never holds more than 20 entries, the rest wait SUBMITTED in PostgreSQL (the instance
says so), and every task still succeeds, started in queue order within its instance."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient
from kazoo.client import KazooClient
from sqlalchemy import text
from support import Cluster, run
from zk_acl import kazoo_acl

from core.states import WORKFLOW_TERMINAL
from db.engine import SessionFactory
from ops.localserver import wait_for

HIGH_WATER = 20
PRIORITIES = ["LOWEST", "HIGH", "MEDIUM", "HIGHEST", "LOW"]


class Sampler(threading.Thread):
    """Reads the queue node's child count in a loop and keeps the largest value seen."""

    def __init__(self, hosts: str, path: str) -> None:
        super().__init__(name="queue-sampler", daemon=True)
        self.client = KazooClient(hosts=hosts)
        self.path = path
        self.peak = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            stat = self.client.exists(self.path)
            if stat is not None:
                self.peak = max(self.peak, stat.numChildren)
                self.samples += 1
            self.stop.wait(0.002)


def submit(api: TestClient, name: str, n: int) -> int:
    tasks = [
        {"name": f"t{i:03d}", "command": "true", "priority": PRIORITIES[i % len(PRIORITIES)]}
        for i in range(n)
    ]
    return run(api, {"name": name, "tasks": tasks})


def test_queue_stays_under_high_water_and_drains_in_order(
    cluster: Cluster,
    api: TestClient,
    sf: SessionFactory,
    zk_hosts: str,
    zk_root: str,
    timeout_scale: float,
) -> None:
    cluster.settings.master.queue_high_water = HIGH_WATER
    cluster.settings.worker.capacity = 1
    sampler = Sampler(zk_hosts, f"{zk_root}/queue/default")
    sampler.client.start(timeout=15)
    try:
        cluster.start_master()
        sampler.start()
        first = submit(api, "hw-a", 100)
        second = submit(api, "hw-b", 100)

        # before any worker: the queue fills to the mark and the rest waits in PostgreSQL
        def waiting() -> dict[str, Any]:
            inst = api.get(f"/api/v1/instances/{second}").json()
            return inst if "wait for queue space" in (inst.get("reason") or "") else {}

        inst = wait_for(waiting, 20 * timeout_scale, 0.05, "a queue-space reason")
        assert inst["state"] == "RUNNING", inst
        states = [t["state"] for t in inst["tasks"]]
        assert states.count("SUBMITTED") == 100, states
        assert sampler.peak == HIGH_WATER, sampler.peak

        cluster.start_worker()

        def finished() -> list[dict[str, Any]]:
            insts = [api.get(f"/api/v1/instances/{i}").json() for i in (first, second)]
            return insts if all(i["state"] in WORKFLOW_TERMINAL for i in insts) else []

        insts = wait_for(finished, 180 * timeout_scale, 0.2, "both instances to finish")
        sampler.stop.set()
        sampler.join(timeout=5)
        assert sampler.samples > 100, sampler.samples
        assert sampler.peak <= HIGH_WATER, f"queue peak {sampler.peak} > {HIGH_WATER}"
        for i in insts:
            assert i["state"] == "SUCCESS", i
            assert len(i["tasks"]) == 100 and {t["state"] for t in i["tasks"]} == {"SUCCESS"}
            assert "queue space" not in (i.get("reason") or ""), i
    finally:
        sampler.stop.set()
        sampler.client.stop()
        sampler.client.close()

    # one worker slot: start order is claim order, which is queue-key order per instance
    with sf.begin() as s:
        rows = s.execute(
            text(
                "SELECT workflow_instance_id, priority, id FROM task_instance ORDER BY start_time, id"
            )
        ).all()
    for iid in (first, second):
        started = [(r.priority, r.id) for r in rows if r.workflow_instance_id == iid]
        assert len(started) == 100
        assert started == sorted(started), f"instance {iid} did not start in priority order"
    assert [r.workflow_instance_id for r in rows] == [first] * 100 + [second] * 100


def test_concurrent_bounded_pushes_never_pass_the_mark(zk_hosts: str, zk_root: str) -> None:
    """Three masters' queues push at once: the mark holds across them, and nothing is lost."""
    from coord.queue import QueueKey, TaskQueue
    from core.zk_paths import ZkPaths

    clients = [KazooClient(hosts=zk_hosts, **kazoo_acl()) for _ in range(3)]
    results: dict[int, list[QueueKey]] = {}
    try:
        for c in clients:
            c.start(timeout=15)
        paths = ZkPaths(zk_root)

        def push(n: int) -> None:
            q = TaskQueue(clients[n], paths)
            keys = [QueueKey(2, n + 1, 2, n * 1000 + i) for i in range(120)]
            out: list[QueueKey] = []
            for i in range(0, len(keys), 7):  # many small pushes race each other
                out += q.push_bounded("default", keys[i : i + 7], 50)
            results[n] = out

        threads = [threading.Thread(target=push, args=(n,)) for n in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        queued = sorted(clients[0].get_children(paths.queue("default")))
        pushed = sorted(str(k) for keys in results.values() for k in keys)
        assert len(queued) == 50, len(queued)
        assert pushed == queued
    finally:
        for c in clients:
            c.stop()
            c.close()
