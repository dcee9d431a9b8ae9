"""Spec validation per task type (common.task_types) and its use by parse_workflow_spec."""

from __future__ import annotations

import pytest

from core import task_types
from core.errors import ValidationError
from core.spec import parse_workflow_spec


def problems(type_name: str, **fields):
    return task_types.validate_task("t1", type_name, {"name": "t1", "type": type_name, **fields})


def messages(type_name: str, **fields) -> str:
    return " | ".join(p["message"] for p in problems(type_name, **fields))


def test_every_executed_and_logical_type_is_known():
    known = task_types.known_types()
    for t in ("SHELL", "PYTHON", "SQL", "PROCEDURE", "HTTP", "SPARK"):
        assert t in known
    for t in ("SUB_PROCESS", "DEPENDENT", "CONDITIONS", "SWITCH"):
        assert t in known and task_types.is_logical(t)
    assert problems("TELEPORT")[0]["code"] == "unknown_type"


@pytest.mark.parametrize(
    ("type_name", "fields", "field"),
    [
        ("SHELL", {}, "command"),
        ("PYTHON", {}, "script"),
        ("PYTHON", {"script": "print(1)", "interpreter": 3}, "interpreter"),
        ("SQL", {"sql": "select 1"}, "datasource"),
        ("SQL", {"datasource": "pg"}, "sql"),
        ("SQL", {"datasource": "pg", "sql": "x", "pre_statements": "set x"}, "pre_statements"),
        ("SQL", {"datasource": "pg", "sql": "x", "max_rows": 0}, "max_rows"),
        ("PROCEDURE", {"datasource": "pg"}, "procedure"),
        ("PROCEDURE", {"datasource": "pg", "procedure": "p; drop table x"}, "procedure"),
        ("PROCEDURE", {"datasource": "pg", "procedure": "p", "out_params": 5}, "out_params"),
        ("PROCEDURE", {"datasource": "pg", "procedure": "p", "out_params": {"o": "int;"}}, "o"),
        ("HTTP", {}, "url"),
        ("HTTP", {"url": "ftp://x"}, "url"),
        ("HTTP", {"url": "http://x", "method": "BREW"}, "method"),
        ("HTTP", {"url": "http://x", "success_codes": [99]}, "success_codes"),
        ("HTTP", {"url": "http://x", "headers": {"a": 1}}, "headers"),
        ("HTTP", {"url": "http://x", "timeout": -1}, "timeout"),
        ("SPARK", {}, "app"),
        ("SPARK", {"app": "a.jar"}, "main_class"),
        ("SPARK", {"app": "a.py", "deploy_mode": "moon"}, "deploy_mode"),
        ("SPARK", {"app": "a.py", "conf": {"k": 1}}, "conf"),
    ],
)
def test_bad_fields_name_task_and_field(type_name, fields, field):
    found = problems(type_name, **fields)
    assert found, f"{type_name} {fields} passed"
    assert all(p["tasks"] == ["t1"] for p in found)
    assert any(field in p["message"] and "'t1'" in p["message"] for p in found), found


@pytest.mark.parametrize(
    ("type_name", "fields"),
    [
        ("SHELL", {"command": "echo"}),
        ("PYTHON", {"script": "print(1)", "interpreter": "/usr/bin/python3"}),
        ("SQL", {"datasource": "pg", "sql": "select ${x}", "pre_statements": ["set a=1"]}),
        (
            "PROCEDURE",
            {"datasource": "pg", "procedure": "s.p", "in_params": {"a": 1}, "out_params": ["b"]},
        ),
        ("PROCEDURE", {"datasource": "pg", "procedure": "p", "out_params": {"b": "numeric(10,2)"}}),
        ("HTTP", {"url": "https://x/y", "method": "post", "success_codes": [200, "2xx"]}),
        ("SPARK", {"app": "a.jar", "main_class": "M", "args": ["1"], "conf": {"k": "v"}}),
        ("SUB_PROCESS", {"workflow_id": 3}),
    ],
)
def test_good_fields_pass(type_name, fields):
    assert problems(type_name, **fields) == []


def test_registered_validator_runs_and_a_broken_one_is_a_problem_not_a_crash():
    task_types.register_validator("X_PLUGIN", lambda t: [] if "cases" in t else [("cases", "no")])
    try:
        assert "cases: no" in messages("X_PLUGIN")
        assert problems("X_PLUGIN", cases=[]) == []
        task_types.register_validator("X_PLUGIN", lambda t: 1 / 0)
        assert "validator failed" in messages("X_PLUGIN")
    finally:
        task_types.forget("X_PLUGIN")


def test_workflow_spec_uses_the_registry():
    with pytest.raises(ValidationError) as e:
        parse_workflow_spec(
            {
                "name": "w",
                "tasks": [
                    {"name": "call", "type": "http", "url": "gopher://x"},
                    {"name": "q", "type": "SQL", "sql": "select 1"},
                    {"name": "ok", "type": "PYTHON", "script": "print(1)"},
                ],
            }
        )
    msg = e.value.message
    assert "task 'call': url" in msg and "task 'q': datasource" in msg and "'ok'" not in msg
    spec = parse_workflow_spec(
        {"name": "w", "tasks": [{"name": "a", "type": "HTTP", "url": "http://h/"}]}
    )
    assert spec.tasks[0].type == "HTTP"


def test_one_registry_says_where_each_built_in_type_runs():
    on = task_types.runs_on
    assert {t for t in task_types.BUILTIN if on(t) == task_types.RunsOn.WORKER} == {
        "SHELL", "PYTHON", "SQL", "PROCEDURE", "HTTP", "SPARK",
    }  # fmt: skip
    assert on("SUB_PROCESS") == on("DEPENDENT") == on("FANOUT") == task_types.RunsOn.MASTER
    assert on("CONDITIONS") == on("SWITCH") == task_types.RunsOn.INLINE
    # (other test modules may have defined types of their own: look at the built-ins)
    built_in = [t for t in task_types.master_run_types() if t in task_types.BUILTIN]
    assert built_in == sorted(["SUB_PROCESS", "DEPENDENT", "FANOUT", "CONDITIONS", "SWITCH"])
    # every worker and master type names an implementation that imports and has the right kind
    from master import logical
    from worker import task_types as worker_types

    for name, d in task_types.BUILTIN.items():
        if d.runs_on == task_types.RunsOn.WORKER:
            assert issubclass(task_types.load_impl(name), worker_types.TaskType), name
            assert worker_types.get_task_type(name).name == name
        elif d.runs_on == task_types.RunsOn.MASTER:
            assert logical.driver_for(name) is task_types.load_impl(name), name
        else:
            assert d.impl is None and logical.driver_for(name) is None


def test_a_defined_type_is_known_and_forgotten():
    task_types.define("X_MASTER", task_types.RunsOn.MASTER)
    try:
        assert "X_MASTER" in task_types.known_types() and task_types.is_logical("x_master")
    finally:
        task_types.forget("X_MASTER")
    assert "X_MASTER" not in task_types.known_types()
    assert task_types.runs_on("X_MASTER") == task_types.RunsOn.WORKER  # unknown: a worker's
