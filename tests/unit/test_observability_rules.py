"""Pure parts of alerts, waiting reasons and structured logs: the sender's decision and backoff,
what a mail and a webhook say (escaping, the SQL table, links, the HMAC signature), the JSON log
line's ids, and the waiting rules on hand-made snapshots."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from core import waiting
from core.alert_render import AlertView, links, render_mail, signature, verify, webhook_body
from core.logs import JsonFormatter, ids_in
from core.states import AlertStatus, WarningType, WorkflowState
from master.alert_sender import backoff_s, decide
from master.alerting import WANTS, warning_type

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_sender_decision_and_backoff() -> None:
    assert decide([], {}, 1, 5) == (AlertStatus.SKIPPED, "no channel to send it to")
    assert decide(["a", "b"], {"a": "SENT", "b": "SENT"}, 1, 5)[0] == AlertStatus.SENT
    status, why = decide(["a", "b"], {"a": "SENT", "b": "SMTP down"}, 2, 5)
    assert status == AlertStatus.WAIT and "b: SMTP down" in why and "a:" not in why
    assert decide(["b"], {"b": "HTTP 500"}, 5, 5)[0] == AlertStatus.FAILED
    assert [backoff_s(n, 5, 60) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]


def test_warning_types_pick_the_ends_of_a_run_they_mail() -> None:
    assert warning_type("ops", None) == WarningType.FAILURE
    assert warning_type(None, None) == WarningType.NONE
    assert warning_type("ops", "all") == WarningType.ALL
    assert WANTS[WarningType.ALL] == {WorkflowState.SUCCESS, WorkflowState.FAILURE}
    assert WorkflowState.SUCCESS not in WANTS[WarningType.FAILURE]


def test_mail_escapes_data_and_renders_the_sql_rows_as_a_table() -> None:
    a = AlertView(7, "SQL_RESULT", "rows <b>", {"task": "q", "task_instance_id": 9, "attempt": 1,
                  "result": {"columns": ["n", "s"], "rows": [[1, "<x>"], [2, None]],
                             "truncated": True}}, 3, "wf", T0.isoformat())  # fmt: skip
    r = render_mail(a, "http://h/")
    assert r.subject == "[dagkeeper] rows <b>"
    assert "<h3>rows &lt;b&gt;</h3>" in r.html and "<td>&lt;x&gt;</td>" in r.html
    assert "<tr><td>2</td><td>NULL</td></tr>" in r.html and "(first 2 rows shown)" in r.text
    assert links(a, "http://h/") == {
        "instance": "http://h/ui/instances/3",
        "log:q#1": "http://h/api/v1/task-instances/9/log/download",
    }


def test_webhook_bodies_and_signature() -> None:
    a = AlertView(1, "TEST", "hello", {"channel": "c"}, None, None, T0.isoformat())
    doc = json.loads(webhook_body(a, "http://h"))
    assert doc["kind"] == "TEST" and doc["content"] == {"channel": "c"}
    assert json.loads(webhook_body(a, "http://h", "slack"))["text"].startswith("hello")
    sig = signature("k", "100", b"{}")
    assert sig.startswith("sha256=") and verify("k", "100", b"{}", sig)
    assert not verify("k", "101", b"{}", sig) and not verify("k", "100", b"{ }", sig)


def test_json_log_lines_carry_the_ids_they_name() -> None:
    assert ids_in("master m-1@7: instance 12 SUCCESS") == {"master": "m-1", "epoch": 7,
                                                          "instance": 12}  # fmt: skip
    assert ids_in("worker w1: task 40 attempt 2 of instance 5 SUCCESS exit 0") == {
        "worker": "w1", "task_instance": 40, "attempt": 2, "instance": 5}  # fmt: skip
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "task %d attempt %d", (3, 1), None)
    rec.instance = 99  # an explicit extra wins over the message
    line = json.loads(JsonFormatter().format(rec))
    assert line["msg"] == "task 3 attempt 1" and line["task_instance"] == 3
    assert line["attempt"] == 1 and line["instance"] == 99 and line["level"] == "INFO"


def _snap(**kw: object) -> waiting.Snapshot:
    base: dict[str, object] = {"instance_id": 1, "state": "RUNNING", "start_time": T0}
    base.update(kw)
    return waiting.Snapshot(**base)  # type: ignore[arg-type]


def test_waiting_rules_on_snapshots() -> None:
    tasks = [waiting.TaskFacts("a", "SHELL"), waiting.TaskFacts("b", "SHELL", ("a",)),
             waiting.TaskFacts("c", "SHELL", task_group="tg"),
             waiting.TaskFacts("r", "SHELL", retries=2, retry_interval_s=60)]  # fmt: skip
    atts = [waiting.AttemptFacts(1, "a", 1, "DISPATCHED", T0),
            waiting.AttemptFacts(2, "r", 1, "FAILURE", T0, T0, T0)]  # fmt: skip
    snap = _snap(tasks=tasks, attempts=atts, live_workers={"default": 2},
                 queue_depth={"default": 3}, queue_position={1: 2},
                 task_groups={"tg": waiting.TaskGroupFacts(2, 2, (5, 6))})  # fmt: skip
    got = waiting.reasons(snap, T0 + timedelta(seconds=10))
    assert got["a"].code == waiting.QUEUED and "position 2 of 3" in got["a"].message
    assert got["b"] == waiting.Reason(waiting.UPSTREAM, "waits for upstream a (DISPATCHED)", T0)
    assert got["c"].message == "task group tg is full (2/2), held by instance(s) 5, 6"
    assert got["r"].message == "retry 1 of 2 at 2026-12-03T12:01:00+00:00"
    snap.live_workers = {}
    assert waiting.reasons(snap, T0)["a"].message == "no live worker in group default"
    assert waiting.reasons(_snap(state="SUCCESS", tasks=tasks), T0) == {}
    lost = _snap(tasks=tasks[:1], attempts=atts[:1], owner="m@3", owner_alive=False)
    assert waiting.reasons(lost, T0)["a"].code == waiting.FAILOVER
    serial = _snap(state="SERIAL_WAIT", tasks=tasks[:1], serial_behind=4)
    assert "behind instance 4" in waiting.reasons(serial, T0)["a"].message
