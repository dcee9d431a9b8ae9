"""The master's pure step decision over attempt snapshots."""

from datetime import UTC, datetime, timedelta

from core.dag import Dag, topological_order
from core.spec import WorkflowSpec, parse_workflow_spec
from core.states import TaskState, WorkflowState
from master.decide import AttemptView, decide

S = TaskState
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def diamond(**task_overrides):
    tasks = [
        {"name": "a", "command": "true"},
        {"name": "b", "command": "true", "depends_on": ["a"]},
        {"name": "c", "command": "true", "depends_on": ["a"]},
        {"name": "d", "command": "true", "depends_on": ["b", "c"]},
    ]
    for t in tasks:
        t.update(task_overrides.get(t["name"], {}))
    spec = parse_workflow_spec({"name": "w", "params": {"g": "1", "x": "global"}, "tasks": tasks})
    return spec, spec.to_dag()


def names(decision):
    return sorted(c.name for c in decision.create)


def test_start_creates_only_roots():
    spec, d = diamond()
    assert names(decide(spec, d, [], NOW)) == ["a"]


def test_successors_start_only_after_upstreams_succeed():
    spec, d = diamond()
    assert names(decide(spec, d, [AttemptView("a", 1, S.RUNNING)], NOW)) == []
    assert names(decide(spec, d, [AttemptView("a", 1, S.SUCCESS)], NOW)) == ["b", "c"]
    half = [
        AttemptView("a", 1, S.SUCCESS),
        AttemptView("b", 1, S.SUCCESS),
        AttemptView("c", 1, S.RUNNING),
    ]
    assert names(decide(spec, d, half, NOW)) == []


def test_all_succeeded_finishes_success():
    spec, d = diamond()
    done = [AttemptView(n, 1, S.SUCCESS) for n in "abcd"]
    dec = decide(spec, d, done, NOW)
    assert dec.finish == WorkflowState.SUCCESS and not dec.create


def test_failure_without_retries_finishes_failure_after_in_flight_end():
    spec, d = diamond()
    running = [
        AttemptView("a", 1, S.SUCCESS),
        AttemptView("b", 1, S.FAILURE),
        AttemptView("c", 1, S.RUNNING),
    ]
    assert decide(spec, d, running, NOW).finish is None
    ended = running[:2] + [AttemptView("c", 1, S.SUCCESS)]
    dec = decide(spec, d, ended, NOW)
    assert [(k.name, k.reason) for k in dec.skip] == [("d", "upstream failed")]
    dec = decide(spec, d, ended + [AttemptView("d", 1, S.SKIPPED)], NOW)
    assert dec.finish == WorkflowState.FAILURE and "b" in dec.reason


def test_end_strategy_starts_nothing_new_after_a_failure():
    spec, d = diamond()
    snap = [AttemptView("a", 1, S.SUCCESS), AttemptView("b", 1, S.FAILURE)]
    assert names(decide(spec, d, snap, NOW, "CONTINUE")) == ["c"]
    assert names(decide(spec, d, snap, NOW, "END")) == []


def test_retry_waits_for_interval_then_creates_next_attempt():
    spec, d = diamond(a={"retries": 2, "retry_interval_s": 10})
    failed = [AttemptView("a", 1, S.FAILURE, NOW)]
    early = decide(spec, d, failed, NOW + timedelta(seconds=5))
    assert early.create == [] and early.wake_at == NOW + timedelta(seconds=10)
    due = decide(spec, d, failed, NOW + timedelta(seconds=10))
    assert [(c.name, c.attempt) for c in due.create] == [("a", 2)]
    exhausted = failed + [AttemptView("a", 2, S.FAILURE, NOW), AttemptView("a", 3, S.FAILURE, NOW)]
    later = NOW + timedelta(hours=1)
    # the skips cascade in one decision: d is skipped because b and c are, in the same pass
    assert [k.name for k in decide(spec, d, exhausted, later).skip] == ["b", "c", "d"]
    skipped = [AttemptView(n, 1, S.SKIPPED) for n in "bcd"]
    assert decide(spec, d, exhausted + skipped, later).finish == WorkflowState.FAILURE


def test_fault_tolerance_does_not_use_up_a_retry():
    spec, d = diamond()
    snap = [
        AttemptView("a", 1, S.NEED_FAULT_TOLERANCE),
        AttemptView("a", 2, S.NEED_FAULT_TOLERANCE),
    ]
    assert [(c.name, c.attempt) for c in decide(spec, d, snap, NOW).create] == [("a", 3)]


def test_forced_success_counts_as_success():
    spec, d = diamond()
    assert names(decide(spec, d, [AttemptView("a", 1, S.FORCED_SUCCESS)], NOW)) == ["b", "c"]


# --- trigger rules, branching, modes, backoff, reruns -------------------------------------------

