"""The pure parts of SUB_PROCESS: an attempt's verdict from its child's state, and what a child
inherits from its parent task and run."""

from __future__ import annotations

from core.states import TaskState
from master.sub_process import child_options, child_params, verdict_for


def test_verdict_follows_the_child() -> None:
    assert verdict_for(7, "SUCCESS", False).state == TaskState.SUCCESS
    assert verdict_for(7, "FAILURE", False).state == TaskState.FAILURE
    stop = verdict_for(7, "STOP", False)
    assert stop.state == TaskState.KILL and "child instance 7 STOP" in stop.reason
    for running in ("RUNNING", "READY_PAUSE", "READY_STOP"):
        assert verdict_for(7, running, True).state is None


def test_a_paused_child_pauses_the_attempt_only_while_the_parent_pauses() -> None:
    assert verdict_for(7, "PAUSE", True).state == TaskState.PAUSE
    assert verdict_for(7, "PAUSE", False).state is None


def test_child_params_leave_out_the_builtins() -> None:
    got = child_params({"x": "1", "system.biz.date": "20260101", "systematic": "y"})
    assert got == {"x": "1", "systematic": "y"}


def test_child_options_keep_strategy_and_group_only() -> None:
    opts = {"failure_strategy": "END", "worker_group": "etl", "start_nodes": ["a"], "dry_run": None}
    assert child_options(opts) == {"failure_strategy": "END", "worker_group": "etl"}
    assert child_options({}) == {}
