"""Issue 18 through the API on real PostgreSQL and ZooKeeper: every input that used to be a 500,
or was accepted and then failed later, is a 422 naming the field (or a 413, 409) at once; the
body limit, the one parameter rule, names in any script, OPTIONS, local /docs, /alerts and
/backfills lists, datasource checks and the standalone demo's own spec."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from coord.zk import ZkClient
from core.settings import Settings
from db.engine import make_engine, make_session_factory
from ops import demo, standalone

TOKEN = "hardening-token"
V1 = "/api/v1"


@pytest.fixture
def api(settings: Settings, db_url: str) -> Iterator[TestClient]:
    s = settings.model_copy(deep=True)
    s.api.token = TOKEN
    engine = make_engine(db_url)
    zk = ZkClient(s.zk, name="test-api")
    zk.start()
    try:
        with TestClient(create_app(s, make_session_factory(engine), zk)) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            yield client
    finally:
        zk.stop()
        engine.dispose()


def flow(name: str = "w", **extra: Any) -> dict[str, Any]:
    return {"name": name, "tasks": [{"name": "t", "command": "true"}], **extra}


def created(api: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(f"{V1}/workflows", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def refused(r: httpx.Response, status: int = 422) -> dict[str, Any]:
    """The documented error shape, no traceback; returns the error object."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message", "details"} and isinstance(err["message"], str)
    assert "Traceback" not in r.text
    return dict(err)


def raw_post(api: TestClient, path: str, text: str, method: str = "POST") -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return api.request(method, f"{V1}{path}", content=text.encode(), headers=headers)


def locs(err: dict[str, Any]) -> list[str]:
    return [".".join(map(str, d.get("loc") or d.get("field") or [])) for d in err["details"] or []]


# -- 500s that are 422s naming the field ---------------------------------------------------------


def test_nul_in_any_stored_string_is_a_422_naming_it(api: TestClient) -> None:
    wid = created(api, flow())["id"]
    nul = "a\u0000b"
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/workflows", flow(description=nul), "body.description"),
        ("POST", "/workflows", {"name": "w2", "tasks": [{"name": "t", "command": nul}]},
         "body.tasks.0.command"),
        ("POST", "/workflows", flow("w3", params={nul: "v"}), "body.params.a\\u0000b"),
        ("POST", "/workflows", flow("w4", params={"k": nul}), "body.params.k"),
        ("PUT", f"/workflows/{wid}", flow(description=nul), "body.description"),
        ("POST", f"/workflows/{wid}/runs", {"params": {"k": nul}}, "body.params.k"),
        ("POST", "/task-groups", {"name": "g", "capacity": 1, "description": nul},
         "body.description"),
        ("POST", "/datasources", {"name": "d", "kind": "POSTGRESQL", "host": nul},
         "body.host"),
        ("POST", "/datasources", {"name": "d", "kind": "POSTGRESQL", "host": "h",
                                  "description": nul}, "body.description"),
    ]  # fmt: skip
    for method, path, body, loc in cases:
        err = refused(api.request(method, f"{V1}{path}", json=body))
        assert loc in locs(err), (path, err)
        assert "NUL" in err["message"]
    err = refused(api.get(f"{V1}/workflows", params={"name": nul}))
    assert locs(err) == ["query.name"]
    err = refused(
        raw_post(api, "/workflows", '{"name": "w", "description": "\\ud800", "tasks": []}')
    )
    assert locs(err) == ["body.description"] and "surrogate" in err["message"]


@pytest.mark.parametrize("value", [{}, [], None, True, 9, "URGENT"])
def test_priority_that_is_not_a_name_is_a_422_on_workflow_and_task(
    api: TestClient, value: Any
) -> None:
    wid = created(api, flow())["id"]
    for method, path in (("POST", "/workflows"), ("PUT", f"/workflows/{wid}")):
        err = refused(api.request(method, f"{V1}{path}", json=flow(priority=value)))
        assert "priority: must be one of HIGHEST, HIGH, MEDIUM, LOW, LOWEST" in err["message"]
        task = {"name": "t", "command": "true", "priority": value}
        err = refused(api.request(method, f"{V1}{path}", json=flow(tasks=[task])))
        assert "task 't': priority: must be one of HIGHEST" in err["message"]
    assert api.get(f"{V1}/workflows/{wid}").json()["priority"] == "MEDIUM"