from master.decide import (  # noqa: E402
    BRANCH_KEY,
    Mode,
    retry_delay,
    trigger,
    visible_attempts,
)


def fan_in(rule, **extra):
    """x and y feed z (trigger rule ``rule``)."""
    tasks = [
        {"name": "x", "command": "true"},
        {"name": "y", "command": "true"},
        {"name": "z", "command": "true", "depends_on": ["x", "y"], "trigger_rule": rule},
    ]
    for t in tasks:
        t.update(extra.get(t["name"], {}))
    spec = parse_workflow_spec({"name": "w", "tasks": tasks})
    return spec, spec.to_dag()


def verdict(rule, x, y):
    spec, d = fan_in(rule)
    snap = [AttemptView("x", 1, x), AttemptView("y", 1, y)]
    dec = decide(spec, d, snap, NOW)
    if names(dec) == ["z"]:
        return "run"
    if [k.name for k in dec.skip] == ["z"]:
        return "skip"
    return "wait"


def test_trigger_rules_over_final_upstream_states():
    ok, bad, run = S.SUCCESS, S.FAILURE, S.RUNNING
    table = {
        "all_success": {(ok, ok): "run", (ok, bad): "skip", (ok, run): "wait"},
        "all_done": {(ok, bad): "run", (bad, bad): "run", (ok, run): "wait"},
        "all_failed": {(bad, bad): "run", (ok, bad): "skip", (bad, run): "wait"},
        "one_success": {(ok, run): "run", (bad, bad): "skip", (bad, run): "wait"},
        "one_failed": {(bad, run): "run", (ok, ok): "skip", (ok, run): "wait"},
        "none_failed": {(ok, ok): "run", (ok, bad): "skip", (ok, run): "wait"},
    }
    for rule, cases in table.items():
        for (x, y), expected in cases.items():
            assert verdict(rule, x, y) == expected, (rule, x, y)


def test_none_failed_runs_after_a_skipped_upstream_but_all_success_skips():
    assert trigger("none_failed", ["success", "skipped"]) == (True, "no upstream failed")
    assert trigger("all_success", ["success", "skipped"])[0] is False


def test_a_failure_handled_downstream_does_not_fail_the_workflow():
    spec, d = fan_in("one_failed")
    snap = [AttemptView("x", 1, S.FAILURE), AttemptView("y", 1, S.SUCCESS)]
    assert names(decide(spec, d, snap, NOW, "END")) == ["z"]  # handled: END does not apply
    dec = decide(spec, d, snap + [AttemptView("z", 1, S.SUCCESS)], NOW)
    assert dec.finish == WorkflowState.SUCCESS and "handled" in dec.reason


def test_a_branch_not_chosen_is_skipped_and_the_skip_propagates():
    spec = parse_workflow_spec(
        {
            "name": "w",
            "tasks": [
                {"name": "check", "command": "true"},
                {
                    "name": "cond",
                    "type": "CONDITIONS",
                    "depends_on": ["check"],
                    "on_success": ["yes"],
                    "on_failure": ["no"],
                },
                {"name": "yes", "command": "true", "depends_on": ["cond"]},
                {"name": "no", "command": "true", "depends_on": ["cond"]},
                {"name": "after_no", "command": "true", "depends_on": ["no"]},
            ],
        }
    )
    d = spec.to_dag()
    snap = [
        AttemptView("check", 1, S.SUCCESS),
        AttemptView("cond", 1, S.SUCCESS, output={BRANCH_KEY: "yes"}),
    ]
    dec = decide(spec, d, snap, NOW)
    assert names(dec) == ["yes"] and [k.name for k in dec.skip] == ["no"]
    dec = decide(spec, d, snap + [AttemptView("no", 1, S.SKIPPED)], NOW)
    assert [(k.name, k.reason) for k in dec.skip] == [("after_no", "upstream skipped")]


def test_end_strategy_cancels_everything_in_flight_then_fails():
    spec, d = diamond()
    snap = [AttemptView("a", 1, S.SUCCESS), AttemptView("b", 1, S.FAILURE)]
    running = snap + [AttemptView("c", 1, S.RUNNING)]
    dec = decide(spec, d, running, NOW, "END")
    assert dec.cancel == ["c"] and dec.cancel_state == S.KILL and not dec.create
    done = snap + [AttemptView("c", 1, S.KILL)]
    assert decide(spec, d, done, NOW, "END").finish == WorkflowState.FAILURE


def test_stop_cancels_in_flight_and_retries_nothing_then_finishes_stop():
    spec, d = diamond(b={"retries": 3})
    snap = [AttemptView("a", 1, S.SUCCESS), AttemptView("b", 1, S.FAILURE, NOW)]
    dec = decide(spec, d, snap + [AttemptView("c", 1, S.DISPATCHED)], NOW, mode=Mode.STOP)
    assert dec.cancel == ["c"] and not dec.create
    dec = decide(spec, d, snap + [AttemptView("c", 1, S.KILL)], NOW, mode=Mode.STOP)
    assert dec.finish == WorkflowState.STOP


