"""What the integration tests share: masters and workers serving in threads of the test process
(``Cluster``), the API as a TestClient, the REST flows (create, start, act, read) and the waits on
them. The fixtures built on these (``cluster``, ``api``, ``start_worker``...) are in conftest.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from harness import group_alive
from kazoo.client import KazooClient

from api.app import create_app
from coord.zk import ZkClient
from core.settings import Settings
from core.states import WORKFLOW_TERMINAL
from db.engine import SessionFactory
from master.server import MasterServer
from ops.localserver import wait_for
from worker.server import WorkerServer

TOKEN = "integration-test-token"


@dataclass
class _Served:
    """A server the cluster stops on ``close``; ``thread`` runs its serve loop until ``ev``."""

    stop: Callable[[], None]
    server: object = None
    ev: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self, name: str, loop: Callable[[threading.Event], None]) -> None:
        self.thread = threading.Thread(target=loop, args=(self.ev,), name=name, daemon=True)
        self.thread.start()


class Cluster:
    """Masters and workers serving in threads; ``close`` stops them in reverse order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._running: list[_Served] = []

    def _serve(
        self, name: str, loop: Callable[[threading.Event], None], stop: Callable[[], None]
    ) -> None:
        served = _Served(stop)
        served.run(name, loop)
        self._running.append(served)

    def start_master(self, master_id: str | None = None, serve: bool = True) -> MasterServer:
        """A started master, serving unless ``serve`` is False (then ``serve(m)`` or the test's
        own ``run_once`` calls drive it); ``close`` stops it either way."""
        m = MasterServer(self.settings, master_id=master_id)
        m.start()
        if serve:
            self._serve("master", m.serve_forever, m.stop)
        else:
            self._running.append(_Served(m.stop, server=m))
        return m

    def serve(self, m: MasterServer) -> None:
        """Start serving a master made with ``start_master(serve=False)``."""
        served = next(x for x in self._running if x.server is m and x.thread is None)
        served.run("master", m.serve_forever)

    def start_worker(self, **worker: Any) -> WorkerServer:
        """A worker serving in a thread; keyword arguments override its worker settings (host,
        groups, capacity, kill_grace_s...); without any it runs on the cluster's settings as they
        are now."""
        s = self.settings
        if worker:
            s = s.model_copy(update={"worker": s.worker.model_copy(update=worker)})
        w = WorkerServer(s)
        w.start()
        self._serve(w.worker_id, w.serve_forever, lambda: w.stop(grace=0))
        return w

    def close(self) -> None:
        for served in reversed(self._running):
            served.ev.set()
            if served.thread is not None:
                served.thread.join(timeout=15)
            served.stop()
        self._running.clear()


def api_client(
    settings: Settings,
    sf: SessionFactory | None = None,
    zk: ZkClient | None = None,
    token: str = TOKEN,
) -> TestClient:
    """A TestClient on ``create_app`` for a copy of ``settings`` whose bootstrap token is
    ``token``, sent on every request (enter it with ``with``). Without ``sf``/``zk`` the app makes
    and closes its own."""
    s = settings.model_copy(deep=True)
    s.api.token = token
    client = TestClient(create_app(s, sf, zk))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def expire_session(hosts: str, client_id: tuple[int, bytes]) -> None:
    """Expire a ZooKeeper session from outside: a second client attaches to it and closes it."""
    thief = KazooClient(hosts=hosts, client_id=client_id)
    thief.start(timeout=10)
    thief.stop()
    thief.close()


def group_gone(pgid: int) -> bool:
    """No live (non-zombie) process is left in the process group ``pgid``."""
    return not group_alive(pgid)


# --- REST flows -----------------------------------------------------------------------------------


def sh(name: str, command: str, **extra: Any) -> dict[str, Any]:
    """A SHELL task of a workflow spec."""
    return {"name": name, "command": command, **extra}


def create(api: TestClient, spec: dict[str, Any]) -> int:
    """POST /workflows; the new workflow's id."""
    r = api.post("/api/v1/workflows", json=spec)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def start(api: TestClient, wid: int, **body: Any) -> int:
    """POST /workflows/{wid}/runs with ``body``; the new instance's id."""
    r = api.post(f"/api/v1/workflows/{wid}/runs", json=body)
    assert r.status_code == 202, r.text
    return int(r.json()["instance_id"])


def run(api: TestClient, spec: dict[str, Any], **body: Any) -> int:
    """Create the workflow and start it; the instance's id."""
    return start(api, create(api, spec), **body)


def act(api: TestClient, iid: int, action: str, expect: int = 202) -> dict[str, Any]:
    """POST /instances/{iid}/{action} (stop, pause, resume, rerun, recover-failed)."""
    r = api.post(f"/api/v1/instances/{iid}/{action}")
    assert r.status_code == expect, r.text
    return dict(r.json())


def instance(api: TestClient, iid: int) -> dict[str, Any]:
    r = api.get(f"/api/v1/instances/{iid}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def task_instance(api: TestClient, ti_id: int) -> dict[str, Any]:
    """GET /task-instances/{id}: one attempt as the API shows it."""
    r = api.get(f"/api/v1/task-instances/{ti_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def tasks(api: TestClient, iid: int) -> dict[str, dict[str, Any]]:
    """Latest attempt per task name."""
    out: dict[str, dict[str, Any]] = {}
    for t in instance(api, iid)["tasks"]:
        if t["name"] not in out or t["attempt"] > out[t["name"]]["attempt"]:
            out[t["name"]] = t
    return out


def attempts(api: TestClient, iid: int, name: str) -> list[dict[str, Any]]:
    """Every attempt of task ``name``, oldest first."""
    r = api.get(f"/api/v1/instances/{iid}/tasks")
    return sorted((t for t in r.json()["items"] if t["name"] == name), key=lambda t: t["attempt"])


def pid_of(api: TestClient, ti_id: int) -> int:
    r = api.get(f"/api/v1/task-instances/{ti_id}")
    pid = r.json()["pid"]
    assert pid, r.text
    return int(pid)


def log_text(api: TestClient, ti_id: int) -> str:
    """The attempt's log as the API serves it now, lines joined."""
    r = api.get(f"/api/v1/task-instances/{ti_id}/log")
    assert r.status_code == 200, r.text
    return "\n".join(r.json()["lines"])


def log_lines(api: TestClient, ti_id: int, timeout: float) -> list[str]:
    """The attempt's whole log once the API says it is complete."""

    def complete() -> list[str] | None:
        r = api.get(f"/api/v1/task-instances/{ti_id}/log")
        assert r.status_code == 200, r.text
        body = r.json()
        return list(body["lines"]) if body["complete"] else None

    return [ln.rstrip("\n") for ln in wait_for(complete, timeout, 0.05, f"log of {ti_id}")]


# --- waits ----------------------------------------------------------------------------------------


def wait_terminal(api: TestClient, iid: int, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any]:
        inst = instance(api, iid)
        return inst if inst["state"] in WORKFLOW_TERMINAL else {}

    return wait_for(done, timeout, 0.05, f"instance {iid} to finish")


def wait_state(api: TestClient, iid: int, state: str, timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        inst = instance(api, iid)
        return inst if inst["state"] == state else None

    return wait_for(reached, timeout, 0.05, f"instance {iid} to be {state}")


def wait_task(api: TestClient, iid: int, name: str, state: str, timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        t = tasks(api, iid).get(name)
        return t if t is not None and t["state"] == state else None

    return wait_for(reached, timeout, 0.05, f"task {name} of {iid} to be {state}")
