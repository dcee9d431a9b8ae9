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
from support import Cluster, run, wait_terminal

from ops.localserver import PostgresServer

pytest_plugins = ["sql_servers"]

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


def test_python_sql_http_workflow_through_the_api(
    cluster: Cluster,
    api: TestClient,
    pg_server: PostgresServer,
    target: str,
    http_url: str,
    timeout_scale: float,
) -> None:
    cluster.start_master()
    cluster.start_worker()
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
    iid = run(api, spec)
    inst = wait_terminal(api, iid, 60 * timeout_scale)
    states = {t["name"]: t["state"] for t in inst["tasks"]}
    assert inst["state"] == "SUCCESS", states
    assert Recorder.paths == ["/fruit/plum"]
    for t in inst["tasks"]:
        log = api.get(f"/api/v1/task-instances/{t['id']}/log").json()
        text = "\n".join(log["lines"])
        assert PASSWORD not in text
        if t["name"] == "lookup":
            assert "plum" in text and "***" in text