def test_stop_with_the_worker_gone_does_not_start_fault_tolerance():
    spec, d = diamond()
    snap = [AttemptView("a", 1, S.NEED_FAULT_TOLERANCE)]
    assert decide(spec, d, snap, NOW, mode=Mode.STOP).finish == WorkflowState.STOP


def test_pause_lets_running_tasks_finish_and_pauses_the_queued_ones():
    spec, d = diamond()
    snap = [
        AttemptView("a", 1, S.SUCCESS),
        AttemptView("b", 1, S.RUNNING),
        AttemptView("c", 1, S.DISPATCHED),
    ]
    dec = decide(spec, d, snap, NOW, mode=Mode.PAUSE)
    assert dec.cancel == ["c"] and dec.cancel_state == S.PAUSE
    snap[2] = AttemptView("c", 1, S.PAUSE)
    assert decide(spec, d, snap, NOW, mode=Mode.PAUSE).finish is None  # b still running
    snap[1] = AttemptView("b", 1, S.SUCCESS)
    assert decide(spec, d, snap, NOW, mode=Mode.PAUSE).finish == WorkflowState.PAUSE
    resumed = decide(spec, d, snap, NOW)
    assert [(c.name, c.attempt, c.reason) for c in resumed.create] == [("c", 2, "resume")]


def test_workflow_timeout_kills_in_flight_and_fails():
    spec, d = diamond()
    snap = [AttemptView("a", 1, S.RUNNING)]
    assert decide(spec, d, snap, NOW, mode=Mode.FAIL).cancel == ["a"]
    killed = [AttemptView("a", 1, S.KILL)]
    assert decide(spec, d, killed, NOW, mode=Mode.FAIL).finish == WorkflowState.FAILURE


def test_retry_backoff_doubles_up_to_the_cap():
    spec, _ = diamond(
        a={"retries": 5, "retry_interval_s": 2, "retry_backoff": True, "retry_max_delay_s": 10}
    )
    assert [retry_delay(spec.task("a"), n) for n in range(1, 6)] == [2, 4, 8, 10, 10]
    plain, _ = diamond(a={"retries": 2, "retry_interval_s": 3})
    assert [retry_delay(plain.task("a"), n) for n in (1, 2)] == [3, 3]


def test_rerun_ignores_earlier_attempts_and_numbers_new_ones_after_them():
    spec, d = diamond()
    old = [AttemptView(n, 1, S.SUCCESS, id=i + 1) for i, n in enumerate("abcd")]
    visible = visible_attempts(old, since_id=4, keep_successes=False)
    dec = decide(spec, d, visible, NOW, next_attempt={"a": 1, "b": 1, "c": 1, "d": 1})
    assert [(c.name, c.attempt) for c in dec.create] == [("a", 2)]


def test_recover_failed_keeps_successes_and_reruns_failed_and_skipped():
    spec, d = diamond()
    old = [
        AttemptView("a", 1, S.SUCCESS, id=1),
        AttemptView("b", 1, S.SUCCESS, id=2),
        AttemptView("c", 1, S.FAILURE, id=3),
        AttemptView("d", 1, S.SKIPPED, id=4),
    ]
    visible = visible_attempts(old, since_id=4, keep_successes=True)
    assert {a.name for a in visible} == {"a", "b"}
    dec = decide(spec, d, visible, NOW, next_attempt={"c": 1, "d": 1})
    assert [(c.name, c.attempt) for c in dec.create] == [("c", 2)]


def test_start_nodes_scope_treats_upstreams_outside_as_done():
    spec, d = diamond()
    dec = decide(spec, d, [], NOW, scope={"b", "d"})
    assert names(dec) == ["b"]


def chain(n: int) -> tuple[WorkflowSpec, Dag]:
    tasks = [{"name": f"t{i:04d}", "type": "SHELL", "command": "true"} for i in range(n)]
    for i in range(1, n):
        tasks[i]["depends_on"] = [f"t{i - 1:04d}"]
    spec = parse_workflow_spec({"name": "chain", "tasks": tasks})
    return spec, spec.to_dag()


def test_a_chain_of_skips_settles_in_one_decision_in_topological_order():
    spec, d = chain(300)
    order = topological_order(d)
    failed = [AttemptView("t0000", 1, S.FAILURE, NOW)]
    dec = decide(spec, d, failed, NOW, order=order)
    assert len(dec.skip) == 299 and dec.create == []


def test_a_dry_run_chain_settles_in_one_decision():
    spec, d = chain(500)
    dec = decide(spec, d, [], NOW, order=topological_order(d), settle=True)
    assert len(dec.create) == 500  # every level: each one is final at once in a dry run
    assert len(decide(spec, d, [], NOW, order=topological_order(d)).create) == 1  # a real run
