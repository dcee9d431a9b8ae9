"""FANOUT on real PostgreSQL, ZooKeeper, a master and three workers on distinct hosts, through the
REST API: one sub-execution per target with its own parameters on the right host; the node fails
if one target fails (the others' results shown), fail-fast kills a running sibling, an explicit
host list (a dead host fails at once), and a downstream task runs after a successful FANOUT."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_diamond import Cluster, api, instance, wait_terminal  # noqa: F401
from test_semantics import run, tasks

from common.localserver import wait_for
from common.settings import Settings
from worker.server import WorkerServer

HOSTS = ("fan-a", "fan-b", "fan-c")
GROUP = "fanout"
# each sub-execution says which parameter it got, on which worker, for which target
ECHO = (
    'echo "param=${who} worker=${DAGKEEPER_WORKER_ID} target=${DAGKEEPER_FANOUT_TARGET}"\n'
    "echo '${setValue(who='\"${who}\"')}'\n"
    "echo '${setValue(worker='\"${DAGKEEPER_WORKER_ID}\"')}'\n"
)


class Fleet(Cluster):
    """A master and one worker per host in HOSTS, all serving GROUP."""

    def start_host_worker(self, host: str) -> WorkerServer:
        s = self.settings.model_copy(deep=True)
        s.worker.host, s.worker.groups, s.worker.capacity = host, [GROUP], 2
        w = WorkerServer(s)
        w.start()
        self._serve(f"worker-{host}", w.serve_forever, lambda: w.stop(grace=0))
        return w


@pytest.fixture
def fleet(settings: Settings, timeout_scale: float) -> Iterator[dict[str, WorkerServer]]:
    f = Fleet(settings)
    try:
        f.start_master()
        workers = {h: f.start_host_worker(h) for h in HOSTS}
        yield workers
    finally:
        f.close()


def fan(name: str, targets: dict[str, Any], command: str = ECHO, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "FANOUT", "command": command, "targets": targets, **extra}


def attempt(api: TestClient, ti_id: int) -> dict[str, Any]:
    r = api.get(f"/api/v1/task-instances/{ti_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def by_host(subs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["host"]: s for s in subs}


def log_text(api: TestClient, ti_id: int) -> str:
    r = api.get(f"/api/v1/task-instances/{ti_id}/log")
    assert r.status_code == 200, r.text
    return "\n".join(r.json()["lines"])


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
    node = attempt(api, tasks(api, iid)["fan"]["id"])
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
    one = attempt(api, subs["fan-a"]["id"])
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
        subs = by_host(attempt(api, node_id)["sub_executions"])
        return subs if subs["fan-b"]["state"] not in ("DISPATCHED", "RUNNING") else None

    subs = wait_for(sibling_final, 15 * timeout_scale, 0.1, "the sibling to be killed")
    assert subs["fan-a"]["state"] == "FAILURE" and subs["fan-a"]["exit_code"] == 1
    assert subs["fan-b"]["state"] == "KILL", subs["fan-b"]
    assert "fail-fast" in attempt(api, node_id)["reason"]


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
    node = attempt(api, latest["fan"]["id"])
    subs = by_host(node["sub_executions"])
    assert sorted(subs) == ["fan-a", "fan-c"]  # fan-b is alive but not a target
    assert all(s["state"] == "SUCCESS" for s in subs.values())
    assert subs["fan-a"]["worker_host"] == "fan-a" and subs["fan-c"]["worker_host"] == "fan-c"
    # the FANOUT's per-host outputs flow to its downstream task
    after = attempt(api, latest["after"]["id"])
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
    subs = by_host(attempt(api, tasks(api, iid)["fan"]["id"])["sub_executions"])
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
