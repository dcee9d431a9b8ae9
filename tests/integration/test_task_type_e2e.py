"""End to end through the REST API with a real master and worker: a datasource and a workflow of
PYTHON -> SQL -> HTTP are created by REST; outputs flow downstream as parameters (a SQL bound
parameter, an HTTP URL); the task logs served by the API never show the datasource password."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from core.states import WORKFLOW_TERMINAL
from master.server import MasterServer
from ops.localserver import PostgresServer, wait_for
from worker.server import WorkerServer

pytest_plugins = ["sql_servers"]

TOKEN = "e2e-token"
PASSWORD = "e2e-Pw-4411"


class Recorder(BaseHTTPRequestHandler):
    paths: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.paths.append(self.path)
        body = f"seen {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_url() -> Iterator[str]:
    Recorder.paths = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def daemons(settings: Settings) -> Iterator[None]:
    stops: list[tuple[threading.Event, threading.Thread, Any]] = []
    for server in (MasterServer(settings), WorkerServer(settings)):
        server.start()
        ev = threading.Event()
        t = threading.Thread(target=server.serve_forever, args=(ev,), daemon=True)
        t.start()
        stops.append((ev, t, server))
    yield
    for ev, t, server in reversed(stops):
        ev.set()
        t.join(15)
        server.stop(grace=0) if isinstance(server, WorkerServer) else server.stop()


def test_python_sql_http_workflow_through_the_api(
    settings: Settings,
    daemons: None,
    pg_server: PostgresServer,
    target: str,
    http_url: str,
    timeout_scale: float,
) -> None:
    s = settings.model_copy(deep=True)
    s.api.token = TOKEN
    with TestClient(create_app(s)) as api:
        api.headers["Authorization"] = f"Bearer {TOKEN}"
        r = api.post("/api/v1/datasources", json={
            "name": "target", "url": f"postgresql://postgres:{PASSWORD}@127.0.0.1:"
            f"{pg_server.port}/{target}"})  # fmt: skip
        assert r.status_code == 201, r.text
        spec = {
            "name": "typed",
            "tasks": [
                {"name": "pick", "type": "PYTHON",
                 "script": "print('${setValue(min_id=3)}')"},
                {"name": "lookup", "type": "SQL", "depends_on": ["pick"], "datasource": "target",
                 "sql": "SELECT name AS fruit FROM items WHERE id = ${min_id}",
                 "output_first_row": True},
                {"name": "notify", "type": "HTTP", "depends_on": ["lookup"],
                 "url": http_url + "/fruit/${fruit}", "expect_body_contains": "plum"},
            ],
        }  # fmt: skip
        r = api.post("/api/v1/workflows", json=spec)
        assert r.status_code == 201, r.text
        r = api.post(f"/api/v1/workflows/{r.json()['id']}/runs", json={})
        assert r.status_code == 202, r.text
        iid = r.json()["instance_id"]

        def done() -> dict[str, Any]:
            inst = api.get(f"/api/v1/instances/{iid}").json()
            return inst if inst["state"] in WORKFLOW_TERMINAL else {}

        inst = wait_for(done, 60 * timeout_scale, 0.1, f"instance {iid}")
        states = {t["name"]: t["state"] for t in inst["tasks"]}
        assert inst["state"] == "SUCCESS", states
        assert Recorder.paths == ["/fruit/plum"]
        for t in inst["tasks"]:
            log = api.get(f"/api/v1/task-instances/{t['id']}/log").json()
            text = "\n".join(log["lines"])
            assert PASSWORD not in text
            if t["name"] == "lookup":
                assert "plum" in text and "***" in text
