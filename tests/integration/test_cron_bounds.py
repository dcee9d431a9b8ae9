"""Cron bounds through the real API on real PostgreSQL + ZooKeeper: never-firing and year-restricted
expressions are a 422 within 1 s on POST /schedules and GET /cron/preview (one rule, one message),
an empty window names ``end``, a start at the end of time names ``start``, Quartz's '?' rule and
the start/step and wrap-around fixes as the API answers them."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

NEVER = [
    "* * * 29 2 ? 2021-2023",
    "0 0 0 ? 2 2#5 2030-2040",
    "0 0 0 31W 2,4,6,9,11 ?",
    "0 2 31 2 *",
]


@pytest.fixture
def workflow(api: TestClient) -> int:
    r = api.post(
        "/api/v1/workflows", json={"name": "bounds", "tasks": [{"name": "a", "command": "true"}]}
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _timed(call: Any, *args: Any, **kwargs: Any) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = call(*args, **kwargs)
    return r, time.monotonic() - t0


def _error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    err: dict[str, Any] = r.json()["error"]
    assert "Traceback" not in err["message"]
    return err


@pytest.mark.parametrize("expr", NEVER)
def test_never_firing_expressions_are_422_within_a_second(
    api: TestClient, workflow: int, expr: str
) -> None:
    body = {"workflow_id": workflow, "cron": expr, "timezone": "Europe/Berlin"}
    post, post_s = _timed(api.post, "/api/v1/schedules", json=body)
    prev, prev_s = _timed(api.get, "/api/v1/cron/preview", params={"expr": expr})
    assert post_s < 1.0 and prev_s < 1.0, (post_s, prev_s)
    p, q = _error(post), _error(prev)
    assert p["details"] == [{"code": "never_fires", "field": "cron", "expr": expr}]
    assert q["details"] == [{"code": "never_fires", "field": "expr", "expr": expr}]
    # one rule, one message: only the field named differs
    assert p["message"].removeprefix("cron: ") == q["message"].removeprefix("expr: ")
    assert p["message"] == f"cron: {expr!r} never fires (no fire time within 100 years)"
    assert api.get("/api/v1/schedules", params={"workflow_id": workflow}).json()["total"] == 0


def test_window_whose_end_is_before_its_start_names_end(api: TestClient, workflow: int) -> None:
    body = {
        "workflow_id": workflow,
        "cron": "0 3 * * *",
        "start": "2030-06-01T00:00:00Z",
        "end": "2030-05-01T00:00:00Z",
    }
    err = _error(api.post("/api/v1/schedules", json=body))
    assert err["message"] == "end: the end of the window must be after its start"
    assert err["details"] == [{"code": "invalid_window", "field": "end"}]
    created = api.post("/api/v1/schedules", json={**body, "end": None})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    err = _error(api.put(f"/api/v1/schedules/{sid}", json={"end": "2030-05-01T00:00:00Z"}))
    assert err["details"] == [{"code": "invalid_window", "field": "end"}]


def test_start_at_the_end_of_time_names_start(api: TestClient, workflow: int) -> None:
    r, took = _timed(
        api.get,
        "/api/v1/cron/preview",
        params={
            "expr": "0 3 * * *",
            "timezone": "Pacific/Kiritimati",
            "start": "9999-12-31T23:00:00Z",
        },
    )
    err = _error(r)
    assert took < 1.0
    assert err["message"].startswith("start: 9999-12-31T23:00:00+00:00 is outside")
    assert err["details"] == [{"code": "out_of_range", "field": "start"}]
    body = {"workflow_id": workflow, "cron": "0 3 * * *", "start": "9999-12-31T23:00:00Z"}
    err = _error(api.post("/api/v1/schedules", json=body))
    assert err["details"] == [{"code": "out_of_range", "field": "start"}]


@pytest.mark.parametrize(
    ("expr", "times"),
    [
        ("59/15 * * * *", ["2026-01-01T00:59:00+00:00", "2026-01-01T01:59:00+00:00"]),
        ("0 59/15 * * * ?", ["2026-01-01T00:59:00+00:00", "2026-01-01T01:59:00+00:00"]),
        ("0 0 0 ? * 7/2", ["2026-01-03T00:00:00+00:00", "2026-01-10T00:00:00+00:00"]),
        ("0 0 1 Nov-Mar *", ["2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"]),
        ("0 0 0 L-1W,L-1 * ?", ["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00"]),
    ],
)
def test_preview_of_fixed_expressions(api: TestClient, expr: str, times: list[str]) -> None:
    params = {"expr": expr, "count": 2, "start": "2026-01-01T00:00:00Z"}
    r = api.get("/api/v1/cron/preview", params=params)
    assert r.status_code == 200, r.text
    assert [i["time"] for i in r.json()["items"]] == times


def test_quartz_question_mark_rule_is_a_422(api: TestClient, workflow: int) -> None:
    r = api.post("/api/v1/schedules", json={"workflow_id": workflow, "cron": "0 0 * * * *"})
    err = _error(r)
    assert "cron" in err["message"]
    assert "Quartz requires '?' in exactly one of day-of-month and day-of-week" in err["message"]
    prev = _error(api.get("/api/v1/cron/preview", params={"expr": "0 43 9 ? * SAT,SUN,L"}))
    assert prev["message"].startswith("expr: ")
    assert "'L' with other days of the week" in prev["message"]
    # the next fire of an accepted schedule is the first after now
    ok = api.post("/api/v1/schedules", json={"workflow_id": workflow, "cron": "0 0 * * * ?"})
    assert ok.status_code == 201, ok.text
    nxt = datetime.fromisoformat(ok.json()["next_fire_time"])
    assert nxt.minute == 0 and nxt.second == 0
