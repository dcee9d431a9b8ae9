"""Worker drain: a drain request through ZooKeeper (``dagkeeper worker drain <id>``) lets the
worker's running tasks finish and it takes nothing new until the request is withdrawn; past
the deadline the rest are killed and run again elsewhere without using a retry; SIGTERM to a
worker process drains it the same way, then it exits."""

from __future__ import annotations

import signal
import time
from typing import Any

from fastapi.testclient import TestClient
from harness import Cluster as ProcCluster
from support import Cluster, attempts, run, sh, wait_task, wait_terminal

from coord import drain as drain_requests
from coord import membership
from coord.zk import ZkClient
from core.settings import Settings
from ops import drain
from ops.localserver import wait_for
from worker.server import WorkerServer


def tasks(api: TestClient, iid: int) -> dict[str, dict[str, Any]]:
    """The latest attempt of each task, with its worker (GET /instances/{id}/tasks)."""
    items = api.get(f"/api/v1/instances/{iid}/tasks").json()["items"]
    return {t["name"]: t for t in sorted(items, key=lambda t: t["attempt"])}


def _on(api: TestClient, iid: int, names: str, state: str, worker: WorkerServer | None) -> bool:
    now = tasks(api, iid)
    return all(
        n in now
        and now[n]["state"] == state
        and (worker is None or now[n]["worker_id"] == worker.worker_id)
        for n in names
    )


def test_a_drained_worker_finishes_its_three_tasks_and_takes_nothing_new(
    settings: Settings, cluster: Cluster, api: TestClient, zk: ZkClient, timeout_scale: float
) -> None:
    t = 30 * timeout_scale
    cluster.start_master()
    w1 = cluster.start_worker(capacity=3)
    busy = run(api, {"name": "busy", "tasks": [
        sh("a", "sleep 2"), sh("b", "sleep 2"), sh("c", "sleep 2"),
        sh("d", "true", depends_on=["a", "b", "c"])]})  # fmt: skip
    wait_for(lambda: _on(api, busy, "abc", "RUNNING", w1), t, 0.05, "a, b, c running on w1")

    asked = time.monotonic()
    assert drain.main(settings, w1.worker_id) == 0
    wait_for(lambda: w1.drain.active, t, 0.02, "w1 to see its drain request")
    later = run(api, {"name": "later", "tasks": [sh("x", "true")]})
    # the three finish where they run; then the worker says it runs nothing, draining
    assert drain.main(settings, w1.worker_id, wait=True) == 0
    drained = time.monotonic() - asked
    assert _on(api, busy, "abc", "SUCCESS", w1), tasks(api, busy)
    reg = {w.id: w for w in membership.workers(zk)}[w1.worker_id]
    assert reg.data["draining"] is True and reg.data["load"] == 0, reg.data
    # nothing new was taken: d (ready since a, b, c ended) and x wait in the queue
    assert tasks(api, busy)["d"]["state"] == "DISPATCHED", tasks(api, busy)
    assert tasks(api, later)["x"]["state"] == "DISPATCHED", tasks(api, later)
    print(f"\ndrain: 3 running tasks of 2 s finished, drained {drained:.2f}s after the request")

    w2 = cluster.start_worker(capacity=3)
    for iid in (busy, later):
        assert wait_terminal(api, iid, t)["state"] == "SUCCESS"
    assert tasks(api, busy)["d"]["worker_id"] == w2.worker_id
    assert tasks(api, later)["x"]["worker_id"] == w2.worker_id
    for iid, names in ((busy, "abcd"), (later, "x")):
        for n in names:
            assert [a["state"] for a in attempts(api, iid, n)] == ["SUCCESS"], (iid, n)

    # withdrawn: w1 claims again (w2 is gone, so only w1 can run y)
    w2.stop(grace=0)
    assert drain.main(settings, w1.worker_id, cancel=True) == 0
    wait_for(lambda: not w1.drain.active, t, 0.02, "w1 to see the withdrawal")
    again = run(api, {"name": "again", "tasks": [sh("y", "true")]})
    assert wait_terminal(api, again, t)["state"] == "SUCCESS"
    assert tasks(api, again)["y"]["worker_id"] == w1.worker_id


def test_past_the_deadline_the_rest_is_handed_over_without_using_a_retry(
    settings: Settings, cluster: Cluster, api: TestClient, zk: ZkClient, timeout_scale: float
) -> None:
    t = 30 * timeout_scale
    cluster.start_master()
    w1 = cluster.start_worker(capacity=2)
    first_long = 'if [ "$DAGKEEPER_ATTEMPT" = 1 ]; then sleep 60; fi'
    iid = run(api, {"name": "long", "tasks": [sh("p", first_long, retries=0)]})
    wait_task(api, iid, "p", "RUNNING", t)
    w2 = cluster.start_worker(capacity=2)  # idle: the queue is empty
    asked = time.monotonic()
    assert drain_requests.request(zk, w1.worker_id, "test", deadline_s=0.5)
    assert wait_terminal(api, iid, t)["state"] == "SUCCESS"
    took = time.monotonic() - asked
    runs = attempts(api, iid, "p")
    assert [(a["attempt"], a["state"]) for a in runs] == [
        (1, "NEED_FAULT_TOLERANCE"), (2, "SUCCESS")]  # fmt: skip
    assert runs[0]["worker_id"] == w1.worker_id and runs[1]["worker_id"] == w2.worker_id
    # killed at the deadline, not after the 60 s sleep (kill grace 2 s at most)
    assert took < 0.5 + settings.worker.kill_grace_s + 5 * timeout_scale, took
    print(f"\ndrain deadline 0.5 s: handed over and done {took:.2f}s after the request")


def test_sigterm_drains_a_worker_process_then_it_exits(proc_cluster: ProcCluster) -> None:
    c = proc_cluster
    c.master("m1")
    c.worker("w1", DAGKEEPER_WORKER__CAPACITY="3", DAGKEEPER_WORKER__DRAIN_DEADLINE_S="20")
    c.wait_registered(1, 1)
    iid = c.submit(
        [
            {"name": "a", "command": "sleep 2"},
            {"name": "b", "command": "sleep 2"},
            {"name": "c", "command": "sleep 2"},
            {"name": "d", "command": "true", "depends_on": ["a", "b", "c"]},
        ]
    )
    c.wait(lambda: all(c.find_attempt(iid, n) for n in "abc"), 30, "a, b, c running")
    w1 = c.procs["w1"]
    assert w1.popen is not None
    sent = time.monotonic()
    w1.popen.send_signal(signal.SIGTERM)
    w1.popen.wait(30 * c.scale)
    exited = time.monotonic() - sent
    for n in "abc":
        rows = c.attempts(iid, n)
        assert [(r.state, r.host) for r in rows] == [("SUCCESS", "w1")], rows
    assert [r.state for r in c.attempts(iid, "d")] == ["DISPATCHED"], c.attempts(iid, "d")
    assert exited < 10 * c.scale, exited
    print(f"\nworker SIGTERM with 3 running tasks of 2 s: all finished, exited after {exited:.2f}s")
    c.worker("w2")
    c.wait_success(iid)
    assert [(r.state, r.host) for r in c.attempts(iid, "d")] == [("SUCCESS", "w2")]
    c.assert_invariants()