@pytest.mark.parametrize(
    ("text", "loc"),
    [
        ('{"name": "w", "timeout_s": Infinity, "tasks": []}', "body.timeout_s"),
        ('{"name": "w", "timeout_s": 1e400, "tasks": []}', "body.timeout_s"),
        ('{"name": "w", "tasks": [{"name": "t", "command": "x", "retry_interval_s": Infinity}]}',
         "body.tasks.0.retry_interval_s"),
        ('{"name": "w", "tasks": [{"name": "h", "type": "HTTP", "url": "http://x",'
         ' "timeout": Infinity}]}', "body.tasks.0.timeout"),
        ('{"name": "w", "tasks": [], "x": NaN}', "body.x"),
        ('{"name": "w", "tasks": [], "x": 99999999999999999999}', "body.x"),
    ],
)  # fmt: skip
def test_non_finite_or_overflowing_numbers_are_a_422(api: TestClient, text: str, loc: str) -> None:
    err = refused(raw_post(api, "/workflows", text))
    assert locs(err) == [loc]
    assert api.get(f"{V1}/workflows").json()["total"] == 0


def test_times_postgresql_cannot_store_are_a_422_naming_the_field(api: TestClient) -> None:
    wid = created(api, flow())["id"]
    for field, value in (
        ("start", "2026-01-01T00:00:00+19:54"),
        ("end", "9999-12-31T23:59:59-23:59"),
        ("start", "0001-01-01T00:00:00+01:00"),
    ):
        err = refused(api.post(f"{V1}/schedules", json={"workflow_id": wid, "cron": "0 3 * * *",
                                                        field: value}))  # fmt: skip
        assert locs(err) == [f"body.{field}"], err
    err = refused(api.get(f"{V1}/cron/preview", params={"expr": "0 3 * * *",
                                                        "start": "9999-12-31T23:00:00Z"}))  # fmt: skip
    assert err["message"].startswith("start:")
    err = refused(api.get(f"{V1}/ui/instances", params={"since": "2026-01-01T00:00:00+19:54"}))
    assert err["code"] == "invalid"  # the safety net: PostgreSQL's refusal is a 422, not a 500


# -- accepted, then failing: refused at submit ---------------------------------------------------


def test_backfill_dates_and_timeouts_that_would_overflow_are_refused_at_submit(
    api: TestClient,
) -> None:
    wid = created(api, flow())["id"]
    bf = {"backfill": {"dates": ["2026-01-02T00:00:00Z", "0001-01-01T00:00:00-01:00"]}}
    err = refused(api.post(f"{V1}/workflows/{wid}/runs", json=bf))
    assert locs(err) == ["body.backfill.dates.1"]
    err = refused(api.post(f"{V1}/workflows", json=flow("t1", timeout_s=1e15)))
    assert "timeout_s: must be at most 31622400 seconds" in err["message"]
    task = {"name": "t", "command": "true", "timeout_s": 1e15}
    err = refused(api.post(f"{V1}/workflows", json=flow("t2", tasks=[task])))
    assert "task 't': timeout_s: must be at most" in err["message"]
    assert api.get(f"{V1}/instances").json()["total"] == 0


