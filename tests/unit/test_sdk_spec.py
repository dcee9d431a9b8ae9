"""The SDK shapes specs the server accepts: ``>>``/``<<`` on tasks, lists and missions, one class
per task type, KunlunBase's Channel/Task/Mission, branch edges, and the canonical form that makes
an unchanged definition a no-op (checked against the server's own parser and defaults)."""

from __future__ import annotations

from typing import Any

import pytest

from core.spec import TaskSpec, WorkflowSpec, parse_workflow_spec
from dagkeeper import (
    Channel,
    Conditions,
    DefinitionError,
    Dependent,
    FanOut,
    Http,
    Mission,
    Procedure,
    Python,
    Shell,
    Spark,
    Sql,
    SubWorkflow,
    Switch,
    Task,
    Workflow,
    dependency,
)
from dagkeeper import spec as sdk_spec


def deps(spec: dict[str, Any]) -> dict[str, list[str]]:
    return {t["name"]: t.get("depends_on", []) for t in spec["tasks"]}


def stored(spec: dict[str, Any]) -> dict[str, Any]:
    """What the server keeps for a spec (db/definitions.spec_document)."""
    return parse_workflow_spec(spec).model_dump(mode="json")


def test_shift_operators_on_tasks_and_lists() -> None:
    with Workflow("ops") as wf:
        a, b, c, d, e, f = (Shell(n, f"echo {n}") for n in "abcdef")
        a >> [b, c] >> d
        e << d
        [e, d] << f  # e and d run after f
    assert deps(wf.to_spec()) == {
        "a": [],
        "b": ["a"],
        "c": ["a"],
        "d": ["b", "c", "f"],
        "e": ["d", "f"],
        "f": [],
    }
    with pytest.raises(DefinitionError, match="not 'x'"):
        a >> "x"  # type: ignore[operator]


def test_a_task_outside_a_workflow_is_refused_with_the_reason() -> None:
    with pytest.raises(DefinitionError, match="task 'lost' is made outside a workflow"):
        Shell("lost", "true")
    wf = Workflow("explicit")
    Shell("kept", "true", workflow=wf)
    assert [t["name"] for t in wf.to_spec()["tasks"]] == ["kept"]


def test_every_task_type_makes_a_spec_the_server_accepts() -> None:
    with Workflow(
        "all_types", params={"day": "2026-01-02", "n": 3, "on": True}, warning_type="failure"
    ) as wf:
        sh = Shell("sh", "echo ${day}", retries=2, retry_interval_s=5, priority="high",
                   worker_group="etl", task_group="wh", timeout_s=60, params={"k": 1})  # fmt: skip
        py = Python("py", "print(1)", interpreter="python3")
        sql = Sql("sql", "warehouse", "SELECT 1", pre_statements=["SET x = 1"], max_rows=5,
                  send_email=True, display_rows=3, email_title="rows")  # fmt: skip
        proc = Procedure("proc", "warehouse", "etl.close_day", in_params={"d": "${day}"},
                         out_params={"closed": "integer"})  # fmt: skip
        http = Http("http", "https://hooks.example/x", method="post", body={"a": 1},
                    success_codes=[200, "2xx"], timeout=10)  # fmt: skip
        spark = Spark("spark", "/apps/wc.py", master="local[1]", args=["in"], num_executors=2)
        sub = SubWorkflow("sub", 17)
        dep = Dependent("dep", [dependency("ingest", window="yesterday")], check_interval_s=1)
        fan = FanOut("fan", "echo ${who}", group="g", target_params={"h1": {"who": 1}})
        ok, bad = Shell("ok", "true"), Shell("bad", "true")
        cond = Conditions("cond", on_success=[ok], on_failure=[bad])
        big, small = Shell("big", "true"), Shell("small", "true")
        sw = Switch("sw", [("int(${n}) > 2", big)], default=small)
        sh >> [py, sql, proc, http, spark, sub, dep, fan] >> cond
        fan >> sw
    spec = wf.to_spec()
    parsed = parse_workflow_spec(spec)  # the server's full validation: raises on any problem
    by = {t.name: t.model_dump() for t in parsed.tasks}
    assert spec["params"] == {"day": "2026-01-02", "n": "3", "on": "true"}
    assert by["sh"]["priority"] == "HIGH" and by["sh"]["params"] == {"k": "1"}
    assert by["http"]["method"] == "POST" and by["sub"]["workflow_id"] == 17
    assert by["sql"]["send_email"] is True and by["sql"]["display_rows"] == 3
    assert parsed.warning_type == "FAILURE"
    assert by["fan"]["targets"] == {"group": "g"} and by["fan"]["target_params"] == {
        "h1": {"who": "1"}
    }
    assert by["dep"]["dependencies"]["groups"][0]["items"] == [
        {"workflow": "ingest", "window": "yesterday"}
    ]
    # branch targets given as tasks became the branch node's direct downstream tasks
    assert by["ok"]["depends_on"] == ["cond"] and by["bad"]["depends_on"] == ["cond"]
    assert by["big"]["depends_on"] == ["sw"] and by["sw"]["cases"][0]["next"] == "big"
    assert by["sw"]["default"] == "small"
    for t in (sh, py, sql, proc, http, spark, sub, dep, fan, cond, sw):
        assert by[t.name]["type"] == t.TYPE


