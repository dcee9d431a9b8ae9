"""FANOUT on real PostgreSQL, ZooKeeper, a master and three workers on distinct hosts, through the
REST API: one sub-execution per target with its own parameters on the right host; the node fails
if one target fails (the others' results shown), fail-fast kills a running sibling, an explicit
host list (a dead host fails at once), and a downstream task runs after a successful FANOUT."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient
from support import Cluster, act, log_text, run, task_instance, tasks, wait_terminal

from coord.zk import ZkClient
from core.settings import Settings
from core.zk_paths import ZkPaths
from db.engine import SessionFactory
from ops import doctor
from ops.localserver import wait_for
from worker.server import WorkerServer

HOSTS = ("fan-a", "fan-b", "fan-c")
GROUP = "fanout"
# each sub-execution says which parameter it got, on which worker, for which target
ECHO = (
    'echo "param=${who} worker=${DAGKEEPER_WORKER_ID} target=${DAGKEEPER_FANOUT_TARGET}"\n'
    "echo '${setValue(who='\"${who}\"')}'\n"
    "echo '${setValue(worker='\"${DAGKEEPER_WORKER_ID}\"')}'\n"
)


@pytest.fixture
def fleet(cluster: Cluster) -> dict[str, WorkerServer]:
    """A master and one worker per host in HOSTS, all serving GROUP."""
    cluster.start_master()
    return {h: cluster.start_worker(host=h, groups=[GROUP], capacity=2) for h in HOSTS}


def fan(name: str, targets: dict[str, Any], command: str = ECHO, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "FANOUT", "command": command, "targets": targets, **extra}


def by_host(subs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["host"]: s for s in subs}


def test_one_failing_target_fails_the_node_and_shows_every_result(
    fleet: dict[str, WorkerServer], api: TestClient, timeout_scale: float
) -> None:
    spec = {
        "name": "fan-fail",
        "tasks": [
            fan(
                "fan",
                {"group": GROUP},
                ECHO + 'test "${who}" != bad || exit 3\n',
                params={"who": "template"},
                target_params={"fan-b": {"who": "bad"}, "fan-c": {"who": "gamma"}},
            )
        ],
    }
    iid = run(api, spec)
    inst = wait_terminal(api, iid, 60 * timeout_scale)
    assert inst["state"] == "FAILURE", inst
    node = task_instance(api, tasks(api, iid)["fan"]["id"])
    assert node["type"] == "FANOUT" and node["state"] == "FAILURE", node
    assert "1 of 3 target(s) failed: fan-b" in node["reason"], node
    subs = by_host(node["sub_executions"])
    assert sorted(subs) == sorted(HOSTS)
    # the template reached fan-a; the overrides reached fan-b and fan-c, each on its own host
    expect = {"fan-a": "template", "fan-b": "bad", "fan-c": "gamma"}
    for host, who in expect.items():
        sub = subs[host]
        assert sub["params"]["who"] == who, sub
        assert sub["worker_host"] == host, sub
        assert sub["worker_id"].startswith(f"{host}-"), sub
        assert sub["start_time"] and sub["end_time"], sub
        text = log_text(api, sub["id"])
        assert f"param={who} worker={sub['worker_id']} target={host}" in text, text
    for host in ("fan-a", "fan-c"):
        assert subs[host]["state"] == "SUCCESS" and subs[host]["exit_code"] == 0
        assert subs[host]["output"]["who"] == expect[host]
        assert subs[host]["output"]["worker"].startswith(f"{host}-")
    assert subs["fan-b"]["state"] == "FAILURE" and subs["fan-b"]["exit_code"] == 3
    # the node's output summarises every host; the list endpoint shows the same rows
    assert node["output"]["fan-a.state"] == "SUCCESS"
    assert node["output"]["fan-b.exit_code"] == "3"
    assert node["output"]["fan-c.who"] == "gamma"
    r = api.get(f"/api/v1/task-instances/{node['id']}/sub-executions")
    assert r.status_code == 200 and r.json()["total"] == 3
    assert {s["id"] for s in r.json()["items"]} == {s["id"] for s in subs.values()}
    # a sub-execution names its FANOUT attempt and target; it is no task of the DAG
    one = task_instance(api, subs["fan-a"]["id"])
    assert one["parent_id"] == node["id"] and one["target"] == "fan-a"
    # no retry inside: exactly one sub-execution per host
    assert len(node["sub_executions"]) == 3


def test_fail_fast_kills_the_running_sibling(
    fleet: dict[str, WorkerServer], api: TestClient, timeout_scale: float
) -> None:
    command = 'if [ "${mode}" = fail ]; then sleep 0.5; exit 1; fi\nsleep 120\n'
    spec = {
        "name": "fan-fast",
        "tasks": [
            fan(
                "fan",
                {"hosts": ["fan-a", "fan-b"]},
                command,
                params={"mode": "slow"},
                target_params={"fan-a": {"mode": "fail"}},
                fail_fast=True,
            )
        ],
    }
    iid = run(api, spec)
    inst = wait_terminal(api, iid, 30 * timeout_scale)
    assert inst["state"] == "FAILURE", inst
    node_id = tasks(api, iid)["fan"]["id"]

    def sibling_final() -> dict[str, Any] | None:
        subs = by_host(task_instance(api, node_id)["sub_executions"])
        return subs if subs["fan-b"]["state"] not in ("DISPATCHED", "RUNNING") else None

    subs = wait_for(sibling_final, 15 * timeout_scale, 0.1, "the sibling to be killed")
    assert subs["fan-a"]["state"] == "FAILURE" and subs["fan-a"]["exit_code"] == 1
    assert subs["fan-b"]["state"] == "KILL", subs["fan-b"]
    assert "fail-fast" in task_instance(api, node_id)["reason"]


def test_explicit_hosts_then_a_downstream_task_runs(
    fleet: dict[str, WorkerServer], api: TestClient, timeout_scale: float
) -> None:
    spec = {
        "name": "fan-hosts",
        "tasks": [
            fan(
                "fan",
                {"hosts": ["fan-c", "fan-a"]},
                per_target_timeout_s=30,
                target_params={"fan-a": {"who": "first"}, "fan-c": {"who": "third"}},
            ),
            {
                "name": "after",
                "depends_on": ["fan"],
                "worker_group": GROUP,
                "command": "echo '${setValue(got='\"${fan_a_who}/${fan_c_who}\"')}'",
            },
        ],
    }
    iid = run(api, spec)
    inst = wait_terminal(api, iid, 60 * timeout_scale)
    assert inst["state"] == "SUCCESS", inst
    latest = tasks(api, iid)
    node = task_instance(api, latest["fan"]["id"])
    subs = by_host(node["sub_executions"])
    assert sorted(subs) == ["fan-a", "fan-c"]  # fan-b is alive but not a target
    assert all(s["state"] == "SUCCESS" for s in subs.values())
    assert subs["fan-a"]["worker_host"] == "fan-a" and subs["fan-c"]["worker_host"] == "fan-c"
    # the FANOUT's per-host outputs flow to its downstream task
    after = task_instance(api, latest["after"]["id"])
    assert after["output"]["got"] == "first/third", after
    # the sub-executions are not DAG tasks: the instance finished with its two tasks
    assert {"fan", "after"} <= set(latest)


def test_a_host_without_a_live_worker_fails_at_once_with_the_reason(
    fleet: dict[str, WorkerServer], api: TestClient, timeout_scale: float
) -> None:
    spec = {"name": "fan-ghost", "tasks": [fan("fan", {"hosts": ["fan-a", "ghost-host"]})]}
    iid = run(api, spec)
    inst = wait_terminal(api, iid, 30 * timeout_scale)
    assert inst["state"] == "FAILURE", inst
    subs = by_host(task_instance(api, tasks(api, iid)["fan"]["id"])["sub_executions"])
    assert subs["ghost-host"]["state"] == "FAILURE"
    assert subs["ghost-host"]["reason"] == "no live worker on host ghost-host"
    assert subs["fan-a"]["state"] == "SUCCESS"  # without fail-fast the others still run


def test_bad_fanout_fields_are_a_422_naming_the_field(api: TestClient) -> None:
    bad = {
        "name": "fan-bad",
        "tasks": [fan("fan", {"hosts": ["a"]}, target_params={"b": {"x": "1"}})],
    }
    r = api.post("/api/v1/workflows", json=bad)
    assert r.status_code == 422, r.text
    assert "task 'fan': target_params: names host(s) not in targets.hosts" in r.text


def subs_when(
    api: TestClient, iid: int, cond: Any, timeout: float, what: str
) -> dict[str, dict[str, Any]]:
    def check() -> dict[str, dict[str, Any]] | None:
        latest = tasks(api, iid).get("fan")
        if latest is None:
            return None
        subs = by_host(task_instance(api, latest["id"])["sub_executions"] or [])
        return subs if subs and cond(subs) else None

    return wait_for(check, timeout, 0.1, what)


def test_a_target_whose_worker_stops_fails_and_is_not_run_again(
    fleet: dict[str, WorkerServer], api: TestClient, timeout_scale: float
) -> None:
    command = 'if [ "${slow}" = yes ]; then sleep 120; fi\n'
    spec = {
        "name": "fan-lost",
        "tasks": [
            fan(
                "fan",
                {"hosts": ["fan-a", "fan-b"]},
                command,
                params={"slow": "no"},
                target_params={"fan-b": {"slow": "yes"}},
            )
        ],
    }
    iid = run(api, spec)
    subs_when(
        api,
        iid,
        lambda s: s["fan-b"]["state"] == "RUNNING" and s["fan-a"]["state"] == "SUCCESS",
        30 * timeout_scale,
        "fan-b to run and fan-a to finish",
    )
    fleet["fan-b"].stop(grace=0)  # its running task is handed back (NEED_FAULT_TOLERANCE)
    inst = wait_terminal(api, iid, 30 * timeout_scale)
    assert inst["state"] == "FAILURE", inst
    node = task_instance(api, tasks(api, iid)["fan"]["id"])
    subs = by_host(node["sub_executions"])
    assert subs["fan-b"]["state"] == "NEED_FAULT_TOLERANCE", subs["fan-b"]
    assert subs["fan-a"]["state"] == "SUCCESS"
    assert "fan-b" in node["reason"]
    # no retry inside: one row per target, and the DAG never re-offered the lost one
    rows = api.get(f"/api/v1/instances/{iid}/tasks").json()["items"]
    assert sorted(r["name"] for r in rows if r["name"].startswith("fan@")) == [
        "fan@fan-a",
        "fan@fan-b",
    ]
    # the instance's task list says which rows are sub-executions, of which node, on which host
    subs_listed = {r["target"]: r["parent_id"] for r in rows if r["parent_id"] is not None}
    assert subs_listed == {"fan-a": node["id"], "fan-b": node["id"]}, rows


def test_an_unclaimed_target_fails_after_its_timeout_and_doctor_leaves_it_alone(
    fleet: dict[str, WorkerServer],
    api: TestClient,
    settings: Settings,
    kz: KazooClient,
    sf: SessionFactory,
    zk: ZkClient,
    timeout_scale: float,
) -> None:
    # a registration that claims nothing: its host counts as live, but nobody takes its work
    paths = ZkPaths(settings.zk.root)
    kz.create(
        paths.worker(GROUP, "phantom-1"),
        json.dumps({"host": "phantom", "epoch": 10**9}).encode(),
        ephemeral=True,
        makepath=True,
    )
    spec = {"name": "fan-phantom", "tasks": [fan("fan", {"group": GROUP}, per_target_timeout_s=2)]}
    iid = run(api, spec)
    subs = subs_when(
        api,
        iid,
        lambda s: s["phantom"]["state"] == "DISPATCHED" and s["fan-a"]["state"] == "SUCCESS",
        30 * timeout_scale,
        "the phantom's sub-execution to wait in its host queue",
    )
    assert kz.get_children(paths.host_queue("phantom"))  # queued on its host, not the group
    findings, _ = doctor.run(sf, zk, do_repair=False)
    assert not [f for f in findings if subs["phantom"]["id"] in f.ids], findings
    inst = wait_terminal(api, iid, 30 * timeout_scale)
    assert inst["state"] == "FAILURE", inst
    node = task_instance(api, tasks(api, iid)["fan"]["id"])
    phantom = by_host(node["sub_executions"])["phantom"]
    assert phantom["state"] == "FAILURE"
    assert phantom["reason"].startswith("not started within 2s"), phantom
    assert kz.get_children(paths.host_queue("phantom")) == []
    assert "1 of 4 target(s) failed: phantom" in node["reason"]


def test_stop_kills_every_sub_execution(
    fleet: dict[str, WorkerServer], api: TestClient, timeout_scale: float
) -> None:
    iid = run(api, {"name": "fan-stop", "tasks": [fan("fan", {"group": GROUP}, "sleep 120\n")]})
    subs_when(
        api,
        iid,
        lambda s: len(s) == 3 and all(x["state"] == "RUNNING" for x in s.values()),
        30 * timeout_scale,
        "every target to run",
    )
    act(api, iid, "stop")
    inst = wait_terminal(api, iid, 30 * timeout_scale)
    assert inst["state"] == "STOP", inst
    subs = subs_when(
        api,
        iid,
        lambda s: all(x["state"] == "KILL" for x in s.values()),
        15 * timeout_scale,
        "every sub-execution to be killed",
    )
    assert sorted(subs) == sorted(HOSTS)
    assert tasks(api, iid)["fan"]["state"] == "KILL"
