"""FANOUT's pure part: field validation (errors name the field), target resolution, per-target
parameter expansion (template + overrides), sub-execution names and the node's verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import fanout, task_types
from core.errors import ValidationError
from core.spec import parse_workflow_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fields(**kw: Any) -> dict[str, Any]:
    return {"command": "echo hi", "targets": {"group": "g"}, **kw}


def problems(**kw: Any) -> dict[str, str]:
    return dict(fanout.validate(fields(**kw)))


def test_a_group_or_a_host_list_is_valid() -> None:
    assert fanout.validate(fields()) == []
    ok = fields(
        targets={"hosts": ["a", "b"]},
        target_params={"a": {"x": "1"}},
        per_target_timeout_s=5,
        fail_fast=True,
    )
    assert fanout.validate(ok) == []
    assert fanout.validate({"script": "echo", "targets": {"hosts": ["a"]}}) == []


@pytest.mark.parametrize(
    ("kw", "field", "words"),
    [
        ({"targets": None}, "targets", "is required"),
        ({"targets": {}}, "targets", "is required"),
        ({"targets": {"group": "g", "hosts": ["a"]}}, "targets", "not both"),
        ({"targets": {"hosts": []}}, "targets.hosts", "non-empty"),
        ({"targets": {"hosts": ["a", "a"]}}, "targets.hosts", "twice"),
        ({"targets": {"hosts": ["a/b"]}}, "targets.hosts", "host names"),
        ({"targets": {"group": ""}}, "targets.group", "worker group"),
        ({"targets": {"nodes": ["a"]}}, "targets", "unknown key"),
        (
            {"targets": {"hosts": ["a"]}, "target_params": {"b": {"x": "1"}}},
            "target_params",
            "['b']",
        ),
        ({"target_params": {"a": {"x": 1}}}, "target_params", "string value"),
        ({"per_target_timeout_s": 0}, "per_target_timeout_s", "positive"),
        ({"per_target_timeout_s": "5"}, "per_target_timeout_s", "positive"),
        ({"per_target_timeout_s": True}, "per_target_timeout_s", "positive"),
        ({"fail_fast": "yes"}, "fail_fast", "true or false"),
        ({"command": ""}, "command", "is required"),
        ({"script": "echo"}, "script", "not both"),
    ],
)
def test_each_bad_field_is_named(kw: dict[str, Any], field: str, words: str) -> None:
    found = problems(**kw)
    assert field in found, found
    assert words in found[field]


def test_the_spec_rejects_a_bad_fanout_naming_task_and_field() -> None:
    raw = {
        "name": "wf",
        "tasks": [
            {
                "name": "fan",
                "type": "fanout",
                "command": "x",
                "targets": {"group": "g", "hosts": []},
            }
        ],
    }
    with pytest.raises(ValidationError) as err:
        parse_workflow_spec(raw)
    assert "task 'fan': targets: give group or hosts, not both" in err.value.message
    assert task_types.is_logical("FANOUT")


def test_parse_keeps_order_and_stringifies() -> None:
    spec = fanout.parse(
        fields(
            targets={"hosts": ["h2", "h1"]},
            target_params={"h1": {"n": "1"}},
            per_target_timeout_s=3,
            fail_fast=True,
        )
    )
    assert spec.hosts == ("h2", "h1") and spec.group is None
    assert spec.per_target_timeout_s == 3.0 and spec.fail_fast
    with pytest.raises(ValueError, match="targets"):
        fanout.parse({"command": "x"})


def test_resolve_targets_group_takes_live_hosts_list_names_dead_ones() -> None:
    group = fanout.parse(fields())
    assert fanout.resolve_targets(group, ["b", "a", "b", ""]) == (["a", "b"], [])
    hosts = fanout.parse(fields(targets={"hosts": ["x", "y", "z"]}))
    assert fanout.resolve_targets(hosts, ["y"]) == (["x", "y", "z"], ["x", "z"])


def test_expand_overrides_the_template_per_target() -> None:
    spec = fanout.parse(
        fields(
            targets={"hosts": ["a", "b"]},
            target_params={"a": {"port": "5001", "role": "primary"}},
        )
    )
    subs = fanout.expand("fan", spec, ["a", "b"], {"port": "5000", "db": "x"})
    assert [s.host for s in subs] == ["a", "b"]
    assert subs[0].params == {"port": "5001", "db": "x", "role": "primary"}
    assert subs[1].params == {"port": "5000", "db": "x"}
    assert subs[0].name == "fan@a"


def test_sub_names_fit_the_column_and_stay_distinct() -> None:
    long_a, long_b = "h" * 250 + "a", "h" * 250 + "b"
    a, b = fanout.sub_name("t" * 100, long_a), fanout.sub_name("t" * 100, long_b)
    assert len(a) <= fanout.MAX_NAME and len(b) <= fanout.MAX_NAME and a != b


def sub(i: int, state: str, queued: datetime | None = T0, host: str = "") -> fanout.SubState:
    return fanout.SubState(i, host or f"h{i}", state, queued)


def test_judge_success_only_when_every_target_succeeded() -> None:
    spec = fanout.parse(fields())
    assert fanout.judge(spec, [sub(1, "SUCCESS"), sub(2, "SUCCESS")], T0).state == "SUCCESS"
    j = fanout.judge(spec, [sub(1, "SUCCESS"), sub(2, "RUNNING")], T0)
    assert j.state is None


def test_judge_failure_waits_for_all_without_fail_fast() -> None:
    spec = fanout.parse(fields())
    running = fanout.judge(spec, [sub(1, "FAILURE"), sub(2, "RUNNING")], T0)
    assert running.state is None and running.cancel == ()
    done = fanout.judge(spec, [sub(1, "FAILURE"), sub(2, "SUCCESS"), sub(3, "KILL")], T0)
    assert done.state == "FAILURE" and "2 of 3" in done.reason and "h1" in done.reason


def test_judge_fail_fast_cancels_the_rest_at_the_first_failure() -> None:
    spec = fanout.parse(fields(fail_fast=True))
    j = fanout.judge(
        spec, [sub(1, "NEED_FAULT_TOLERANCE"), sub(2, "RUNNING"), sub(3, "SUCCESS")], T0
    )
    assert j.state == "FAILURE" and j.cancel == (2,)
    assert "fail-fast" in j.reason


def test_judge_expires_unclaimed_targets_at_their_deadline() -> None:
    spec = fanout.parse(fields(per_target_timeout_s=10))
    subs = [sub(1, "DISPATCHED"), sub(2, "SUCCESS")]
    early = fanout.judge(spec, subs, T0 + timedelta(seconds=9))
    assert early.state is None and early.expire == ()
    assert early.wake_at == T0 + timedelta(seconds=10)
    late = fanout.judge(spec, subs, T0 + timedelta(seconds=10))
    assert late.expire == (1,) and late.state == "FAILURE"
    # a running target is the worker's to time out: never expired here
    assert fanout.judge(spec, [sub(1, "RUNNING")], T0 + timedelta(hours=1)).expire == ()
    # without a timeout, the default claim deadline applies
    nodeadline = fanout.parse(fields())
    assert fanout.claim_deadline_s(nodeadline) == fanout.DEFAULT_CLAIM_DEADLINE_S


def test_judge_without_targets_fails() -> None:
    assert fanout.judge(fanout.parse(fields()), [], T0).state == "FAILURE"


def test_summary_names_each_host() -> None:
    subs = [fanout.SubState(1, "a", "SUCCESS", T0, exit_code=0), sub(2, "FAILURE", host="b")]
    out = fanout.summary(subs, {1: {"rows": "3", "__x": "hidden"}})
    assert out == {"a.state": "SUCCESS", "a.exit_code": "0", "a.rows": "3", "b.state": "FAILURE"}
