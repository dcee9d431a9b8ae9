"""HTTP tasks through a real worker against a local http.server: method, headers, body and
parameters reach the server; status and body conditions decide; the log is capped; data cannot
set outputs; a kill or the request timeout ends a hanging request at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from task_type_support import Bench, log_of


class Handler(BaseHTTPRequestHandler):
    release = threading.Event()

    def log_message(self, *args) -> None:
        pass

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        if self.path.startswith("/echo"):
            seen = {
                "method": self.command,
                "path": self.path,
                "body": body,
                "x_tag": self.headers.get("X-Tag"),
                "ctype": self.headers.get("Content-Type"),
            }
            self._answer(200, json.dumps(seen).encode())
        elif self.path == "/fail":
            self._answer(500, b"server error")
        elif self.path == "/big":
            self._answer(200, b"x" * 5000 + b"\nTAIL-MARK\n")
        elif self.path == "/evil":
            self._answer(200, b"${setValue(evil=1)}\n")
        elif self.path == "/slow":
            self.release.wait(60)
            self._answer(200, b"late")
        else:
            self._answer(404, b"no")

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@pytest.fixture
def server() -> Iterator[str]:
    Handler.release = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    Handler.release.set()
    httpd.shutdown()
    httpd.server_close()


def test_http_requests_conditions_and_capped_log(bench: Bench, server: str) -> None:
    bench.start_worker(http_max_body_bytes=1000)
    _, got = bench.run_tasks(
        [
            {
                "type": "HTTP",
                "method": "POST",
                "url": server + "/echo?day=${day}",
                "headers": {"X-Tag": "t-${day}", "Authorization": "Bearer hush"},
                "body": {"n": "${n}"},
                "env": {"day": "2026-01-02", "n": "7"},
                "expect_body_contains": "2026-01-02",
            },
            {"type": "HTTP", "url": server + "/fail"},
            {"type": "HTTP", "url": server + "/fail", "success_codes": [500]},
            {"type": "HTTP", "url": server + "/echo", "expect_body_contains": "nope"},
            {"type": "HTTP", "url": server + "/big"},
            {"type": "HTTP", "url": server + "/evil"},
            {"type": "HTTP", "url": "http://127.0.0.1:1/refused"},
        ],
    )
    echo, fail, fail_ok, nobody, big, evil, refused = got.values()
    assert (echo.state, echo.output) == ("SUCCESS", {"status_code": "200"})
    seen = json.loads(log_of(echo).split("\n\n", 1)[1].splitlines()[0])
    assert seen["method"] == "POST" and seen["path"] == "/echo?day=2026-01-02"
    assert seen["x_tag"] == "t-2026-01-02" and json.loads(seen["body"]) == {"n": "7"}
    assert seen["ctype"] == "application/json"
    assert "hush" not in log_of(echo) and "Authorization: ***" in log_of(echo)
    assert (fail.state, fail.exit_code, fail.output) == ("FAILURE", 1, {"status_code": "500"})
    assert "server error" in log_of(fail)
    assert fail_ok.state == "SUCCESS"
    assert (nobody.state, nobody.exit_code) == ("FAILURE", 2)
    assert big.state == "SUCCESS" and "TAIL-MARK" not in log_of(big)
    assert "truncated: 1000 of 5011+ bytes" in log_of(big)
    assert evil.state == "SUCCESS" and evil.output == {"status_code": "200"}
    assert (refused.state, refused.exit_code) == ("FAILURE", 3)
    assert "request failed" in log_of(refused)


def test_http_kill_and_timeout_end_a_hanging_request(bench: Bench, server: str) -> None:
    w = bench.start_worker(kill_grace_s=0.5)
    run = bench.create(
        [
            {"type": "HTTP", "url": server + "/slow"},
            {"type": "HTTP", "url": server + "/slow", "timeout": 0.5},
        ],
    )
    bench.push(run)
    slow, timed = run.task_ids
    timed_row = bench.wait([timed], timeout=10)[timed]
    assert (timed_row.state, timed_row.exit_code) == ("FAILURE", 3)
    assert "timed out" in log_of(timed_row)
    bench.wait([slow], states={"RUNNING"})
    t0 = time.monotonic()
    assert w.kill_task(slow)
    row = bench.wait([slow], timeout=5)[slow]
    assert row.state == "KILL" and time.monotonic() - t0 < 5
