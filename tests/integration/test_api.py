"""REST API against real PostgreSQL and ZooKeeper: workflows CRUD, runs, instances, logs, cluster,
auth and the error envelope (FastAPI TestClient on create_app)."""

from __future__ import annotations

import os
import select
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, text, update
from sqlalchemy import select as sa_select
from support import api_client

from api.app import create_app
from api.deps import TOKEN_FILE
from coord.zk import ZkClient
from core.settings import Settings
from db import runs
from db.engine import SessionFactory
from db.models import Command, TaskInstance, WorkflowInstance
from db.notify import CHANNEL_COMMAND

TOKEN = "test-token-0123456789"


@dataclass
class Api:
    client: TestClient
    sf: SessionFactory
    settings: Settings
    zk: ZkClient


@pytest.fixture
def api(settings: Settings, sf: SessionFactory, zk: ZkClient) -> Iterator[Api]:
    """The API on the test's own pool and ZooKeeper client, which the test reads too."""
    with api_client(settings, sf, zk, TOKEN) as client:
        yield Api(client, sf, settings, zk)


def spec(name: str = "etl", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": "test flow",
        "priority": "MEDIUM",
        "params": {"day": "2024-01-01"},
        "tasks": [
            {"name": "extract", "type": "SHELL", "command": "echo extract"},
            {"name": "load", "command": "echo load", "depends_on": ["extract"], "priority": "HIGH"},
        ],
    }
    body.update(extra)
    return body


def counts(sf: SessionFactory) -> tuple[int, ...]:
    """Rows in workflow_definition and workflow_version."""
    q = "SELECT (SELECT count(*) FROM workflow_definition), (SELECT count(*) FROM workflow_version)"
    with sf.begin() as s:
        return tuple(s.execute(text(q)).one())


