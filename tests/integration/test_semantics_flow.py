"""Ordering, concurrency and branching through the REST API on real servers: queue priorities,
serial execution types, worker groups without workers, task groups, trigger rules, CONDITIONS and
SWITCH nodes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi.testclient import TestClient
from support import (
    Cluster,
    create,
    instance,
    run,
    sh,
    start,
    tasks,
    wait_state,
    wait_task,
    wait_terminal,
)

from ops.localserver import wait_for


def started(api: TestClient, iid: int, name: str) -> datetime:
    return datetime.fromisoformat(tasks(api, iid)[name]["start_time"])


def test_highest_priority_task_runs_before_lowest_ones_queued_earlier(
    cluster: Cluster, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    cluster.settings.worker.capacity = 1
    cluster.start_master()
    gate = tmp_path / "gate"
    low = run(
        api,
        {
            "name": "low",
            "priority": "LOWEST",
            "tasks": [
                sh("blocker", f"while [ ! -e {gate} ]; do sleep 0.02; done"),
                *[sh(f"l{i}", "true") for i in range(3)],
            ],
        },
    )
    high = run(api, {"name": "high", "priority": "HIGHEST", "tasks": [sh("h", "true")]})
    wait_task(api, high, "h", "DISPATCHED", 20 * timeout_scale)
    wait_for(
        lambda: all(t["state"] == "DISPATCHED" for t in tasks(api, low).values()),
        20 * timeout_scale,
        0.05,
        "the LOWEST tasks to be queued first",
    )
    cluster.start_worker()  # one slot: takes the queue in key order
    wait_task(api, low, "blocker", "RUNNING", 20 * timeout_scale)  # the HIGHEST one ran already
    gate.touch()
    assert wait_terminal(api, low, 20 * timeout_scale)["state"] == "SUCCESS"
    assert wait_terminal(api, high, 20 * timeout_scale)["state"] == "SUCCESS"
    first_low = min(started(api, low, n) for n in ("blocker", "l0", "l1", "l2"))
    assert started(api, high, "h") < first_low


def test_serial_wait_runs_one_at_a_time_and_serial_discard_drops_new_runs(
    cluster: Cluster, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    gate = tmp_path / "gate"
    wait_cmd = f"while [ ! -e {gate} ]; do sleep 0.02; done"
    wid = create(
        api, {"name": "serial", "execution_type": "SERIAL_WAIT", "tasks": [sh("t", wait_cmd)]}
    )
    first = start(api, wid)
    wait_task(api, first, "t", "RUNNING", 20 * timeout_scale)
    second = start(api, wid)
    waiting = wait_state(api, second, "SERIAL_WAIT", 20 * timeout_scale)
    assert f"run {first}" in waiting["reason"]
    gate.touch()
    assert wait_terminal(api, first, 20 * timeout_scale)["state"] == "SUCCESS"
    assert wait_terminal(api, second, 20 * timeout_scale)["state"] == "SUCCESS"
    assert started(api, second, "t") >= datetime.fromisoformat(tasks(api, first)["t"]["end_time"])

    gate.unlink()
    did = create(
        api, {"name": "discard", "execution_type": "SERIAL_DISCARD", "tasks": [sh("t", wait_cmd)]}
    )
    keep = start(api, did)
    wait_task(api, keep, "t", "RUNNING", 20 * timeout_scale)
    dropped = wait_terminal(api, start(api, did), 20 * timeout_scale)
    assert dropped["state"] == "STOP" and "discarded" in dropped["reason"]
    assert dropped["tasks"] == []
    gate.touch()
    assert wait_terminal(api, keep, 20 * timeout_scale)["state"] == "SUCCESS"


def test_serial_priority_lets_a_higher_priority_run_jump_the_wait(
    cluster: Cluster, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    gate = tmp_path / "gate"
    wid = create(
        api,
        {
            "name": "serial-pri",
            "execution_type": "SERIAL_PRIORITY",
            "tasks": [sh("t", f"while [ ! -e {gate} ]; do sleep 0.02; done")],
        },
    )
    running = start(api, wid)
    wait_task(api, running, "t", "RUNNING", 20 * timeout_scale)
    low = start(api, wid, priority="LOW")
    wait_state(api, low, "SERIAL_WAIT", 20 * timeout_scale)
    urgent = start(api, wid, priority="HIGHEST")
    wait_state(api, urgent, "SERIAL_WAIT", 20 * timeout_scale)
    gate.touch()
    for iid in (running, low, urgent):
        assert wait_terminal(api, iid, 30 * timeout_scale)["state"] == "SUCCESS"
    assert started(api, urgent, "t") < started(api, low, "t")


def test_a_task_whose_group_has_no_worker_waits_and_says_so_without_blocking_others(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(
        api,
        {
            "name": "gpu-job",
            "tasks": [sh("cpu", "true"), sh("gpu", "true", worker_group="gpu")],
        },
    )
    wait_task(api, iid, "cpu", "SUCCESS", 20 * timeout_scale)
    gpu = wait_task(api, iid, "gpu", "DISPATCHED", 20 * timeout_scale)
    assert gpu["waiting"] == "no live worker in group gpu"
    cluster.settings.worker.groups = ["gpu"]
    cluster.start_worker()
    assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "SUCCESS"


def test_task_group_limits_concurrency_across_workflows(
    cluster: Cluster, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    cluster.settings.worker.capacity = 8
    cluster.start_master()
    cluster.start_worker()
    r = api.post("/api/v1/task-groups", json={"name": "warehouse", "capacity": 2})
    assert r.status_code == 201, r.text
    assert (
        api.post("/api/v1/task-groups", json={"name": "warehouse", "capacity": 3}).status_code
        == 409
    )
    spans = tmp_path / "spans"
    body = f"echo start $(date +%s.%N) >> {spans}; sleep 0.3; echo end $(date +%s.%N) >> {spans}"
    spec = {
        "name": "loads",
        "tasks": [sh(f"load{i}", body, task_group="warehouse") for i in range(4)]
        + [sh("free", "true")],
    }
    first = run(api, spec)
    second = run(api, dict(spec, name="loads2"))
    wait_for(
        lambda: (
            "warehouse" in (instance(api, second)["reason"] or "")
            or instance(api, second)["state"] == "SUCCESS"
        ),
        20 * timeout_scale,
        0.05,
        "a run waiting for the task group",
    )
    for iid in (first, second):
        assert wait_terminal(api, iid, 40 * timeout_scale)["state"] == "SUCCESS"
    events = sorted(
        (float(ts), +1 if kind == "start" else -1)
        for kind, ts in (line.split() for line in spans.read_text().splitlines())
    )
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    assert peak == 2, events
    group = api.get("/api/v1/task-groups/warehouse").json()
    assert group["in_use"] == 0 and group["capacity"] == 2


def test_trigger_rules_route_on_upstream_outcomes(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    rules = ["all_success", "all_done", "all_failed", "one_success", "one_failed", "none_failed"]
    iid = run(
        api,
        {
            "name": "rules",
            "tasks": [sh("ok", "true"), sh("bad", "exit 1")]
            + [sh(r, "true", depends_on=["ok", "bad"], trigger_rule=r) for r in rules],
        },
    )
    done = wait_terminal(api, iid, 20 * timeout_scale)
    states = {n: t["state"] for n, t in tasks(api, iid).items()}
    assert states == {
        "ok": "SUCCESS",
        "bad": "FAILURE",
        "all_success": "SKIPPED",
        "all_done": "SUCCESS",
        "all_failed": "SKIPPED",
        "one_success": "SUCCESS",
        "one_failed": "SUCCESS",
        "none_failed": "SKIPPED",
    }
    assert done["state"] == "SUCCESS"  # 'bad' is handled by all_done / one_failed downstream
    assert tasks(api, iid)["all_success"]["reason"] == "upstream failed"


def test_conditions_node_routes_on_upstream_failure_and_skips_the_other_branch(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(
        api,
        {
            "name": "cond",
            "tasks": [
                sh("check", "exit 1"),
                {
                    "name": "route",
                    "type": "CONDITIONS",
                    "depends_on": ["check"],
                    "on_success": ["publish"],
                    "on_failure": ["alert"],
                },
                sh("publish", "true", depends_on=["route"]),
                sh("after_publish", "true", depends_on=["publish"]),
                sh("alert", "true", depends_on=["route"]),
            ],
        },
    )
    done = wait_terminal(api, iid, 20 * timeout_scale)
    states = {n: t["state"] for n, t in tasks(api, iid).items()}
    assert states == {
        "check": "FAILURE",
        "route": "SUCCESS",
        "publish": "SKIPPED",
        "after_publish": "SKIPPED",
        "alert": "SUCCESS",
    }
    assert done["state"] == "SUCCESS"


def test_switch_node_routes_on_a_parameter_expression(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    wid = create(
        api,
        {
            "name": "switch",
            "params": {"region": "us"},
            "tasks": [
                {
                    "name": "pick",
                    "type": "SWITCH",
                    "cases": [
                        {"when": '${region} == "eu"', "next": "eu"},
                        {"when": '${region} in ["us", "ca"]', "next": "na"},
                    ],
                    "default": "other",
                },
                sh("eu", "true", depends_on=["pick"]),
                sh("na", "true", depends_on=["pick"]),
                sh("other", "true", depends_on=["pick"]),
            ],
        },
    )
    expected = {"eu": "eu", "ca": "na", "mars": "other"}
    runs = {region: start(api, wid, params={"region": region}) for region in expected}
    for region, iid in runs.items():
        assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "SUCCESS"
        ran = {n for n, t in tasks(api, iid).items() if t["state"] == "SUCCESS"} - {"pick"}
        assert ran == {expected[region]}, region


def test_invalid_branch_specs_are_422_naming_the_task(cluster: Cluster, api: TestClient) -> None:
    bad_target = {
        "name": "bad-cond",
        "tasks": [
            {"name": "c", "type": "CONDITIONS", "on_success": ["x"], "on_failure": []},
            sh("x", "true"),  # does not depend on c
        ],
    }
    r = api.post("/api/v1/workflows", json=bad_target)
    assert r.status_code == 422 and "task 'c'" in r.json()["error"]["message"], r.text
    bad_expr = {
        "name": "bad-switch",
        "tasks": [
            {"name": "s", "type": "SWITCH", "cases": [{"when": "__import__('os')", "next": "y"}]},
            sh("y", "true", depends_on=["s"]),
        ],
    }
    r = api.post("/api/v1/workflows", json=bad_expr)
    assert r.status_code == 422 and "task 's'" in r.json()["error"]["message"], r.text
