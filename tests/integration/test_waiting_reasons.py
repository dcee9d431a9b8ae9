"""Every waiting reason from a real situation on a real cluster (a master and a worker in threads,
PostgreSQL, ZooKeeper), as GET /instances/{id} shows it: upstream not done, no live worker in a
group, a full task group held by another instance, a queue at its high-water mark (and the entry
queued before it), a dependency not satisfied, a serial wait, a retry delay, and a failover
while the owning master is gone."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_support import Served, api_client, ok, run
from fastapi.testclient import TestClient

from core.settings import MasterSettings, Settings
from master.server import MasterServer
from ops.localserver import wait_for


@pytest.fixture
def wsettings(settings: Settings) -> Settings:
    master = MasterSettings(heartbeat_interval_s=1, queue_high_water=1)
    return settings.model_copy(update={"master": master})


@pytest.fixture
def served(wsettings: Settings) -> Iterator[Served]:
    c = Served(wsettings)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def api(wsettings: Settings) -> Iterator[TestClient]:
    with api_client(wsettings) as client:
        yield client


def reasons(api: TestClient, iid: int) -> dict[str, dict[str, Any]]:
    """Task name -> its waiting_reason (attempts and tasks not started alike)."""
    inst = ok(api.get(f"/api/v1/instances/{iid}"))
    out = {t["name"]: t["waiting_reason"] for t in inst["tasks"] if t.get("waiting_reason")}
    out.update({t["name"]: t["waiting_reason"] for t in inst["not_started"]})
    return out


def wait_code(api: TestClient, iid: int, task: str, code: str, timeout: float) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        r = reasons(api, iid).get(task)
        return r if r is not None and r["code"] == code else None

    try:
        return wait_for(seen, timeout, 0.1, f"{task} of instance {iid} waiting with {code}")
    except TimeoutError:
        raise AssertionError(f"{task}: {reasons(api, iid)}") from None


def hold(flag: Path) -> str:
    return f'while [ ! -e "{flag}" ]; do sleep 0.05; done'


def test_each_waiting_reason_from_a_real_situation(
    served: Served, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    t = 20 * timeout_scale
    flag = tmp_path / "release"
    served.master()
    served.worker(groups=["busy"], capacity=1)

    # no live worker in group "nobody"; its successor waits for it
    lonely = run(api, {"name": "lonely", "tasks": [
        {"name": "first", "command": "true", "worker_group": "nobody"},
        {"name": "second", "command": "true", "depends_on": ["first"], "worker_group": "nobody"},
    ]})  # fmt: skip
    r = wait_code(api, lonely, "first", "NO_LIVE_WORKER", t)
    assert r["message"] == "no live worker in group nobody", r
    r = wait_code(api, lonely, "second", "UPSTREAM_NOT_DONE", t)
    assert "first" in r["message"], r
    # the cluster view says it per group
    cluster = ok(api.get("/api/v1/cluster"))
    assert cluster["waiting"]["nobody"] == {
        "code": "NO_LIVE_WORKER",
        "message": "1 queued; no live worker in group nobody",
    }, cluster

    # one worker slot in group "busy", a queue high-water mark of 1: one attempt runs, one is
    # queued, the third waits in PostgreSQL
    busy = run(api, {"name": "busy", "tasks": [
        {"name": f"b{i}", "command": hold(flag), "worker_group": "busy"} for i in range(3)
    ]})  # fmt: skip

    def split() -> dict[str, str] | None:
        codes = {n: w["code"] for n, w in reasons(api, busy).items()}
        return codes if sorted(codes.values()) == ["QUEUED", "QUEUE_HIGH_WATER"] else None

    codes = wait_for(split, t, 0.1, "one queued and one held attempt")
    held = next(n for n, c in codes.items() if c == "QUEUE_HIGH_WATER")
    queued = next(n for n, c in codes.items() if c == "QUEUED")
    assert "position 1" in reasons(api, busy)[held]["message"], reasons(api, busy)
    assert "high-water mark (1/1)" in reasons(api, busy)[held]["message"]
    assert "position 1 of 1 in group busy" in reasons(api, busy)[queued]["message"]

    # a task group of one slot, held by another instance
    ok(api.post("/api/v1/task-groups", json={"name": "warehouse", "capacity": 1}), 201)
    owner = run(api, {"name": "owner", "tasks": [
        {"name": "own", "command": hold(flag), "worker_group": "nobody", "task_group": "warehouse"},
    ]})  # fmt: skip
    wait_code(api, owner, "own", "NO_LIVE_WORKER", t)
    later = run(api, {"name": "later", "tasks": [
        {"name": "wants", "command": "true", "task_group": "warehouse"},
    ]})  # fmt: skip
    r = wait_code(api, later, "wants", "TASK_GROUP_FULL", t)
    assert r["message"] == f"task group warehouse is full (1/1), held by instance(s) {owner}", r

    # a dependency that no run satisfies names the missing workflow
    ok(api.post("/api/v1/workflows", json={"name": "upstream-wf", "tasks": [
        {"name": "x", "command": "true"}]}), 201)  # fmt: skip
    dep = run(api, {"name": "dep", "tasks": [{
        "name": "wait", "type": "DEPENDENT", "check_interval_s": 0.5,
        "dependencies": {"groups": [{"items": [{"workflow": "upstream-wf", "window": "today"}]}]},
    }]})  # fmt: skip
    r = wait_code(api, dep, "wait", "DEPENDENCY_NOT_SATISFIED", t)
    assert "upstream-wf" in r["message"], r

    # serial runs: the second waits behind the first
    spec = {"name": "serial", "execution_type": "SERIAL_WAIT", "tasks": [
        {"name": "s", "command": "true", "worker_group": "nobody"}]}  # fmt: skip
    wid = ok(api.post("/api/v1/workflows", json=spec), 201)["id"]
    s1 = ok(api.post(f"/api/v1/workflows/{wid}/runs", json={}), 202)["instance_id"]
    s2 = ok(api.post(f"/api/v1/workflows/{wid}/runs", json={}), 202)["instance_id"]
    r = wait_code(api, s2, "s", "SERIAL_WAIT", t)
    assert f"behind instance {s1}" in r["message"], r

    # a failed attempt with a retry to come says when
    retry = run(api, {"name": "retry", "tasks": [
        {"name": "flaky", "command": "exit 1", "retries": 1, "retry_interval_s": 3600,
         "worker_group": "busy"}]})  # fmt: skip
    flag.touch()  # free the busy worker so that the flaky task runs (and fails) now
    r = wait_code(api, retry, "flaky", "RETRY_DELAY", t)
    assert r["message"].startswith("retry 1 of 1 at "), r


def test_failover_in_progress_while_the_owning_master_is_gone(
    wsettings: Settings, api: TestClient, timeout_scale: float
) -> None:
    m = MasterServer(wsettings)
    m.start()
    stop = threading.Event()
    loop = threading.Thread(target=m.serve_forever, args=(stop,), daemon=True)
    loop.start()
    try:
        iid = run(api, {"name": "orphan", "tasks": [
            {"name": "q", "command": "true", "worker_group": "nobody"}]})  # fmt: skip
        wait_code(api, iid, "q", "NO_LIVE_WORKER", 20 * timeout_scale)
    finally:
        stop.set()
        loop.join(timeout=15)
        m.stop()  # its session closes: no master is left to adopt the instance
    r = wait_code(api, iid, "q", "FAILOVER", 20 * timeout_scale)
    assert f"master {m.master_id}@{m.epoch} is gone" in r["message"], r


def test_doctor_reports_tasks_waiting_longer_than_the_threshold(
    served: Served, api: TestClient, wsettings: Settings, timeout_scale: float
) -> None:
    served.master()
    iid = run(api, {"name": "stuck", "tasks": [
        {"name": "q", "command": "true", "worker_group": "nobody"}]})  # fmt: skip
    wait_code(api, iid, "q", "NO_LIVE_WORKER", 20 * timeout_scale)
    env = {
        "DAGKEEPER_DB__URL": wsettings.db.url,
        "DAGKEEPER_ZK__HOSTS": wsettings.zk.hosts,
        "DAGKEEPER_ZK__ROOT": wsettings.zk.root,
        "DAGKEEPER_ZK__AUTH_PASSWORD": wsettings.zk.auth_password,
        "DAGKEEPER_ZK__SESSION_TIMEOUT_S": "4",
        "DAGKEEPER_MASTER__HEARTBEAT_INTERVAL_S": "1",
        "DAGKEEPER_WORKER__HEARTBEAT_INTERVAL_S": "1",
        "DAGKEEPER_WORKER__REPORT_RETRY_DEADLINE_S": "2",
        "PATH": "/usr/bin:/bin",
    }

    def doctor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ops.cli", "doctor", *args], env=env,
                              capture_output=True, text=True, timeout=60 * timeout_scale)  # fmt: skip

    out = doctor("--waiting-over", "0", "--json")
    doc = json.loads(out.stdout)
    (w,) = [w for w in doc["waiting"] if w["instance_id"] == iid]
    assert w["task"] == "q" and w["code"] == "NO_LIVE_WORKER" and w["waiting_s"] > 0, doc
    text_out = doctor("--waiting-over", "0").stdout
    assert f"instance {iid} task q: NO_LIVE_WORKER" in text_out, text_out
    assert "no task has waited longer than 3600s" in doctor("--waiting-over", "3600").stdout
