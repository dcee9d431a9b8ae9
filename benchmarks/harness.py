"""What every workload needs: the REST client (httpx, bearer token), workflow specs of no-op SHELL
tasks, waiting on instances in PostgreSQL, and the task rows every figure is computed from."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from benchmarks.cluster import Cluster
from benchmarks.util import (
    DB_NAME,
    MARK,
    activity,
    activity_delta,
    cpu_delta,
    cpu_snapshot,
    flush_pg_stats,
    harness_cpu,
    system_busy,
)

TERMINAL = ("SUCCESS", "FAILURE", "STOP")


class Unfinished(Exception):
    """A run did not finish in time; ``figures`` holds what could be measured until then."""

    def __init__(self, message: str, figures: dict[str, Any]) -> None:
        super().__init__(message)
        self.figures = figures


class Api:
    """The few REST calls the benchmark makes."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.client = httpx.Client(base_url=self.base, headers=self.headers, timeout=300)

    def create_workflow(self, name: str, tasks: list[dict[str, Any]]) -> int:
        r = self.client.post("/workflows", json={"name": name, "tasks": tasks})
        if r.status_code != 201:
            raise RuntimeError(f"POST /workflows: {r.status_code} {r.text[:500]}")
        return int(r.json()["id"])

    def run(self, workflow_id: int, body: dict[str, Any] | None = None) -> int:
        r = self.client.post(f"/workflows/{workflow_id}/runs", json=body or {})
        if r.status_code != 202:
            raise RuntimeError(
                f"POST /workflows/{workflow_id}/runs: {r.status_code} {r.text[:500]}"
            )
        return int(r.json()["instance_id"])

    def close(self) -> None:
        self.client.close()


def task(name: str, deps: Iterable[str] = (), command: str = "true") -> dict[str, Any]:
    return {"name": name, "type": "SHELL", "command": command, "depends_on": list(deps)}


def unique(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class TaskRow:
    id: int
    name: str
    attempt: int
    state: str
    submit: datetime
    dispatch: datetime | None
    start: datetime | None
    end: datetime | None
    worker_id: str | None
    pid: int | None


@dataclass
class InstanceRow:
    id: int
    state: str
    submit: datetime
    start: datetime | None
    end: datetime | None
    owner: str | None


@dataclass
class Ctx:
    cluster: Cluster
    api: Api
    quick: bool
    wait_timeout: float
    workflows: dict[str, int] = field(default_factory=dict)

    def workflow(self, key: str, make: Callable[[], list[dict[str, Any]]]) -> int:
        """A workflow created once per benchmark run and reused by every repeat."""
        if key not in self.workflows:
            self.workflows[key] = self.api.create_workflow(unique(key), make())
        return self.workflows[key]

    def instance(self, iid: int) -> InstanceRow:
        rows = self.cluster.query(
            f"SELECT id, state, submit_time, start_time, end_time, owner {MARK} "
            "FROM workflow_instance WHERE id = :id",
            id=iid,
        )
        return InstanceRow(*rows[0])

    def instances(self, ids: list[int]) -> list[InstanceRow]:
        rows = self.cluster.query(
            f"SELECT id, state, submit_time, start_time, end_time, owner {MARK} "
            "FROM workflow_instance WHERE id = ANY(:ids)",
            ids=ids,
        )
        return [InstanceRow(*r) for r in rows]

    def tasks(self, iid: int) -> list[TaskRow]:
        rows = self.cluster.query(
            f"SELECT id, name, attempt, state, submit_time, dispatch_time, start_time, end_time, "
            f"worker_id, pid {MARK} FROM task_instance WHERE workflow_instance_id = :id ORDER BY id",
            id=iid,
        )
        return [TaskRow(*r) for r in rows]

    def wait_done(self, ids: list[int], timeout: float | None = None, poll: float = 0.1) -> None:
        """Until every instance in ``ids`` is terminal; raises with the daemons' log tails."""
        deadline = time.monotonic() + (timeout or self.wait_timeout)
        while True:
            self.cluster.check_alive()
            left = self.cluster.scalar(
                f"SELECT count(*) {MARK} FROM workflow_instance "
                "WHERE id = ANY(:ids) AND state NOT IN ('SUCCESS', 'FAILURE', 'STOP')",
                ids=ids,
            )
            if not left:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{left} of {len(ids)} instance(s) not finished after "
                    f"{timeout or self.wait_timeout:.0f}s"
                )
            time.sleep(poll)

    def require_success(self, ids: list[int]) -> None:
        bad = [(i.id, i.state) for i in self.instances(ids) if i.state != "SUCCESS"]
        if bad:
            raise RuntimeError(f"instance(s) did not succeed: {bad[:10]}")


class WaitSampler(threading.Thread):
    """Samples what the cluster's PostgreSQL backends are doing (pg_stat_activity) every
    ``interval`` seconds: the most common wait events tell what a slow run waits for."""

    def __init__(self, cluster: Cluster, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="wait-sampler")
        self.cluster, self.interval = cluster, interval
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        sql = (
            f"SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), "
            f"left(regexp_replace(query, '\\s+', ' ', 'g'), 70) {MARK} FROM pg_stat_activity "
            "WHERE datname = :d AND state = 'active' AND pid <> pg_backend_pid()"
        )
        while not self._halt.wait(self.interval):
            try:
                rows = self.cluster.query(sql, d=DB_NAME)
            except Exception:
                continue
            self.samples += 1
            for wait, query in rows:
                self.counts[f"{wait} | {query}"] += 1

    def stop(self, top: int = 6) -> list[list[Any]]:
        """The most frequent (wait, statement) pairs: average backends in that state."""
        self._halt.set()
        self.join(5)
        n = max(1, self.samples)
        return [[k, round(v / n, 2)] for k, v in self.counts.most_common(top)]


class Meter:
    """CPU per process kind and PostgreSQL / ZooKeeper activity between ``start`` and ``stop``."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.cpu0 = cpu_snapshot(cluster)
        self.act0 = activity(cluster)
        self.sys0, self.own0 = system_busy(), harness_cpu()
        self.waits = WaitSampler(cluster)
        self.waits.start()
        self.t0 = time.monotonic()

    def stop(self, per: int) -> dict[str, Any]:
        """Figures per unit of work (``per`` tasks): CPU ms, PG transactions and statements,
        ZooKeeper requests; plus the cores busy on average."""
        wall = time.monotonic() - self.t0
        sys_busy, own = system_busy() - self.sys0, harness_cpu() - self.own0
        waits = self.waits.stop()
        flush_pg_stats()
        cpu = cpu_delta(self.cpu0, cpu_snapshot(self.cluster))
        act = activity_delta(self.act0, activity(self.cluster))
        out: dict[str, Any] = {f"cpu_ms_per_task.{k}": v * 1000.0 / per for k, v in cpu.items()}
        out["cores_busy"] = cpu["total"] / wall if wall > 0 else 0.0
        # the benchmark itself, and anything else running on the machine meanwhile
        out["harness_cores_busy"] = own / wall if wall > 0 else 0.0
        other = max(0.0, sys_busy - own - cpu["total"])
        out["other_cores_busy"] = other / wall if wall > 0 else 0.0
        names = {"pg_xacts": "pg_xacts_per_task", "pg_statements": "pg_statements_per_task"}
        names["zk_requests"] = "zk_requests_per_task"
        for k, v in act.items():
            out[names[k]] = v / per
        # what the busy PostgreSQL backends were doing: average number per (wait, statement)
        out["pg_active_backends"] = waits
        return out