def create(api: Api, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = api.client.post("/api/v1/workflows", json=body or spec())
    assert r.status_code == 201, r.text
    return dict(r.json())


def run(api: Api, workflow_id: int, body: dict[str, Any] | None = None) -> int:
    r = api.client.post(f"/api/v1/workflows/{workflow_id}/runs", json=body or {})
    assert r.status_code == 202, r.text
    return int(r.json()["instance_id"])


# -- auth, probes, error envelope ---------------------------------------------------------------


def test_token_required(api: Api) -> None:
    c = api.client
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        r = c.get("/api/v1/workflows", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    assert c.get("/health", headers={"Authorization": ""}).json() == {"status": "ok"}
    r = c.get("/ready", headers={"Authorization": ""})
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"postgresql": "ok", "zookeeper": "ok"}
    doc = c.get("/openapi.json", headers={"Authorization": ""}).json()  # open, documents the spec
    body = doc["paths"]["/api/v1/workflows"]["post"]["requestBody"]
    assert "tasks" in body["content"]["application/json"]["schema"]["properties"]


def test_token_file_created_0600_and_reused(settings: Settings, sf: SessionFactory) -> None:
    s = settings.model_copy(deep=True)
    s.api.token = ""
    create_app(s, sf, ZkClient(s.zk))
    path = s.data_path / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) >= 32
    app = create_app(s, sf, ZkClient(s.zk))  # a second start reads the same file
    with TestClient(app) as c:
        assert c.get("/api/v1/workflows").status_code == 401
        r = c.get("/api/v1/workflows", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text


def test_error_envelope(api: Api) -> None:
    c = api.client
    r = c.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = c.get("/api/v1/workflows/abc")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid"
    json_type = {"Content-Type": "application/json"}
    r = c.post("/api/v1/workflows", content=b"{not json", headers=json_type)
    assert r.status_code == 422 and "JSON" in r.json()["error"]["message"]
    r = c.get("/api/v1/workflows/12345")
    assert r.status_code == 404 and "12345" in r.json()["error"]["message"]


# -- workflows ----------------------------------------------------------------------------------


def test_workflow_crud_and_versions(api: Api) -> None:
    c = api.client
    wf = create(api)
    wid = wf["id"]
    assert (wf["name"], wf["version"], wf["latest_version"]) == ("etl", 1, 1)
    assert [t["name"] for t in wf["tasks"]] == ["extract", "load"]
    assert wf["tasks"][1]["priority"] == "HIGH" and wf["tasks"][0]["worker_group"] == "default"
    assert wf["created_at"].endswith("+00:00")

    before = counts(api.sf)
    r = c.post("/api/v1/workflows", json=spec())
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert counts(api.sf) == before

    create(api, spec("other"))
    r = c.get("/api/v1/workflows", params={"limit": 1, "offset": 1})
    assert r.json()["total"] == 2 and [w["name"] for w in r.json()["items"]] == ["other"]

    got = c.get(f"/api/v1/workflows/{wid}").json()
    assert got["id"] == wid and got["version"] == 1 and got["params"] == {"day": "2024-01-01"}

    changed = dict(got)
    changed["tasks"][0]["command"] = "echo v2"
    r = c.put(f"/api/v1/workflows/{wid}", json=changed)  # a GET answer can be PUT back
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    assert c.get(f"/api/v1/workflows/{wid}").json()["tasks"][0]["command"] == "echo v2"
    v1 = c.get(f"/api/v1/workflows/{wid}/versions/1").json()
    assert v1["tasks"][0]["command"] == "echo extract" and v1["latest_version"] == 2
    versions = c.get(f"/api/v1/workflows/{wid}/versions").json()
    assert versions["total"] == 2 and [v["version"] for v in versions["items"]] == [2, 1]
    assert c.get(f"/api/v1/workflows/{wid}/versions/3").status_code == 404

    assert c.put(f"/api/v1/workflows/{wid}", json=spec("other")).status_code == 409  # rename

    assert c.delete(f"/api/v1/workflows/{wid}").status_code == 204
    assert c.get(f"/api/v1/workflows/{wid}").status_code == 404
    assert c.get("/api/v1/workflows").json()["total"] == 1
    assert create(api)["id"] != wid  # the name is free again after a delete


def task(name: str, *deps: str, command: str | None = "x") -> dict[str, Any]:
    return {"name": name, "command": command, "depends_on": list(deps)}


# case -> (tasks, names the 422 message must mention)
INVALID = {
    "cycle": ([task("a", "b"), task("b", "a")], ["a", "b"]),
    "unknown_dependency": ([task("a", "ghost")], ["a", "ghost"]),
    "duplicate_name": ([task("twin"), task("twin")], ["twin"]),
    "empty": ([], ["task"]),
    "self_loop": ([task("narcissus", "narcissus")], ["narcissus"]),
    "missing_command": ([task("ok"), task("blank", command=None)], ["blank"]),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_spec_is_refused_and_nothing_written(api: Api, case: str) -> None:
    tasks, names = INVALID[case]
    existing = create(api, spec("existing"))
    before = counts(api.sf)
    r = api.client.post("/api/v1/workflows", json=spec("bad", tasks=tasks))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid" and err["details"]
    for name in names:
        assert name in err["message"], (name, err["message"])
    r = api.client.put(f"/api/v1/workflows/{existing['id']}", json=spec("existing", tasks=tasks))
    assert r.status_code == 422
    assert counts(api.sf) == before
    assert api.client.get("/api/v1/workflows").json()["total"] == 1


# -- runs and instances -------------------------------------------------------------------------


def test_run_writes_instance_and_command(api: Api, db_url: str) -> None:
    c = api.client
    wid = create(api)["id"]
    listener = psycopg2.connect(db_url.replace("postgresql+psycopg2", "postgresql"))
    listener.autocommit = True
    listener.cursor().execute(f"LISTEN {CHANNEL_COMMAND}")
    body: dict[str, Any] = dict(params={"day": "2024-02-02", "n": 3, "flag": True})
    body["priority"] = "high"
    body.update(worker_group="gpu", failure_strategy="CONTINUE", start_nodes=["load"])
    body.update(depend_mode="TASK_POST", dry_run=True)
    iid = run(api, wid, body)
    try:
        assert select.select([listener], [], [], 5)[0], "no NOTIFY on the command channel"
        listener.poll()
        assert listener.notifies and listener.notifies[0].channel == CHANNEL_COMMAND
    finally:
        listener.close()
    with api.sf.begin() as s:
        inst = s.get(WorkflowInstance, iid)
        assert inst is not None
        assert (inst.state, inst.priority, inst.version) == ("SUBMITTED", 1, 1)
        assert inst.command_type == "START_PROCESS"
        assert inst.params == {"day": "2024-02-02", "n": "3", "flag": "true"}
        opts = inst.run_options
        assert opts["worker_group"] == "gpu" and opts["start_nodes"] == ["load"]
        assert opts["dry_run"] is True and opts["depend_mode"] == "TASK_POST"
        cmd = s.scalars(sa_select(Command).where(Command.instance_id == iid)).one()
        assert (cmd.type, cmd.workflow_id, cmd.instance_id) == ("START_PROCESS", wid, iid)
        assert (cmd.version, cmd.priority) == (1, 1)
        assert cmd.params == inst.params

    got = c.get(f"/api/v1/instances/{iid}").json()
    assert got["state"] == "SUBMITTED" and got["priority"] == "HIGH" and got["tasks"] == []
    assert got["workflow_name"] == "etl" and got["submit_time"].endswith("+00:00")
    assert run(api, wid) > iid  # an empty body is fine; the spec's priority is the default
    listed = c.get("/api/v1/instances", params={"workflow_id": wid}).json()
    assert listed["total"] == 2 and listed["items"][0]["priority"] == "MEDIUM"
    assert c.get("/api/v1/instances", params={"state": "submitted"}).json()["total"] == 2
    assert c.get("/api/v1/instances", params={"state": "RUNNING,FAILURE"}).json()["total"] == 0
    assert c.get("/api/v1/instances", params={"state": "BOGUS"}).status_code == 422

    r = c.post(f"/api/v1/workflows/{wid}/runs", json={"colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["error"]["message"]
    r = c.post(f"/api/v1/workflows/{wid}/runs", json={"start_nodes": ["ghost"]})
    assert r.status_code == 422 and "ghost" in r.json()["error"]["message"]
    assert c.post("/api/v1/workflows/999999/runs", json={}).status_code == 404

    r = c.delete(f"/api/v1/workflows/{wid}")
    assert r.status_code == 409 and r.json()["error"]["details"]["active_instances"] == 2
    with api.sf.begin() as s:
        s.execute(update(WorkflowInstance).values(state="SUCCESS"))
    assert c.delete(f"/api/v1/workflows/{wid}").status_code == 204
    assert c.get(f"/api/v1/instances/{iid}").status_code == 200  # instances outlive a delete


def test_run_is_one_transaction(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    wid = create(api)["id"]

    def broken(s: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(runs, "notify_masters", broken)
    r = api.client.post(f"/api/v1/workflows/{wid}/runs", json={})
    assert r.status_code == 500
    assert r.json()["error"] == {
        "code": "internal",
        "message": "internal server error",
        "details": None,
    }
    assert "boom" not in r.text and "Traceback" not in r.text
    with api.sf.begin() as s:
        assert s.scalar(sa_select(func.count()).select_from(WorkflowInstance)) == 0
        assert s.scalar(sa_select(func.count()).select_from(Command)) == 0


def _add_attempts(api: Api, iid: int, log_path: str | None) -> tuple[int, int]:
    """Two attempts of task 'extract': 1 FAILED on h1, 2 RUNNING on h2 writing ``log_path``."""
    common = {"workflow_instance_id": iid, "name": "extract", "type": "SHELL"}
    first = TaskInstance(**common, attempt=1, state="FAILURE", host="h1", exit_code=1)
    first.spec = {"command": "echo", "env": {"SECRET": "x"}}
    second = TaskInstance(**common, attempt=2, state="RUNNING", host="h2", worker_id="w2")
    second.spec, second.log_path = {"command": "echo"}, log_path
    with api.sf.begin() as s:
        s.add_all([first, second])
        s.flush()
        s.execute(text("UPDATE task_instance SET start_time = now()"))
        return first.id, second.id


def test_instance_tasks_and_log_window(api: Api) -> None:
    c = api.client
    wid = create(api)["id"]
    iid = run(api, wid)
    log_file = api.settings.log_path / str(wid) / str(iid) / "x.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("one\ntwo\nthree\nfour\npart")
    t1, t2 = _add_attempts(api, iid, str(log_file))

    got = c.get(f"/api/v1/instances/{iid}").json()
    assert [(t["id"], t["attempt"], t["state"], t["host"]) for t in got["tasks"]] == [
        (t1, 1, "FAILURE", "h1"),
        (t2, 2, "RUNNING", "h2"),
    ]
    assert set(got["tasks"][0]) >= {
        "id",
        "name",
        "type",
        "state",
        "attempt",
        "host",
        "start_time",
        "end_time",
        "exit_code",
    }
    assert got["tasks"][0]["exit_code"] == 1 and got["tasks"][0]["start_time"].endswith("+00:00")
    tasks = c.get(f"/api/v1/instances/{iid}/tasks").json()
    assert tasks["total"] == 2 and "env" not in tasks["items"][0]["spec"]
    ti = c.get(f"/api/v1/task-instances/{t1}").json()
    assert ti["spec"] == {"command": "echo"} and ti["priority"] == "MEDIUM"
    assert c.get("/api/v1/task-instances/999999").status_code == 404

    url = f"/api/v1/task-instances/{t2}/log"
    w = c.get(url, params={"skip": 0, "limit": 2}).json()
    assert w == {"lines": ["one", "two"], "next": 2, "complete": False, "available": True}
    w = c.get(url, params={"skip": 2}).json()  # the unfinished last line is held back
    assert w["lines"] == ["three", "four"] and w["next"] == 4 and not w["complete"]
    with api.sf.begin() as s:
        s.execute(update(TaskInstance).where(TaskInstance.id == t2).values(state="SUCCESS"))
    w = c.get(url, params={"skip": 4}).json()
    assert w["lines"] == ["part"] and w["next"] == 5 and w["complete"]
    w = c.get(url, params={"skip": 0, "limit": 2}).json()
    assert not w["complete"]  # finished, but lines remain past this window
    r = c.get(f"{url}/download")
    assert r.status_code == 200 and r.text == "one\ntwo\nthree\nfour\npart"

    w = c.get(f"/api/v1/task-instances/{t1}/log").json()  # no log yet
    assert w == {"lines": [], "next": 0, "complete": True, "available": False}
    assert c.get(f"/api/v1/task-instances/{t1}/log/download").status_code == 404


def test_log_outside_log_dir_is_refused(api: Api) -> None:
    c = api.client
    iid = run(api, create(api)["id"])
    inside_link = api.settings.log_path / "evil.log"
    inside_link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("/etc/passwd", inside_link)
    bad_paths = [
        "/etc/passwd",
        str(api.settings.log_path / ".." / ".." / "etc" / "passwd"),
        str(inside_link),
    ]
    t1, _ = _add_attempts(api, iid, None)
    for bad in bad_paths:
        with api.sf.begin() as s:
            s.execute(update(TaskInstance).where(TaskInstance.id == t1).values(log_path=bad))
        for suffix in ("log", "log/download"):
            r = c.get(f"/api/v1/task-instances/{t1}/{suffix}")
            assert r.status_code == 403, (bad, r.text)
            assert r.json()["error"]["code"] == "forbidden"
            assert "root:" not in r.text


# -- cluster ------------------------------------------------------------------------------------


def test_cluster_reads_zookeeper(api: Api) -> None:
    zk, paths = api.zk, api.zk.paths
    m_epoch = zk.register(paths.master("m1"), {"host": "hm", "pid": 11, "start_time": "t"}, 41)
    w_data = {"host": "hw", "pid": 22, "groups": ["default", "gpu"], "capacity": 4, "load": 1}
    w_epoch = zk.register(paths.worker("default", "w1"), w_data, 42)
    zk.register(paths.worker("gpu", "w1"), w_data, 42)
    zk.client.ensure_path(paths.queue("default"))
    for i in range(3):
        zk.client.create(paths.queue_entry("default", f"2_{i:019d}_2_{i:019d}"), b"")
    r = api.client.get("/api/v1/cluster")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(m["id"], m["epoch"], m["host"]) for m in body["masters"]] == [("m1", m_epoch, "hm")]
    (w,) = body["workers"]
    assert (w["id"], w["epoch"], w["capacity"], w["load"]) == ("w1", w_epoch, 4, 1)
    assert sorted(w["groups"]) == ["default", "gpu"]
    assert body["queues"] == {"default": 3}
    assert body["leases"] == 0 and body["cron_leader"] is None
