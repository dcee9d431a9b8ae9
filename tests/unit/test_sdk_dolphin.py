"""DolphinScheduler 3.x exports read as dagkeeper specs (core/dolphin.py, pure): every mapped
type's fields, relations as depends_on, minutes as seconds, the schedule, 3.2's renamed keys and
string-encoded JSON, what is reported as not mapped, and the errors that name what is missing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from core import dolphin
from core.spec import parse_workflow_spec

FIXTURE = (
    Path(__file__).resolve().parents[1] / "integration" / "test_sdk_dolphinscheduler_export.json"
)


def export() -> list[dict[str, Any]]:
    return json.loads(FIXTURE.read_text().replace("__API__", "http://127.0.0.1:1"))


def tasks(w: dolphin.DsWorkflow) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in w.spec["tasks"]}


def test_the_fixture_converts_to_specs_the_server_accepts() -> None:
    doc = export()
    assert dolphin.is_export(doc) and dolphin.is_export(doc[0])
    assert not dolphin.is_export({"format": "dagkeeper.workflow-export"}) and not dolphin.is_export(
        []
    )
    child, etl = dolphin.convert(doc)
    assert (child.code, child.name, etl.sub_refs) == (2001, "ds_child", {"child": 2001})
    for w in (child, etl):
        spec = copy.deepcopy(w.spec)
        for t in spec["tasks"]:
            if t["name"] in w.sub_refs:
                t["workflow_id"] = 7
        parse_workflow_spec(spec)
    by = tasks(etl)
    assert etl.spec["params"] == {"biz": "2026"} and etl.spec["timeout_s"] == 1800
    assert by["extract"] == {
        "name": "extract", "type": "SHELL", "depends_on": [], "priority": "HIGH", "retries": 1,
        "retry_interval_s": 60, "timeout_s": 600, "timeout_strategy": "FAILED",
        "params": {"who": "ds"}, "command": "echo extract ${biz} for ${who}",
    }  # fmt: skip
    assert by["transform"]["script"].startswith("import os") and by["transform"]["type"] == "PYTHON"
    assert by["probe"]["url"] == "http://127.0.0.1:1/health?probe=1"
    assert by["probe"]["headers"] == {"X-Probe": "ds"} and by["probe"]["timeout"] == 60
    assert by["probe"]["expect_body_contains"] == "ok"
    assert by["count"] == {
        "name": "count", "type": "SQL", "depends_on": ["extract"], "priority": "MEDIUM",
        "datasource": "ds_1", "sql": "select 40 + 2 as answer", "query": True, "max_rows": 10,
    }  # fmt: skip
    assert sorted(by["child"]["depends_on"]) == ["count", "probe", "transform"]
    assert by["wait_child"]["dependencies"] == {"relation": "AND", "groups": [{"relation": "AND",
        "items": [{"workflow": "ds_child", "window": "today", "task": "child_echo"}]}]}  # fmt: skip
    assert (by["check"]["on_success"], by["check"]["on_failure"]) == (["ok"], ["alarm"])
    assert by["route"]["cases"] == [{"when": "int(${biz}) == 2026 and 1 == 1", "next": "load_2026"}]
    assert by["route"]["default"] == "load_other"
    assert (
        by["sync_out"]["type"] == "SHELL" and "DATAX was not imported" in by["sync_out"]["command"]
    )
    assert etl.schedule == {
        "cron": "0 0 2 * * ? *", "timezone": "Asia/Shanghai", "start": "2026-01-01T00:00:00",
        "end": "2126-01-01T00:00:00", "failure_strategy": "END", "priority": "MEDIUM",
        "worker_group": None, "misfire": "FIRE_ONCE", "enabled": False,
    }  # fmt: skip
    assert etl.spec["timezone"] == "Asia/Shanghai" and child.schedule is None
    assert len(etl.notes) == 2, etl.notes
    assert child.notes == []


def test_renamed_keys_strings_and_unmapped_details_are_reported() -> None:
    doc = export()[1]
    doc["workflowDefinition"] = doc.pop("processDefinition")
    doc["workflowTaskRelationList"] = doc.pop("processTaskRelationList")
    t = doc["taskDefinitionList"][0]
    t["taskParams"] = json.dumps(t["taskParams"] | {"resourceList": [{"id": 1}]})
    t.update(flag="NO", delayTime=5, timeoutNotifyStrategy="WARNFAILED")
    sql = doc["taskDefinitionList"][3]["taskParams"]
    sql.update(sendEmail=True, title="rows of the day", groupId=4)
    http = doc["taskDefinitionList"][2]["taskParams"]
    http.update(httpCheckCondition="BODY_NOT_CONTAINS")
    cond = doc["taskDefinitionList"][6]["taskParams"]
    cond["dependence"]["dependTaskList"][0]["dependItemList"][0]["status"] = "FAILURE"
    doc["taskDefinitionList"] = [
        d for d in doc["taskDefinitionList"] if d["taskType"] != "SUB_PROCESS"
    ]
    for d in doc["taskDefinitionList"]:
        if d["taskType"] == "DEPENDENT":
            d["taskParams"]["dependence"]["dependTaskList"][0]["dependItemList"][0].update(
                definitionName="upstream_flow", depTaskCode=0
            )
    (w,) = dolphin.convert([doc])
    by = tasks(w)
    assert by["extract"]["timeout_strategy"] == "WARN_FAILED"
    assert (by["count"]["send_email"], by["count"]["display_rows"]) == (True, 10)
    assert by["count"]["email_title"] == "rows of the day"
    assert by["wait_child"]["dependencies"]["groups"][0]["items"] == [
        {"workflow": "upstream_flow", "window": "today"}
    ]
    notes = "\n".join(w.notes)
    for expected in (
        "task 'extract' is disabled (flag NO)",
        "task 'extract': delayTime 5 min is not mapped",
        "task 'extract': resource files are not mapped",
        "task 'probe': httpCheckCondition BODY_NOT_CONTAINS is not mapped",
        "CONDITIONS task 'check': its test of upstream states is read as",
        "task 'count': alert group id 4 is not mapped",
    ):
        assert expected in notes, notes


def test_what_cannot_be_resolved_is_an_error_naming_it() -> None:
    _, etl = export()
    with pytest.raises(
        ValueError, match="SUB_PROCESS task 'child' runs DolphinScheduler workflow 2001"
    ):
        dolphin.convert([etl])
    del etl["processDefinition"]["name"]
    with pytest.raises(ValueError, match="processDefinition.name"):
        dolphin.convert([etl])
