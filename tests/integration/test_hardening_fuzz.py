"""Issue 18's property-based run: schemathesis (the ``st`` command of the test extra) against the
live API (``dagkeeper api``'s uvicorn server on real PostgreSQL and ZooKeeper) over every
operation of /openapi.json for a bounded time. No answer may be a 5xx, and every 4xx must be
the documented error shape. The same run by hand against a standalone cluster:

    .venv/bin/st run http://127.0.0.1:12345/openapi.json \\
        -H "Authorization: Bearer $(cat .dagkeeper/api-token)" \\
        --checks not_a_server_error,dagkeeper_error_shape --max-time 60 --seed 18 -w 1
    (with SCHEMATHESIS_HOOKS=test_hardening_fuzz and PYTHONPATH=tests/integration)

This module is also that hooks module: it registers the ``dagkeeper_error_shape`` check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn

from api.app import create_app
from api.server import ApiServer
from core.settings import Settings
from ops.localserver import free_port, wait_for

TOKEN = "fuzz-token-0123456789"
HERE = Path(__file__).resolve().parent
MAX_TIME_S = 50  # the run's whole time budget (schemathesis repeats fuzzing until it is spent)
ERROR_KEYS = {"code", "message", "details"}


@schemathesis.check
def dagkeeper_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is {"error": {"code", "message", "details"}} with a non-empty message and no
    traceback."""
    if not 400 <= response.status_code < 500 or case.method.upper() == "HEAD":
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"a {response.status_code} answer that is not JSON") from None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict) or set(err) != ERROR_KEYS:
        raise AssertionError(f"a {response.status_code} answer not in the error shape: {body!r}")
    if not isinstance(err["message"], str) or not err["message"] or "Traceback" in response.text:
        raise AssertionError(f"a {response.status_code} answer without a message: {body!r}")
    return True


@pytest.fixture
def live_api(settings: Settings) -> Iterator[str]:
    """The API daemon's own server on a free port (bootstrap token, no failure limit)."""
    s = settings.model_copy(deep=True)
    s.api.token = TOKEN
    s.api.auth_fail_limit = 10**9  # negated-auth cases must not lock the fuzzer out
    port = free_port()
    config = uvicorn.Config(create_app(s), host="127.0.0.1", port=port, log_level="warning")
    server = ApiServer(config)
    thread = threading.Thread(target=server.run, name="fuzz-api", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, 0.05, "the API server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def seed(base: str) -> None:
    """A few rows of every kind, so that generated ids (1, 2, ...) reach existing resources."""
    with httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        for path, body in (
            ("/datasources", {"name": "dw", "kind": "POSTGRESQL", "host": "db.example"}),
            ("/task-groups", {"name": "warehouse", "capacity": 2}),
            ("/workflows", {"name": "etl", "tasks": [{"name": "a", "command": "echo a"},
                            {"name": "b", "command": "echo b", "depends_on": ["a"]}]}),
            ("/workflows/1/runs", {"params": {"day": "20260101"}}),
            ("/workflows/1/runs", {"backfill": {"start": "2026-01-01", "end": "2026-01-02"}}),
            ("/schedules", {"workflow_id": 1, "cron": "0 3 * * *"}),
        ):  # fmt: skip
            r = c.post(path, json=body)
            assert r.status_code in (201, 202), r.text


def test_no_5xx_and_every_4xx_in_the_error_shape_over_every_route(
    live_api: str, tmp_path: Path, timeout_scale: float
) -> None:
    seed(live_api)
    report = tmp_path / "run.json"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": Path(__file__).stem,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    argv = [
        str(Path(sys.executable).parent / "st"), "run", f"{live_api}/openapi.json",
        "-H", f"Authorization: Bearer {TOKEN}",
        "--checks", "not_a_server_error,dagkeeper_error_shape",
        "--max-time", str(MAX_TIME_S), "--seed", "18", "-w", "1",
        "--request-timeout", "20", "--suppress-health-check", "all",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    began = time.monotonic()
    run = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=(MAX_TIME_S + 90) * timeout_scale
    )
    took = time.monotonic() - began
    tail = "\n".join(run.stdout.splitlines()[-40:])
    print(f"\nschemathesis: {took:.0f} s, exit {run.returncode}\n{tail}")
    assert report.exists(), run.stderr[-3000:]
    data = json.loads(report.read_text())
    totals = summary(data)
    print(f"schemathesis totals: {totals}")
    assert totals["operations"] >= 40, totals
    assert totals["cases"] >= 1000, totals
    assert totals["with_failures"] == 0 and totals["errored"] == 0, tail
    assert run.returncode == 0, tail


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """Operations tested, cases generated and failures, from schemathesis' JSON run report."""
    cases = data["test_cases"]
    return {
        "operations": data["operations"]["tested"],
        "cases": cases["generated"],
        "with_failures": cases["with_failures"],
        "errored": cases["errored"] + len(data["errors"]),
        "seconds": round(float(data["running_time"]), 1),
        "stop_reason": data["stop_reason"],
    }


class _Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code, self._body = status, body
        self.text = json.dumps(body)

    def json(self) -> Any:
        return self._body


class _Case:
    method = "GET"


def test_the_error_shape_check_refuses_what_is_not_the_documented_shape() -> None:
    ok = {"error": {"code": "invalid", "message": "name: required", "details": None}}
    assert dagkeeper_error_shape(None, _Response(422, ok), _Case()) is True
    assert dagkeeper_error_shape(None, _Response(200, {"x": 1}), _Case()) is None
    for bad in ({"detail": "Not Found"}, {"error": {"code": "x", "message": ""}},
                {"error": {"code": "x", "message": "", "details": None}}, ["error"]):  # fmt: skip
        with pytest.raises(AssertionError):
            dagkeeper_error_shape(None, _Response(404, bad), _Case())
