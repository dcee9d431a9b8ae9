"""SUB_PROCESS on real PostgreSQL, ZooKeeper, masters and workers: nesting 10 deep and 50 children
at once complete on one small master (no thread waits on a child); stop and pause pass down the
chain and a resume takes over the paused child; a master killed -9 while a child runs: another
master adopts parent and child, both complete, and each parent attempt has exactly one child."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from harness import Cluster as ProcCluster
from support import (
    Cluster,
    act,
    create,
    instance,
    start,
    tasks,
    wait_state,
    wait_task,
    wait_terminal,
)

from core.settings import Settings


def small(settings: Settings) -> None:
    """One command per claim, a queue of one entry, one task slot per worker."""
    settings.master.commands_per_claim = 1
    settings.master.queue_high_water = 1
    settings.worker.capacity = 1


def leaf(api: TestClient, name: str, command: str = "echo leaf x=$x") -> int:
    return create(
        api, {"name": name, "tasks": [{"name": "t", "type": "SHELL", "command": command}]}
    )


def sub(name: str, wid: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "SUB_PROCESS", "workflow_id": wid, **extra}


def child_of(api: TestClient, iid: int, task: str) -> int:
    t = tasks(api, iid)[task]
    assert t["child_instance_id"] is not None, t
    return int(t["child_instance_id"])


def test_validator_names_the_field(api: TestClient) -> None:
    r = api.post(
        "/api/v1/workflows",
        json={"name": "bad-sub", "tasks": [{"name": "s", "type": "SUB_PROCESS"}]},
    )
    assert r.status_code == 422 and "workflow_id" in r.text, r.text
    r = api.post(
        "/api/v1/workflows",
        json={"name": "bad-sub2", "tasks": [sub("s", 0)]},
    )
    assert r.status_code == 422 and "workflow_id" in r.text, r.text


def test_missing_workflow_fails_the_attempt(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    iid = start(api, create(api, {"name": "sub-missing", "tasks": [sub("s", 987654)]}))
    done = wait_terminal(api, iid, 20 * timeout_scale)
    assert done["state"] == "FAILURE"
    t = tasks(api, iid)["s"]
    assert t["state"] == "FAILURE" and "987654 does not exist" in t["reason"], t


def test_nesting_ten_deep_on_a_small_master(
    cluster: Cluster, api: TestClient, settings: Settings, timeout_scale: float
) -> None:
    small(settings)
    cluster.start_master()
    cluster.start_worker()
    wid = leaf(api, "nest-0")
    for level in range(1, 11):
        wid = create(
            api,
            {"name": f"nest-{level}", "tasks": [sub("down", wid, params={"x": f"from-{level}"})]},
        )
    top = start(api, wid)
    done = wait_terminal(api, top, 90 * timeout_scale)
    assert done["state"] == "SUCCESS", done
    iid, chain = top, []
    for level in range(10, 0, -1):
        parent_task = tasks(api, iid)["down"]
        assert parent_task["state"] == "SUCCESS"
        child = child_of(api, iid, "down")
        c = instance(api, child)
        assert c["state"] == "SUCCESS" and c["parent_task_instance_id"] == parent_task["id"]
        assert c["params"].get("x") == f"from-{level}"  # the parent task's params, passed down
        chain.append(child)
        iid = child
    assert len(set(chain)) == 10
    assert tasks(api, iid)["t"]["state"] == "SUCCESS"


def test_fifty_children_at_once_on_a_small_master(
    cluster: Cluster, api: TestClient, settings: Settings, timeout_scale: float
) -> None:
    small(settings)
    cluster.start_master()
    cluster.start_worker()
    wid = leaf(api, "fan-leaf", "true")
    parent = create(api, {"name": "fan-50", "tasks": [sub(f"c{i:02d}", wid) for i in range(50)]})
    t0 = time.monotonic()
    iid = start(api, parent)
    done = wait_terminal(api, iid, 120 * timeout_scale)
    took = time.monotonic() - t0
    assert done["state"] == "SUCCESS", done
    kids = {child_of(api, iid, f"c{i:02d}") for i in range(50)}
    assert len(kids) == 50
    for k in kids:
        assert instance(api, k)["state"] == "SUCCESS"
    print(f"\n50 SUB_PROCESS children on 1 master, 1 worker slot: {took:.2f}s")


def test_stop_of_the_parent_stops_the_child_chain(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    wid = leaf(api, "stop-leaf", "sleep 60")
    mid = create(api, {"name": "stop-mid", "tasks": [sub("down", wid)]})
    top = start(api, create(api, {"name": "stop-top", "tasks": [sub("down", mid)]}))
    wait_task(api, top, "down", "RUNNING", 20 * timeout_scale)
    middle = child_of(api, top, "down")
    wait_task(api, middle, "down", "RUNNING", 20 * timeout_scale)
    bottom = child_of(api, middle, "down")
    wait_task(api, bottom, "t", "RUNNING", 20 * timeout_scale)
    act(api, top, "stop")
    for iid in (bottom, middle, top):
        assert wait_terminal(api, iid, 30 * timeout_scale)["state"] == "STOP"
    assert tasks(api, bottom)["t"]["state"] == "KILL"
    assert tasks(api, middle)["down"]["state"] == "KILL"
    assert tasks(api, top)["down"]["state"] == "KILL"


def test_pause_and_resume_keep_the_same_child(
    cluster: Cluster, api: TestClient, timeout_scale: float, tmp_path: Path
) -> None:
    cluster.start_master()
    cluster.start_worker()
    gate = tmp_path / "gate"
    wid = create(
        api,
        {
            "name": "pause-leaf",
            "tasks": [
                {
                    "name": "a",
                    "type": "SHELL",
                    "command": f"while [ ! -e {gate} ]; do sleep 0.1; done",
                },
                {"name": "b", "type": "SHELL", "command": "true", "depends_on": ["a"]},
            ],
        },
    )
    top = start(api, create(api, {"name": "pause-top", "tasks": [sub("down", wid)]}))
    wait_task(api, top, "down", "RUNNING", 20 * timeout_scale)
    child = child_of(api, top, "down")
    wait_task(api, child, "a", "RUNNING", 20 * timeout_scale)
    act(api, top, "pause")
    assert wait_state(api, child, "READY_PAUSE", 20 * timeout_scale)
    gate.touch()  # a finishes; the child then pauses before b, and the parent after it
    wait_state(api, child, "PAUSE", 30 * timeout_scale)
    wait_state(api, top, "PAUSE", 30 * timeout_scale)
    assert tasks(api, top)["down"]["state"] == "PAUSE"
    act(api, top, "resume")
    done = wait_terminal(api, top, 30 * timeout_scale)
    assert done["state"] == "SUCCESS", done
    down = tasks(api, top)["down"]
    assert down["attempt"] == 2 and down["state"] == "SUCCESS"
    assert child_of(api, top, "down") == child  # re-linked, never a second child
    c = instance(api, child)
    assert c["state"] == "SUCCESS" and c["parent_task_instance_id"] == down["id"]
    assert tasks(api, child)["b"]["state"] == "SUCCESS"
    # exactly one child instance of this workflow exists
    r = api.get("/api/v1/instances", params={"workflow_id": wid})
    assert r.json()["total"] == 1, r.text


def test_master_kill9_while_child_runs(proc_cluster: ProcCluster) -> None:
    c = proc_cluster
    c.up(masters=2, workers=1)
    # the leaf workflow, then a parent whose SUB_PROCESS runs it (direct rows: no API here)
    leaf_iid = c.submit([{"name": "a", "command": "sleep 4"}], name="kill-leaf")
    c.wait(lambda: c.state(leaf_iid) == "SUCCESS", 30, "the leaf workflow's own run")
    leaf_wid = c.one("SELECT workflow_id FROM workflow_instance WHERE id = :i", i=leaf_iid)
    parent = c.submit([sub("down", int(leaf_wid))], name="kill-top")

    def child_running() -> int | None:
        row = c.rows(
            "SELECT w.id FROM workflow_instance w JOIN task_instance t"
            " ON t.id = w.parent_task_instance_id JOIN task_instance a"
            " ON a.workflow_instance_id = w.id"
            " WHERE t.workflow_instance_id = :p AND a.state = 'RUNNING'",
            p=parent,
        )
        return int(row[0][0]) if row else None

    child = c.wait(child_running, 30, "the child's task to run")
    owner = c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=parent)
    assert owner == c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=child)
    victim = c.master_owning(parent)
    assert victim is not None
    c.kill9(victim)
    assert c.state(child) == "RUNNING" and c.state(parent) == "RUNNING"
    c.wait(lambda: c.state(parent) == "SUCCESS", 60, "the parent to complete")
    assert c.state(child) == "SUCCESS"
    new_owner = c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=parent)
    assert new_owner != owner
    per_attempt = c.rows(
        "SELECT t.id, count(w.id) FROM task_instance t LEFT JOIN workflow_instance w"
        " ON w.parent_task_instance_id = t.id WHERE t.workflow_instance_id = :p"
        " GROUP BY t.id",
        p=parent,
    )
    assert [n for _, n in per_attempt] == [1], per_attempt
    children = c.one(
        "SELECT count(*) FROM workflow_instance WHERE workflow_id = :w", w=int(leaf_wid)
    )
    assert children == 2  # the leaf's own run and the one child
    rc, out = c.doctor()
    assert rc == 0, out
