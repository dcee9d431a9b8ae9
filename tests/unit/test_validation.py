"""The input rules of core.validation and their use by the workflow spec (issue 18): values
PostgreSQL cannot store, strict priorities, bounded durations and times, names in any script,
one parameter rule, unknown fields with a suggestion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from core import validation as v
from core.errors import ValidationError
from core.spec import parse_workflow_spec


def task(**extra: Any) -> dict[str, Any]:
    return {"name": "t", "command": "true", **extra}


def spec(*tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "w", "tasks": list(tasks) or [task()], **extra}


def refused(raw: dict[str, Any], strict: bool = True) -> str:
    with pytest.raises(ValidationError) as info:
        parse_workflow_spec(raw, strict=strict)
    return info.value.message


# -- JSON documents ------------------------------------------------------------------------------


def test_load_json_marks_numbers_dagkeeper_refuses() -> None:
    doc = v.load_json(b'{"a": Infinity, "b": [NaN, 1e400, -Infinity], "c": 9223372036854775808}')
    found = {p.loc: p.kind for p in v.problems(doc)}
    assert found == {
        ("a",): "number",
        ("b", 0): "number",
        ("b", 1): "number",
        ("b", 2): "number",
        ("c",): "number",
    }
    ok = v.load_json(b'{"a": 9223372036854775807, "b": -9223372036854775808, "c": 1.5e300}')
    assert v.problems(ok) == []


def test_problems_find_nul_and_unpaired_surrogates_in_values_and_keys() -> None:
    doc = v.load_json(
        '{"d": "a\\u0000b", "k\\u0000": 1, "t": [{"s": "\\ud800"}], "ok": "\\ud83d\\ude00"}'
    )
    found = {p.loc: p.message for p in v.problems(doc)}
    assert set(found) == {("d",), ("k\\u0000",), ("t", 0, "s")}
    assert "NUL" in found[("d",)] and "surrogate" in found[("t", 0, "s")]
    assert found[("k\\u0000",)].startswith("the key")


def test_problems_refuse_deep_nesting() -> None:
    doc: Any = "x"
    for _ in range(v.MAX_DEPTH + 5):
        doc = [doc]
    (only,) = v.problems(doc)
    assert only.kind == "depth" and len(only.loc) == v.MAX_DEPTH


def test_suggest_names_the_field_meant() -> None:
    known = ["retries", "retry_interval_s", "timeout_s", "depends_on"]
    assert v.suggest("retires", known) == "retries"
    assert v.suggest("Timeout_S", known) == "timeout_s"
    assert v.suggest("zzz", known) is None
    assert v.unknown_field_message("dependson", known) == (
        "unknown field 'dependson'; did you mean 'depends_on'?"
    )


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [{}, [], None, True, 7, "URGENT", 1.0])
def test_priority_is_a_name_or_its_digit_never_another_type(bad: Any) -> None:
    with pytest.raises(ValueError, match="must be one of HIGHEST"):
        v.parse_priority(bad)


def test_priority_names_and_digits() -> None:
    assert v.parse_priority(" high ") == "HIGH"
    assert v.parse_priority(0) == "HIGHEST"


def test_moment_bounds() -> None:
    ok = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=15, minutes=59)))
    assert v.check_moment(ok) is ok
    with pytest.raises(ValueError, match=r"offset \+19:54"):
        v.check_moment(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=19, minutes=54))))
    with pytest.raises(ValueError, match="0001-01-02 and 9999-12-30"):
        v.check_moment(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    with pytest.raises(ValueError, match="0001-01-02 and 9999-12-30"):
        v.check_moment(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-15))))
    with pytest.raises(ValueError, match="ISO 8601"):
        v.only_iso_text(0)
    with pytest.raises(ValueError, match="ISO 8601"):
        v.only_iso_text("1700000000")
    assert v.only_iso_text("2026-01-31") == "2026-01-31"
    assert v.check_moment(datetime(2026, 1, 1)) == datetime(2026, 1, 1)  # noqa: DTZ001
    assert v.check_moment(datetime(2026, 1, 1, tzinfo=UTC)).year == 2026


def test_names_in_any_script_but_said_in_words() -> None:
    assert v.check_name("每日_ETL-v1.2") == "每日_ETL-v1.2"
    assert v.check_name("नमस्ते") == "नमस्ते"  # combining marks inside a name are letters' parts
    decomposed = "cafe\u0301"
    assert v.check_name(decomposed) == "café"  # stored NFC
    for bad in ("", "-lead", "a b", "a/b", "x" * 201, "tab\t"):
        with pytest.raises(ValueError, match="letters \\(of any script\\)"):
            v.check_name(bad)


def test_one_parameter_rule() -> None:
    assert v.param_map({"s": "x", "i": 3, "f": 1.5, "b": True, "n": False}) == {
        "s": "x",
        "i": "3",
        "f": "1.5",
        "b": "true",
        "n": "false",
    }
    for bad in ({"a": None}, {"a": {}}, {"a": [1]}):
        with pytest.raises(ValueError, match="parameter 'a': must be a string, a number"):
            v.param_map(bad)
    for name in ("a=b", "a b", "", "x\x01"):
        with pytest.raises(ValueError, match="parameter name"):
            v.param_map({name: "1"})
    assert v.oversized_params({"a": "x" * 10, "b": "é" * 6}, 10) == ["b"]


# -- the workflow spec ---------------------------------------------------------------------------


def test_workflow_and_task_params_follow_the_run_rule() -> None:
    s = parse_workflow_spec(spec(task(params={"n": 2}), params={"day": 20260101, "on": True}))
    assert s.params == {"day": "20260101", "on": "true"} and s.tasks[0].params == {"n": "2"}
    assert "parameter 'x': must be a string" in refused(spec(params={"x": {}}))


def test_unknown_task_field_refused_with_a_suggestion_when_strict() -> None:
    msg = refused(spec(task(retires=3)))
    assert "task 't': retires: unknown field 'retires'; did you mean 'retries'?" in msg
    assert parse_workflow_spec(spec(task(retires=3)), strict=False).tasks[0].retries == 0
    msg = refused(spec(task(type="SQL", datasource="d", sql="select 1", max_row=3)))
    assert "did you mean 'max_rows'?" in msg
    msg = refused(spec(timeout=3))
    assert "timeout: unknown field 'timeout'; did you mean 'timeout_s'?" in msg


def test_plugin_types_keep_their_own_fields() -> None:
    from core import task_types

    task_types.define("ECHO_T18", task_types.RunsOn.WORKER)
    try:
        s = parse_workflow_spec(spec({"name": "e", "type": "echo_t18", "times": 3}), strict=True)
        assert s.tasks[0].model_extra == {"times": 3}
    finally:
        task_types.forget("ECHO_T18")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (spec(timeout_s=1e15), "timeout_s: must be at most 31622400 seconds"),
        (spec(task(timeout_s=1e15)), "task 't': timeout_s: must be at most"),
        (spec(task(retry_interval_s=1e12)), "task 't': retry_interval_s: must be at most"),
        (spec(task(priority={})), "task 't': priority: must be one of HIGHEST"),
        (spec(task(priority=True)), "task 't': priority: must be one of HIGHEST"),
        (spec(priority=None), "priority: must be one of HIGHEST"),
        (
            spec({"name": "h", "type": "HTTP", "url": "http://x", "timeout": 1e10}),
            "task 'h': timeout: must be at most 31622400 seconds",
        ),
        (spec(task(name="a b")), "task 'a b': name: ' ' not allowed: a name is 1 to 200"),
    ],
)
def test_refused_at_definition(raw: dict[str, Any], expected: str) -> None:
    assert expected in refused(raw)


def test_param_values_over_the_limit_named() -> None:
    raw = spec(task(params={"big": "x" * 11}), params={"g": "y" * 11, "ok": "z"})
    with pytest.raises(ValidationError) as info:
        parse_workflow_spec(raw, max_param_bytes=10)
    fields = [p["field"] for p in info.value.details]
    assert fields == [["params", "g"], ["tasks", 0, "params.big"]]
