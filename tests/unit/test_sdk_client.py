"""The SDK client's decisions on a fake transport (no server): error answers become typed errors
carrying the API's message and field paths, connection errors are retried until the deadline
(a POST whose connection broke after sending is not), and url/token come from arguments, the
environment or the 0600 file ``dagkeeper login`` writes. The SDK mirrors the server's states."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import states as server_states
from dagkeeper import Client, Invalid, NotFound, Unauthorized, Unreachable, config
from dagkeeper import states as sdk_states
from dagkeeper.errors import Conflict, ServerError


def client(handler: Any, **kw: Any) -> Client:
    return Client("http://dk.test:1", "tok", transport=httpx.MockTransport(handler), **kw)


def answer(status: int, code: str, message: str, details: Any = None) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return httpx.Response(status, json=body)


def test_error_answers_become_typed_errors_with_the_apis_message() -> None:
    problems = [
        {"code": "cycle", "message": "cycle: a -> b -> a", "tasks": ["a", "b"]},
        {"code": "field", "message": "task 'c': command: is required", "tasks": ["c"],
         "field": ["tasks", 2, "command"]},
    ]  # fmt: skip
    table = {
        "/api/v1/workflows": answer(422, "invalid", "cycle: a -> b -> a; task 'c': ...", problems),
        "/api/v1/workflows/9": answer(404, "not_found", "workflow 9 not found"),
        "/api/v1/workflows/8": answer(409, "conflict", "a workflow named 'x' already exists"),
        "/api/v1/workflows/7": answer(401, "unauthorized", "invalid API token"),
        "/api/v1/workflows/6": httpx.Response(500, text="<html>boom</html>"),
    }
    c = client(lambda req: table[req.url.path])
    with pytest.raises(Invalid) as inv:
        c.create_workflow({"name": "x", "tasks": []})
    assert inv.value.status == 422 and inv.value.code == "invalid"
    assert inv.value.tasks == ["a", "b", "c"] and inv.value.fields == ["tasks.2.command"]
    assert str(inv.value).startswith("cycle: a -> b -> a")
    with pytest.raises(NotFound, match="workflow 9 not found"):
        c.workflow(9)
    with pytest.raises(Conflict, match="already exists"):
        c.workflow(8)
    with pytest.raises(Unauthorized, match="invalid API token"):
        c.workflow(7)
    with pytest.raises(ServerError, match="boom"):
        c.workflow(6)


def test_request_validation_details_name_the_field_path() -> None:
    details = [{"loc": ["body", "params", "x"], "message": "bad", "type": "t"}]
    c = client(lambda req: answer(422, "invalid", "body.params.x: bad", details))
    with pytest.raises(Invalid) as inv:
        c.run(1, {"x": 1})
    assert inv.value.fields == ["body.params.x"] and inv.value.tasks == []


def test_connection_errors_are_retried_until_they_pass() -> None:
    calls = []

    def flaky(req: httpx.Request) -> httpx.Response:
        calls.append(req.method)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=req)
        return httpx.Response(202, json={"instance_id": 5})

    run = client(flaky).run(1)
    assert run.id == 5 and calls == ["POST", "POST", "POST"]


def test_retries_stop_at_the_deadline_with_one_clear_error() -> None:
    def down(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=req)

    started = time.monotonic()
    with pytest.raises(Unreachable) as err:
        client(down, retry_deadline_s=0.5).workflows()
    took = time.monotonic() - started
    assert 0.3 <= took < 3, took
    assert "cannot reach the dagkeeper API at http://dk.test:1" in str(err.value)
    assert "gave up after 0.5 s" in str(err.value)


def test_a_post_that_may_have_been_carried_out_is_not_sent_twice() -> None:
    calls = []

    def broken(req: httpx.Request) -> httpx.Response:
        calls.append(req.method)
        raise httpx.ReadTimeout("timed out", request=req)

    with pytest.raises(Unreachable, match="may or may not have been carried out"):
        client(broken, retry_deadline_s=5).run(1)
    assert calls == ["POST"]


def test_a_503_is_retried_for_reads() -> None:
    answers = [answer(503, "database_unavailable", "PostgreSQL is not reachable")]

    def handler(req: httpx.Request) -> httpx.Response:
        return answers.pop() if answers else httpx.Response(200, json={"id": 4, "state": "RUNNING"})

    assert client(handler).instance(4)["state"] == "RUNNING"


def test_lists_are_read_page_by_page() -> None:
    rows = [{"id": i, "name": f"w{i}"} for i in range(2500)]

    def handler(req: httpx.Request) -> httpx.Response:
        limit, offset = int(req.url.params["limit"]), int(req.url.params["offset"])
        return httpx.Response(200, json={"items": rows[offset : offset + limit], "total": 2500})

    assert [w["id"] for w in client(handler).workflows(limit=2100)] == list(range(2100))


def test_url_and_token_come_from_arguments_then_environment_then_the_login_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "home" / "client.json"
    monkeypatch.setenv(config.ENV_CONFIG, str(path))
    monkeypatch.delenv(config.ENV_URL, raising=False)
    monkeypatch.delenv(config.ENV_TOKEN, raising=False)
    assert config.resolve() == config.ClientConfig(config.DEFAULT_URL, None)
    config.write_file("http://saved:1/", "saved-token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": "http://saved:1/", "token": "saved-token"}
    got = config.resolve()
    assert (got.url, got.token, got.token_from) == ("http://saved:1", "saved-token", str(path))
    monkeypatch.setenv(config.ENV_TOKEN, "env-token")
    got = config.resolve(url="http://arg:2")
    assert (got.url, got.url_from, got.token, got.token_from) == (
        "http://arg:2",
        "argument",
        "env-token",
        "environment",
    )
    c = Client()
    assert c.url == "http://saved:1" and c.token == "env-token"
    path.write_text("{not json")
    with pytest.raises(config.DefinitionError, match="cannot read the client config"):
        config.resolve()


def test_the_sdk_states_mirror_the_servers() -> None:
    assert [s.value for s in sdk_states.WorkflowState] == [
        s.value for s in server_states.WorkflowState
    ]
    assert [s.value for s in sdk_states.TaskState] == [s.value for s in server_states.TaskState]
    assert [s.value for s in sdk_states.BackfillState] == [
        s.value for s in server_states.BackfillState
    ]
    assert {s.value for s in sdk_states.WORKFLOW_TERMINAL} == {
        s.value for s in server_states.WORKFLOW_TERMINAL
    }
    assert {s.value for s in sdk_states.TASK_TERMINAL} == {
        s.value for s in server_states.TASK_TERMINAL
    }
    assert {s.value for s in sdk_states.TASK_SUCCESSFUL} == {
        s.value for s in server_states.TASK_SUCCESSFUL
    }
