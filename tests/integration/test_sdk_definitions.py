"""Definitions on a real cluster through the SDK and the CLI: an OFFLINE workflow refuses runs
and backfills (409 with the reason) and its schedule stops firing, ONLINE restores both; an
export -> import round trip gives back the original document (under another name, or after a
delete under the same one; new versions on a clash when asked); a DolphinScheduler 3.x export
(written by hand from their format) imports, reports what it could not map, and runs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from test_cli import cli, ok
from test_sdk import TOKEN, Fleet, api_url, client, fleet  # noqa: F401

from dagkeeper import Client, Conflict
from ops.localserver import PostgresServer, wait_for

FIXTURE = Path(__file__).with_name("test_sdk_dolphinscheduler_export.json")


def fired(client: Client, name: str) -> int:
    return sum(1 for i in client.instances(name, limit=1000) if i.get("schedule_id"))


def test_offline_refuses_runs_and_stops_fires_and_online_restores_them(
    fleet: Fleet, api_url: str, client: Client, tmp_path: Path, timeout_scale: float
) -> None:
    wid = client.create_workflow({"name": "rel", "tasks": [{"name": "t", "command": "true"}]})["id"]
    client.request("POST", "/schedules", json={"workflow_id": wid, "cron": "* * * * * ? *"})
    wait_for(lambda: fired(client, "rel") >= 1, 30 * timeout_scale, 0.1, "a first fire")

    done = client.set_release_state("rel", "offline")
    assert done == {"id": wid, "name": "rel", "release_state": "OFFLINE", "changed": True}
    assert {w["name"]: w["release_state"] for w in client.workflows()}["rel"] == "OFFLINE"
    with pytest.raises(Conflict) as refused:
        client.run("rel")
    assert refused.value.status == 409
    assert "workflow 'rel' is OFFLINE: it cannot run; set it ONLINE first" in str(refused.value)
    with pytest.raises(Conflict, match="OFFLINE: it cannot be backfilled"):
        client.backfill("rel", start="2026-01-01", end="2026-01-02")
    r = cli(tmp_path, "run", "rel", DAGKEEPER_URL=api_url, DAGKEEPER_TOKEN=TOKEN)
    ok(r, code=2)
    assert "is OFFLINE" in r.stderr and "(HTTP 409)" in r.stderr, r.stderr
    # a fire being written when it went offline may still land: count once that settled
    time.sleep(1.5 * timeout_scale)
    before = fired(client, "rel")
    # absence over a window: the every-second schedule would fire ~4 times (cron tick 0.5 s)
    time.sleep(4 * timeout_scale)
    assert fired(client, "rel") == before, "an OFFLINE workflow's schedule fired"

    out = ok(cli(tmp_path, "online", "rel", DAGKEEPER_URL=api_url, DAGKEEPER_TOKEN=TOKEN))
    assert out.strip() == "workflow 'rel': ONLINE", out
    wait_for(lambda: fired(client, "rel") >= before + 2, 30 * timeout_scale, 0.1, "fires again")
    assert client.run("rel", wait=True, timeout=60 * timeout_scale).state == "SUCCESS"
    assert client.set_release_state("rel", "ONLINE")["changed"] is False


def strip_name(doc: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    out.pop("name")
    for v in out["versions"]:
        v["spec"].pop("name")
    return out


def test_export_import_round_trip_equals_the_original(
    api_url: str, client: Client, tmp_path: Path
) -> None:
    spec = {"name": "exp", "params": {"k": "v"}, "tasks": [
        {"name": "a", "command": "echo a", "retries": 2},
        {"name": "b", "command": "echo b", "depends_on": ["a"], "worker_group": "etl"}]}  # fmt: skip
    wid = client.create_workflow(spec)["id"]
    spec["tasks"][1]["command"] = "echo b2"
    client.update_workflow(wid, spec)
    client.request("POST", "/schedules", json={
        "workflow_id": wid, "cron": "0 2 * * *", "timezone": "Europe/Berlin", "enabled": False,
        "start": "2026-01-01T00:00:00+01:00", "priority": "HIGH", "misfire": "SKIP"})  # fmt: skip
    client.set_release_state(wid, "OFFLINE")
    original = client.export("exp")
    assert (
        original["format"] == "dagkeeper.workflow-export" and original["release_state"] == "OFFLINE"
    )
    assert [v["version"] for v in original["versions"]] == [1, 2]
    assert original["versions"][1]["spec"]["tasks"][1]["command"] == "echo b2"
    assert original["schedules"] == [{
        "cron": "0 2 * * *", "timezone": "Europe/Berlin", "start": "2025-12-31T23:00:00+00:00",
        "end": None, "failure_strategy": "END", "priority": "HIGH", "worker_group": None,
        "misfire": "SKIP", "enabled": False}]  # fmt: skip
    assert [v["version"] for v in client.export("exp", version=1)["versions"]] == [1]

    with pytest.raises(Conflict, match="a workflow named 'exp' already exists"):
        client.import_(original)
    copy = client.import_(original, on_conflict="rename", rename="exp_copy")
    assert copy["source"] == "dagkeeper"
    assert [(w["name"], w["versions"], w["action"]) for w in copy["workflows"]] == [
        ("exp_copy", [1, 2], "created")
    ]
    again = client.export("exp_copy")
    assert again["name"] == "exp_copy" and strip_name(again) == strip_name(original)

    client.delete_workflow("exp")
    back = client.import_(original)
    assert back["workflows"][0]["name"] == "exp" and back["workflows"][0]["id"] != wid
    assert client.export("exp") == original  # the same document, byte for byte as JSON

    more = client.import_(original, on_conflict="new_version")
    assert [(w["versions"], w["action"], w["schedules"]) for w in more["workflows"]] == [
        ([3, 4], "new_version", [])  # the equal schedule is not added twice
    ]
    # the CLI: export to a file, import it under a new name
    env = {"DAGKEEPER_URL": api_url, "DAGKEEPER_TOKEN": TOKEN}
    path = tmp_path / "exp.json"
    ok(cli(tmp_path, "export", "exp", "--version", "4", "-f", str(path), **env))
    assert json.loads(path.read_text())["versions"][0]["version"] == 4
    out = ok(cli(tmp_path, "import", str(path), "--rename", "exp_cli", **env))
    assert "imported workflow 'exp_cli'" in out and "created" in out, out
    r = cli(tmp_path, "import", str(path), **env)
    ok(r, code=2)
    assert "already exists" in r.stderr and "(HTTP 409)" in r.stderr, r.stderr


def test_a_dolphinscheduler_export_imports_and_runs(
    fleet: Fleet,
    api_url: str,
    client: Client,
    pg_server: PostgresServer,
    db_url: str,
    timeout_scale: float,
) -> None:
    database = db_url.rsplit("/", 1)[1].split("?")[0]
    client.request("POST", "/datasources", json={
        "name": "ds_1", "kind": "POSTGRESQL", "host": "127.0.0.1", "port": pg_server.port,
        "database": database, "user": "postgres", "password": "unused"})  # fmt: skip
    doc = json.loads(FIXTURE.read_text().replace("__API__", api_url))
    result = client.import_(doc)
    assert result["source"] == "dolphinscheduler"
    assert [(w["name"], w["action"]) for w in result["workflows"]] == [
        ("ds_child", "created"),
        ("ds_etl", "created"),
    ]
    notes = "\n".join(result["unmapped"])
    assert "task 'sync_out': type DATAX is not mapped" in notes, notes
    assert "datasource 1 (POSTGRESQL) is read as the dagkeeper datasource 'ds_1'" in notes, notes
    etl = client.workflow("ds_etl")
    by = {t["name"]: t for t in etl["tasks"]}
    assert etl["params"] == {"biz": "2026"} and etl["timezone"] == "Asia/Shanghai"
    assert by["extract"]["retries"] == 1 and by["extract"]["timeout_s"] == 600
    assert by["child"]["workflow_id"] == result["workflows"][0]["id"]
    assert by["check"]["on_success"] == ["ok"] and by["check"]["on_failure"] == ["alarm"]
    assert by["route"]["cases"] == [{"when": "int(${biz}) == 2026 and 1 == 1", "next": "load_2026"}]
    (schedule,) = client.schedules("ds_etl")
    assert (schedule["cron"], schedule["timezone"], schedule["enabled"]) == (
        "0 0 2 * * ? *",
        "Asia/Shanghai",
        False,
    )

    run = client.run("ds_etl", wait=True, timeout=120 * timeout_scale)
    assert run.state == "SUCCESS", run.data
    states = {t["name"]: t["state"] for t in run.tasks}
    assert states == {
        "extract": "SUCCESS", "transform": "SUCCESS", "probe": "SUCCESS", "count": "SUCCESS",
        "child": "SUCCESS", "wait_child": "SUCCESS", "check": "SUCCESS", "ok": "SUCCESS",
        "alarm": "SKIPPED", "sync_out": "SKIPPED", "route": "SUCCESS", "load_2026": "SUCCESS",
        "load_other": "SKIPPED",
    }, states  # fmt: skip
    logs = {t["name"]: "\n".join(client.log_lines(int(t["id"]))) for t in run.tasks}
    assert "extract 2026 for ds" in logs["extract"], logs["extract"]
    assert "transform 2026" in logs["transform"], logs["transform"]
    assert "42" in logs["count"], logs["count"]
    assert "load 2026" in logs["load_2026"], logs["load_2026"]
    child = client.instance(int(run.task("child")["child_instance_id"]))
    assert child["workflow_name"] == "ds_child" and child["state"] == "SUCCESS"
