"""The Python SDK on a real cluster (PostgreSQL, ZooKeeper, a master, workers, the API served
over HTTP): the diamond written with ``>>`` submits (again: a no-op; changed: a new version),
runs with ``wait=True`` and returns SUCCESS with its tasks in dependency order; a Mission of three
serial Kunlun Tasks (FANOUT) over three worker hosts runs with each host's parameters in its
logs; a Mission as a sub-workflow; an invalid DAG raises ``Invalid`` naming the task."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from support import Cluster

from api.server import build_server
from core.settings import Settings
from dagkeeper import Channel, Client, Invalid, Mission, Shell, Task, Workflow
from ops.localserver import free_port
from worker.server import WorkerServer

TOKEN = "sdk-test-token"
HOSTS = ("kl-a", "kl-b", "kl-c")
GROUP = "kunlun"


class Fleet(Cluster):
    """A master, a default-group worker and one worker per host in HOSTS (group GROUP)."""

    def start_host_worker(self, host: str) -> WorkerServer:
        s = self.settings.model_copy(deep=True)
        s.worker.host, s.worker.groups, s.worker.capacity = host, [GROUP], 2
        w = WorkerServer(s)
        w.start()
        self._serve(f"worker-{host}", w.serve_forever, lambda: w.stop(grace=0))
        return w


@pytest.fixture
def api_url(settings: Settings, timeout_scale: float) -> Iterator[str]:
    """The API served by uvicorn on a free port (in a thread), as users reach it."""
    settings.api.token, settings.api.host, settings.api.port = TOKEN, "127.0.0.1", free_port()
    server = build_server(settings)
    t = threading.Thread(target=server.run, name="api", daemon=True)
    t.start()
    try:
        assert server.ready.wait(30 * timeout_scale), "the API did not start"
        yield f"http://127.0.0.1:{settings.api.port}"
    finally:
        server.should_exit = True
        t.join(timeout=15)


@pytest.fixture
def fleet(settings: Settings, api_url: str) -> Iterator[Fleet]:
    f = Fleet(settings)
    try:
        f.start_master()
        f.start_worker()
        for h in HOSTS:
            f.start_host_worker(h)
        yield f
    finally:
        f.close()


@pytest.fixture
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url, TOKEN) as c:
        yield c


def at(t: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(t[key])


def test_the_diamond_submits_runs_and_returns_its_tasks_in_order(
    fleet: Fleet, client: Client, timeout_scale: float
) -> None:
    with Workflow("sdk_diamond", params={"greeting": "hi"}, client=client) as wf:
        a = Shell("a", "echo a ${greeting}")
        b = Shell("b", "echo b")
        c = Shell("c", "echo c")
        d = Shell("d", "echo d")
        a >> [b, c] >> d
    first = wf.submit()
    assert (first.action, first.version) == ("created", 1)
    assert wf.submit().action == "unchanged"  # same content: nothing stored
    run = wf.run(wait=True, timeout=60 * timeout_scale)
    assert run.state == "SUCCESS", run.data
    assert run.succeeded and run.finished
    tasks = {t["name"]: t for t in run.tasks}
    assert sorted(tasks) == ["a", "b", "c", "d"]
    assert all(t["state"] == "SUCCESS" for t in tasks.values()), run.tasks
    assert [t["name"] for t in run.tasks][0] == "a" and [t["name"] for t in run.tasks][-1] == "d"
    for up, down in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")):
        assert at(tasks[up], "end_time") <= at(tasks[down], "start_time"), (up, down)
    assert wf.submit().action == "unchanged"  # run() submitted it unchanged too
    lines = [str(line) for line in run.logs()]
    assert "[a] a hi" in lines and "[d] d" in lines, lines
    d.fields["command"] = "echo d2"
    again = wf.submit()
    assert (again.action, again.id, again.version) == ("new_version", first.id, 2)


def test_a_mission_of_three_serial_tasks_fans_out_with_each_hosts_params(
    fleet: Fleet, client: Client, timeout_scale: float
) -> None:
    ports = {"kl-a": 5401, "kl-b": 5402, "kl-c": 5403}
    echo = 'echo "step={step} host=$DAGKEEPER_FANOUT_TARGET port=${{port}} node=${{node}}"'
    with Workflow("sdk_expand", client=client) as wf:
        steps = [
            Task(
                step,
                echo.format(step=step),
                [Channel(h, port=p, node=f"{step}-{h}") for h, p in ports.items()],
                timeout_s=60,
            )
            for step in ("export", "import", "replay")
        ]
        Mission("expand", steps)
    run = wf.run(wait=True, timeout=90 * timeout_scale)
    assert run.state == "SUCCESS", run.data
    nodes = {t["name"]: t for t in run.tasks if t.get("parent_id") is None}
    subs = [t for t in run.tasks if t.get("parent_id") is not None]
    assert sorted(nodes) == ["export", "import", "replay"]
    # serial: each task starts after the previous one ended
    assert at(nodes["export"], "end_time") <= at(nodes["import"], "start_time")
    assert at(nodes["import"], "end_time") <= at(nodes["replay"], "start_time")
    assert len(subs) == 9, subs
    for sub in subs:
        step, host = sub["name"].split("@")
        assert sub["host"] == host == sub["target"], sub
        text = "\n".join(client.log_lines(int(sub["id"])))
        expect = f"step={step} host={host} port={ports[host]} node={step}-{host}"
        assert expect in text, (sub["name"], text)


def test_a_mission_as_a_sub_workflow_runs_as_a_child_instance(
    fleet: Fleet, client: Client, timeout_scale: float
) -> None:
    with Workflow("sdk_parent", client=client) as wf:
        prep = Shell("prep", "echo prep")
        with Mission("restore", subworkflow=True) as m:
            Shell("copy", "echo copy")
            Shell("replay", "echo replay")
        prep >> m
    run = wf.run(wait=True, timeout=60 * timeout_scale)
    assert run.state == "SUCCESS", run.data
    node = run.task("restore")
    assert node["type"] == "SUB_PROCESS" and node["state"] == "SUCCESS"
    child = client.instance(int(node["child_instance_id"]))
    assert child["workflow_name"] == "sdk_parent.restore" and child["state"] == "SUCCESS"
    assert [t["name"] for t in sorted(child["tasks"], key=lambda t: t["id"])] == ["copy", "replay"]
    assert client.find_workflow("sdk_parent.restore") is not None


def test_an_invalid_dag_raises_invalid_naming_the_task(client: Client) -> None:
    with Workflow("sdk_bad", client=client) as wf:
        a, b = Shell("a", "true"), Shell("b", "true")
        a >> b >> a
        Shell("empty", "  ")
    with pytest.raises(Invalid) as err:
        wf.submit()
    e = err.value
    assert e.status == 422 and {"a", "b", "empty"} <= set(e.tasks), e.problems
    assert "task 'empty': command" in str(e), str(e)
    assert "cycle" in str(e).lower(), str(e)
    assert client.find_workflow("sdk_bad") is None