def test_kunlun_task_is_one_fanout_node_with_per_channel_params_and_no_retry() -> None:
    with Workflow("create_cluster") as wf:
        t = Task(
            "create_storage",
            "mk --port ${port}",
            [Channel("db1", port=5401), Channel("db2", {"port": 5402}), Channel("db3")],
            timeout_s=120,
            fail_fast=True,
        )
    (spec,) = wf.to_spec()["tasks"]
    assert spec == {
        "name": "create_storage",
        "type": "FANOUT",
        "command": "mk --port ${port}",
        "targets": {"hosts": ["db1", "db2", "db3"]},
        "target_params": {"db1": {"port": "5401"}, "db2": {"port": "5402"}},
        "per_target_timeout_s": 120,
        "fail_fast": True,
    }
    assert t.channels[2].params == {}
    assert parse_workflow_spec(wf.to_spec()).tasks[0].retries == 0
    with pytest.raises(DefinitionError, match="non-empty list of Channel"), Workflow("w"):
        Task("empty", "true", [])


def test_missions_are_chains_that_run_concurrently_and_join_with_shift() -> None:
    with Workflow("expand") as wf:
        prep = Shell("prep", "true")
        m1 = Mission("c1", [Shell(f"c1_{s}", "true") for s in ("export", "import", "replay")])
        with Mission("c2", retries=1) as m2:
            Shell("c2_export", "true")
            Shell("c2_import", "true", retries=3)
        prep >> [m1, m2] >> Shell("switch_routing", "true")
    spec = wf.to_spec()
    assert deps(spec) == {
        "prep": [],
        "c1_export": ["prep"],
        "c1_import": ["c1_export"],
        "c1_replay": ["c1_import"],
        "c2_export": ["prep"],
        "c2_import": ["c2_export"],
        "switch_routing": ["c1_replay", "c2_import"],
    }
    by = {t["name"]: t for t in spec["tasks"]}
    assert by["c2_export"]["retries"] == 1 and by["c2_import"]["retries"] == 3
    parse_workflow_spec(spec)


def test_a_mission_as_a_sub_workflow_is_submitted_as_its_own_workflow() -> None:
    with Workflow("parent") as wf:
        with Mission("expand", subworkflow=True) as m:
            Shell("export", "true")
            Shell("load", "true")
        Shell("before", "true") >> m
    child = wf.children()
    assert [c.name for c in child] == ["parent.expand"]
    assert deps(child[0].to_spec()) == {"export": [], "load": ["export"]}
    assert [t.name for t in wf.tasks] == ["expand", "before"]
    with pytest.raises(DefinitionError, match="has no id here"):
        wf.to_spec()
    spec = wf.to_spec(lambda ref, task: 42 if ref is child[0] else 0)
    assert spec["tasks"][0] == {
        "name": "expand",
        "type": "SUB_PROCESS",
        "depends_on": ["before"],
        "workflow_id": 42,
    }


def test_sdk_defaults_are_the_servers() -> None:
    def defaults(model: type[Any]) -> dict[str, Any]:
        return {
            k: (f.default.value if hasattr(f.default, "value") else f.default)
            for k, f in model.model_fields.items()
            if not f.is_required()
        }

    assert defaults(WorkflowSpec) == sdk_spec.WORKFLOW_DEFAULTS
    assert defaults(TaskSpec) == sdk_spec.TASK_DEFAULTS


def test_the_stored_form_of_a_spec_is_the_same_definition_and_a_change_is_not() -> None:
    with Workflow("same", params={"n": 1}, priority="low") as wf:
        a = Shell("a", "echo a", retries=0, worker_group="default")
        b = FanOut("b", "echo ${x}", hosts=["h1", "h2"], target_params={"h1": {"x": 1}})
        c = Shell("c", "echo c", timeout_s=30)
        [a, b] >> c
    mine = wf.to_spec()
    server = {"id": 3, "version": 2, "latest_version": 2, "created_at": "t", **stored(mine)}
    assert sdk_spec.same_definition(sdk_spec.body_of(server), mine)
    c.options["timeout_s"] = 31
    assert not sdk_spec.same_definition(sdk_spec.body_of(server), wf.to_spec())
    c.options["timeout_s"] = 30
    # the same edges in another order are the same definition
    server_c = next(t for t in server["tasks"] if t["name"] == "c")
    server_c["depends_on"] = ["b", "a"]
    assert sdk_spec.same_definition(server, wf.to_spec())
    server["tasks"].append({**server_c, "name": "d"})
    assert not sdk_spec.same_definition(server, wf.to_spec())
