"""The master's pure step decision over attempt snapshots."""

from datetime import UTC, datetime, timedelta

from common.spec import parse_workflow_spec
from common.states import TaskState, WorkflowState
from master.decide import AttemptView, decide, resolve_env

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
    assert decide(spec, d, exhausted, NOW + timedelta(hours=1)).finish == WorkflowState.FAILURE


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


def test_parameter_precedence():
    spec, _ = diamond(b={"params": {"x": "local"}})
    env = resolve_env(spec, "b", {"x": "startup", "s": "1"}, {"a": {"x": "upstream", "o": "2"}})
    assert env == {"g": "1", "x": "local", "s": "1", "o": "2"}
    env_c = resolve_env(spec, "c", {"x": "startup"}, {"a": {"x": "upstream"}})
    assert env_c["x"] == "startup"