@pytest.mark.parametrize(
    ("backfill", "expected"),
    [
        ({"dates": ["2026-01-01T00:00:00Z"], "start": "2026-01-01", "end": "2026-01-03"},
         "give either dates or start and end, not both"),
        ({"dates": ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00"]},
         "dates[1] (2026-01-01T01:00:00+01:00) is the same time as dates[0]"),
        ({"dates": [0]}, "must be an ISO 8601 date-time"),
        ({"dates": ["1700000000"]}, "must be an ISO 8601 date-time"),
        ({"dates": ["1960-01-01T00:00:00Z"]}, "is outside 1970-01-01 .. 9998-01-01"),
        ({"start": "2026-01-01", "end": "2026-01-03", "dats": []},
         "unknown field 'dats'; did you mean 'dates'?"),
    ],
)  # fmt: skip
def test_ambiguous_or_non_date_backfills_are_refused(
    api: TestClient, backfill: dict[str, Any], expected: str
) -> None:
    wid = created(api, flow())["id"]
    err = refused(api.post(f"{V1}/workflows/{wid}/runs", json={"backfill": backfill}))
    assert expected in err["message"], err
    assert api.get(f"{V1}/backfills").json()["total"] == 0


def test_param_values_over_the_limit_and_bodies_over_the_limit(api: TestClient) -> None:
    big = "x" * (64 * 1024 + 1)
    err = refused(api.post(f"{V1}/workflows", json=flow(params={"big": big})))
    assert "params.big: the value is longer than 65536 bytes" in err["message"]
    wid = created(api, flow())["id"]
    err = refused(api.post(f"{V1}/workflows/{wid}/runs", json={"params": {"big": big}}))
    assert locs(err) == ["body.params.big"]
    huge = {"name": "big", "tasks": [{"name": "t", "command": "x" * (5 << 20)}]}
    err = refused(api.post(f"{V1}/workflows", json=huge), 413)
    assert err["code"] == "too_large" and "4194304 bytes" in err["message"]
    chunks = (
        b'{"name": "c", "tasks": [{"name": "t", "command": "' + b"y" * (1 << 20) for _ in range(5)
    )
    r = api.post(
        f"{V1}/workflows", content=iter(chunks), headers={"Content-Type": "application/json"}
    )
    assert refused(r, 413)["code"] == "too_large"  # no Content-Length: counted while read
    assert api.get(f"{V1}/workflows").json()["total"] == 1


def test_unknown_fields_refused_everywhere_with_a_suggestion(api: TestClient) -> None:
    task = {"name": "t", "command": "true", "retires": 3}
    err = refused(api.post(f"{V1}/workflows", json=flow(tasks=[task])))
    assert "task 't': retires: unknown field 'retires'; did you mean 'retries'?" in err["message"]
    assert locs(err) == ["tasks.0.retires"]
    err = refused(api.post(f"{V1}/workflows", json=flow(descripton="x")))
    assert "unknown field 'descripton'; did you mean 'description'?" in err["message"]
    wid = created(api, flow())["id"]
    err = refused(api.post(f"{V1}/workflows/{wid}/runs", json={"parms": {"a": "1"}}))
    assert err["details"][0]["message"] == "unknown field 'parms'; did you mean 'params'?"
    err = refused(api.post(f"{V1}/schedules", json={"workflow_id": wid, "cron": "0 3 * * *",
                                                    "timezon": "UTC"}))  # fmt: skip
    assert "did you mean 'timezone'?" in err["message"]


def test_one_parameter_rule_for_workflow_task_and_run_params(api: TestClient) -> None:
    body = flow(params={"n": 3, "ok": True, "f": 1.5, "s": "x"},
                tasks=[{"name": "t", "command": "true", "params": {"k": 7}}])  # fmt: skip
    wf = created(api, body)
    assert wf["params"] == {"n": "3", "ok": "true", "f": "1.5", "s": "x"}
    assert wf["tasks"][0]["params"] == {"k": "7"}
    r = api.post(f"{V1}/workflows/{wf['id']}/runs", json={"params": {"n": 4, "b": False}})
    assert r.status_code == 202, r.text
    inst = api.get(f"{V1}/instances/{r.json()['instance_id']}").json()
    assert inst["params"] == {"n": "4", "b": "false"}
    for params in ({"a": {}}, {"a": None}, {"a=b": "1"}):
        err = refused(api.post(f"{V1}/workflows", json=flow("p2", params=params)))
        assert "params" in err["message"] and "parameter" in err["message"]


def test_names_in_any_script_and_the_rule_in_words(api: TestClient) -> None:
    wf = created(api, flow("每日销售_ETL", tasks=[{"name": "抽取", "command": "true"}]))
    assert wf["name"] == "每日销售_ETL" and wf["tasks"][0]["name"] == "抽取"
    assert api.get(f"{V1}/workflows", params={"name": "销售"}).json()["total"] == 1
    err = refused(api.post(f"{V1}/workflows", json=flow("bad name!")))
    assert "letters (of any script), digits, '_', '.' and '-'" in err["message"]
    assert "^[" not in err["message"]  # no raw regex


# -- datasources ---------------------------------------------------------------------------------


def test_datasource_named_by_tasks_must_exist_and_cannot_go_while_used(api: TestClient) -> None:
    sql = {"name": "q", "type": "SQL", "datasource": "warehouse", "sql": "select 1"}
    err = refused(api.post(f"{V1}/workflows", json=flow("report", tasks=[sql])))
    assert "task 'q': datasource: no datasource named 'warehouse'" in err["message"]
    assert locs(err) == ["tasks.0.datasource"]
    r = api.post(f"{V1}/datasources", json={"name": "warehouse", "kind": "POSTGRESQL", "host": "h"})
    assert r.status_code == 201, r.text
    ds = r.json()["id"]
    found = api.get(f"{V1}/datasources", params={"name": "warehouse"}).json()
    assert [d["id"] for d in found["items"]] == [ds]
    wid = created(api, flow("report", tasks=[sql]))["id"]
    param = {**sql, "datasource": "${ds}"}  # resolved at run time: not checked here
    created(api, flow("by-param", tasks=[param]))
    err = refused(api.delete(f"{V1}/datasources/{ds}"), 409)
    assert "workflow(s) 'report'" in err["message"]
    assert err["details"]["workflows"] == [{"id": wid, "name": "report"}]
    err = refused(api.put(f"{V1}/datasources/{ds}", json={"name": "dw"}), 409)
    assert err["message"].startswith("cannot rename datasource 'warehouse'")
    assert api.put(f"{V1}/datasources/{ds}", json={"description": "kept"}).status_code == 200
    assert api.delete(f"{V1}/workflows/{wid}").status_code == 204
    assert api.delete(f"{V1}/datasources/{ds}").status_code == 204


# -- behaviour of the HTTP surface ---------------------------------------------------------------


def test_options_lists_every_method_and_405_too(api: TestClient) -> None:
    r = api.options(f"{V1}/workflows/1")
    assert r.status_code == 204 and r.headers["allow"] == "DELETE, GET, OPTIONS, PUT"
    assert api.options(f"{V1}/workflows").headers["allow"] == "GET, OPTIONS, POST"
    refused(api.options(f"{V1}/no-such-thing"), 404)
    r = api.patch(f"{V1}/workflows/1")
    refused(r, 405)
    assert r.headers["allow"] == "DELETE, GET, OPTIONS, PUT"


def test_docs_are_served_from_local_assets(api: TestClient) -> None:
    page = api.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = api.get(f"/docs/assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000, asset


def test_alerts_and_backfills_are_listed(api: TestClient) -> None:
    wid = created(api, flow())["id"]
    r = api.post(f"{V1}/workflows/{wid}/runs",
                 json={"backfill": {"start": "2026-01-01", "end": "2026-01-03"}})  # fmt: skip
    assert r.status_code == 202, r.text
    page = api.get(f"{V1}/backfills").json()
    assert page["total"] == 1 and page["items"][0]["total"] == 3
    assert api.get(f"{V1}/backfills", params={"workflow_id": wid + 1}).json()["total"] == 0
    alerts = api.get(f"{V1}/alerts", params={"kind": "task_timeout"}).json()
    assert alerts == {"items": [], "total": 0}


# -- the standalone ------------------------------------------------------------------------------


def test_the_demo_runs_its_own_spec_after_a_user_edit(api: TestClient) -> None:
    client = TestClient(api.app, base_url="http://testserver/api/v1")
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    wid = demo.ensure_demo(client)
    assert demo.ensure_demo(client) == wid  # unchanged: reused, no new version
    assert api.get(f"{V1}/workflows/{wid}").json()["version"] == 1
    edited = {**demo.DEMO_SPEC, "timeout_s": 1, "tasks": demo.DEMO_SPEC["tasks"][:1]}
    assert api.put(f"{V1}/workflows/{wid}", json=edited).status_code == 200
    assert demo.ensure_demo(client) == wid
    now = api.get(f"{V1}/workflows/{wid}").json()
    assert now["version"] == 3 and len(now["tasks"]) == 4 and now["timeout_s"] is None


def test_the_standalone_writes_the_settings_other_commands_need(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.model_copy(deep=True)
    s.zk.auth_password, s.zk.auth_password_file = "", str(tmp_path / "zk-password")
    values = standalone.client_settings(s, "postgresql+psycopg2://u@127.0.0.1:15432/dk",
                                        "127.0.0.1:12181")  # fmt: skip
    path = standalone.write_client_env(s, values)
    assert path.stat().st_mode & 0o777 == 0o600
    lines = dict(ln.split("=", 1) for ln in path.read_text().splitlines() if not ln.startswith("#"))
    assert lines["DAGKEEPER_DB__URL"] == "postgresql+psycopg2://u@127.0.0.1:15432/dk"
    assert lines["DAGKEEPER_ZK__HOSTS"] == "127.0.0.1:12181"
    assert lines["DAGKEEPER_ZK__AUTH_PASSWORD_FILE"] == str(tmp_path / "zk-password")
    cmd = standalone.doctor_command(values)
    assert "DAGKEEPER_ZK__ROOT=" in cmd and "DAGKEEPER_ZK__AUTH_PASSWORD_FILE=" in cmd
    assert cmd.endswith("dagkeeper doctor") and "DAGKEEPER_URL" not in cmd
    json.dumps(values)  # plain strings only
