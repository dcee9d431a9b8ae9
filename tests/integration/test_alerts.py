"""Alerts end to end on real PostgreSQL, ZooKeeper, SMTP (aiosmtpd) and HTTP servers: a failed
run mails its alert group (workflow, failed task, a link to its log) through an SMTP login; a
SQL task's 3 result rows arrive as an HTML table; a down SMTP server is retried while the
workflow finishes undelayed; a webhook is signed (HMAC-SHA256, verified here) and retried after
a 500; secrets are write-only."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_support import (
    BASE_URL,
    HookServer,
    Inbox,
    Served,
    alert_rows,
    api_client,
    body_json,
    email_channel,
    fast_alerts,
    group,
    html_of,
    ok,
    run,
    self_signed,
    smtp_server,
    text_of,
    wait_terminal,
)
from fastapi.testclient import TestClient
from sql_servers import add_datasource, target  # noqa: F401 - the ``target`` fixture

from core.alert_render import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from core.settings import Settings
from db.engine import make_engine, make_session_factory
from ops.localserver import PG_ROLE, PostgresServer, free_port, wait_for


@pytest.fixture
def asettings(settings: Settings) -> Settings:
    return fast_alerts(settings)


@pytest.fixture
def served(asettings: Settings) -> Iterator[Served]:
    c = Served(asettings)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def api(asettings: Settings) -> Iterator[TestClient]:
    with api_client(asettings) as client:
        yield client


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


def _cluster(served: Served) -> None:
    m = served.master()
    served.worker()
    served.sender(m)


def test_failed_run_mails_its_group_with_the_failed_task_and_its_log_link(
    served: Served, api: TestClient, inbox: Inbox, timeout_scale: float
) -> None:
    port = free_port()
    smtp = smtp_server(port, inbox, login=True)
    try:
        ch = email_channel(api, "ops-mail", port, username="alerts", password="s3cret")
        assert ch["has_secret"] is True and "password" not in ch["params"], ch
        assert "s3cret" not in api.get(f"/api/v1/alert-channels/{ch['id']}").text
        group(api, "ops", ["ops-mail"])
        _cluster(served)
        spec = {"name": "nightly-etl", "alert_group": "ops", "tasks": [
            {"name": "extract", "command": "echo extracted"},
            {"name": "load", "command": "echo loading; exit 3", "depends_on": ["extract"]},
        ]}  # fmt: skip
        iid = run(api, spec)
        inst = wait_terminal(api, iid, 30 * timeout_scale)
        assert inst["state"] == "FAILURE", inst
        load = next(t for t in inst["tasks"] if t["name"] == "load")
        mails = wait_for(
            lambda: inbox.matching(lambda m: "nightly-etl" in str(m["Subject"])),
            20 * timeout_scale, 0.05, "the failure mail",
        )  # fmt: skip
    finally:
        smtp.stop()
    (mail,) = mails
    assert inbox.logins == [("alerts", "s3cret")]
    assert "FAILURE" in str(mail["Subject"]) and "load" in str(mail["Subject"]), mail["Subject"]
    assert mail["To"] == "ops@example.com" and mail["From"] == "dagkeeper@example.com"
    body, html = text_of(mail), html_of(mail)
    log_link = f"{BASE_URL}/api/v1/task-instances/{load['id']}/log/download"
    assert "workflow: nightly-etl" in body and log_link in body, body
    assert f'href="{log_link}"' in html and f"{BASE_URL}/ui/instances/{iid}" in html, html
    assert re.search(r"<td>load</td>\s*<td>1</td>", html), html  # the failed task, attempt 1
    (row,) = alert_rows(api, served.settings, "WORKFLOW_FAILURE")
    assert row["status"] == "SENT" and row["deliveries"] == {"ops-mail": "SENT"}, row
    assert row["alert_group"] == "ops" and row["tries"] == 1, row


def test_a_sql_tasks_three_result_rows_arrive_as_an_html_table(
    served: Served,
    api: TestClient,
    inbox: Inbox,
    pg_server: PostgresServer,
    target: str,  # noqa: F811
    timeout_scale: float,
) -> None:
    s = served.settings
    eng = make_engine(s.db)
    try:
        add_datasource(s, make_session_factory(eng), "tgt", "POSTGRESQL", pg_server.port, target,
                       PG_ROLE, None)  # fmt: skip
    finally:
        eng.dispose()
    port = free_port()
    smtp = smtp_server(port, inbox)
    try:
        email_channel(api, "analysts", port)
        group(api, "reports", ["analysts"])
        _cluster(served)
        spec = {"name": "stock-report", "tasks": [{
            "name": "stock", "type": "SQL", "datasource": "tgt", "send_email": True,
            "alert_group": "reports", "email_title": "Stock levels",
            "sql": "SELECT id, name, qty FROM items ORDER BY id",
        }]}  # fmt: skip
        iid = run(api, spec)
        inst = wait_terminal(api, iid, 30 * timeout_scale)
        assert inst["state"] == "SUCCESS", inst
        (mail,) = wait_for(
            lambda: inbox.matching(lambda m: "Stock levels" in str(m["Subject"])),
            20 * timeout_scale, 0.05, "the SQL result mail",
        )  # fmt: skip
    finally:
        smtp.stop()
    html = html_of(mail)
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    assert rows[0] == "<th>id</th><th>name</th><th>qty</th>", rows
    assert rows[1:] == [
        "<td>1</td><td>apple</td><td>5</td>",
        "<td>2</td><td>pear</td><td>7</td>",
        "<td>3</td><td>plum</td><td>9</td>",
    ], html
    ti = ok(api.get(f"/api/v1/instances/{iid}"))["tasks"][0]
    detail = ok(api.get(f"/api/v1/task-instances/{ti['id']}"))
    assert not any("result" in k for k in (detail.get("output") or {})), detail  # not an output


def test_a_down_smtp_server_is_retried_and_the_workflow_is_not_delayed(
    served: Served, api: TestClient, inbox: Inbox, timeout_scale: float
) -> None:
    port = free_port()  # nothing listens here yet
    email_channel(api, "pager", port)
    group(api, "oncall", ["pager"])
    _cluster(served)
    t0 = time.monotonic()
    spec = {"name": "flaky", "alert_group": "oncall", "warning_type": "ALL",
            "tasks": [{"name": "only", "command": "exit 1"}]}  # fmt: skip
    iid = run(api, spec)
    assert wait_terminal(api, iid, 30 * timeout_scale)["state"] == "FAILURE"
    finished_s = time.monotonic() - t0

    def retried() -> dict[str, Any] | None:
        rows = alert_rows(api, served.settings, "WORKFLOW_FAILURE")
        return rows[0] if rows and rows[0]["tries"] >= 2 else None

    row = wait_for(retried, 20 * timeout_scale, 0.1, "a second try")
    assert row["status"] == "WAIT" and "SMTP 127.0.0.1" in row["last_error"], row
    assert "pager" in row["deliveries"] and row["deliveries"]["pager"] != "SENT", row
    # the run did not wait for the mail: a shell task's run takes about a second here
    assert finished_s < 10 * timeout_scale, finished_s
    smtp = smtp_server(port, inbox)  # the server comes back: the next try delivers
    try:
        wait_for(lambda: inbox.matching(lambda m: "flaky" in str(m["Subject"])),
                 20 * timeout_scale, 0.05, "the mail after the retry")  # fmt: skip
    finally:
        smtp.stop()
    (row,) = alert_rows(api, served.settings, "WORKFLOW_FAILURE")
    assert row["status"] == "SENT" and row["tries"] >= 2 and row["sent_at"], row


def test_webhook_is_signed_with_hmac_and_retried_after_a_500(
    served: Served, api: TestClient, timeout_scale: float
) -> None:
    hook = HookServer(fail_first=1)
    try:
        body = {"name": "hook", "kind": "WEBHOOK",
                "params": {"url": hook.url, "secret": "hook-key", "headers": {"X-Team": "data"}}}  # fmt: skip
        ch = ok(api.post("/api/v1/alert-channels", json=body), 201)
        assert ch["has_secret"] and "secret" not in ch["params"], ch
        assert "hook-key" not in api.get("/api/v1/alert-channels").text
        _cluster(served)
        sent = ok(api.post(f"/api/v1/alert-channels/{ch['id']}/test"), 202)
        done = wait_for(
            lambda: (r := ok(api.get(f"/api/v1/alerts/{sent['id']}")))["status"] == "SENT" and r,
            20 * timeout_scale, 0.05, "the webhook alert SENT",
        )  # fmt: skip
    finally:
        hook.shutdown()
    assert done["tries"] == 2, done  # the 500, then the 200
    assert [b for _, b in hook.calls][0] == hook.calls[1][1]  # the same body both times
    for headers, raw in hook.calls:
        assert verify("hook-key", headers[TIMESTAMP_HEADER], raw, headers[SIGNATURE_HEADER])
        assert not verify("other-key", headers[TIMESTAMP_HEADER], raw, headers[SIGNATURE_HEADER])
        assert headers["X-Team"] == "data"
    doc = body_json(hook.calls[-1][1])
    assert doc["kind"] == "TEST" and doc["id"] == sent["id"], doc
    assert done["last_error"] is None and done["deliveries"] == {"hook": "SENT"}, done


def test_starttls_with_login_delivers_a_test_alert(
    served: Served, api: TestClient, inbox: Inbox, tmp_path: Path, timeout_scale: float
) -> None:
    port = free_port()
    smtp = smtp_server(port, inbox, login=True, starttls=self_signed(tmp_path))
    try:
        ch = email_channel(api, "tls-mail", port, security="STARTTLS", verify_tls=False,
                           username="alerts", password="s3cret")  # fmt: skip
        _cluster(served)
        sent = ok(api.post(f"/api/v1/alert-channels/{ch['id']}/test"), 202)
        done = wait_for(
            lambda: (r := ok(api.get(f"/api/v1/alerts/{sent['id']}")))["status"] == "SENT" and r,
            20 * timeout_scale, 0.05, "the test alert over STARTTLS",
        )  # fmt: skip
    finally:
        smtp.stop()
    assert done["deliveries"] == {"tls-mail": "SENT"} and inbox.logins == [("alerts", "s3cret")]
    (mail,) = inbox.matching(lambda m: "test alert for channel tls-mail" in str(m["Subject"]))
    assert "kind: TEST" in text_of(mail)


def test_channel_and_group_input_is_checked_naming_the_field(api: TestClient) -> None:
    bad = {"name": "m", "kind": "EMAIL", "params": {"host": "h", "recipients": ["not-an-address"]}}
    r = api.post("/api/v1/alert-channels", json=bad)
    assert r.status_code == 422 and "recipients" in r.text, r.text
    r = api.post("/api/v1/alert-channels", json={"name": "w", "kind": "WEBHOOK",
                                                 "params": {"url": "ftp://x"}})  # fmt: skip
    assert r.status_code == 422 and "url" in r.text, r.text
    r = api.post("/api/v1/alert-groups", json={"name": "g", "channels": ["nope"]})
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"], r.text
    ok(api.post("/api/v1/alert-channels", json={"name": "w", "kind": "WEBHOOK",
                                                "params": {"url": "http://x/y"}}), 201)  # fmt: skip
    r = api.post("/api/v1/alert-channels", json={"name": "w", "kind": "WEBHOOK",
                                                 "params": {"url": "http://x/z"}})  # fmt: skip
    assert r.status_code == 409, r.text
