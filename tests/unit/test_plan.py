"""The master's planning module (master/plan.py), pure: new attempts with resolved parameters,
their first state per task type, branch routing, skips, cancels and task-group admission."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.spec import parse_workflow_spec
from core.states import TaskState
from db.attempts import AttemptRow, NewAttempt
from db.instances import InstanceRow
from master import plan
from master.decide import BRANCH_KEY, AttemptView, Decision, ToCreate, ToSkip
from master.owned import OwnedInstance, new_owned

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def owned(tasks: list[dict[str, Any]], run_options: dict[str, Any] | None = None,
          params: dict[str, Any] | None = None) -> OwnedInstance:  # fmt: skip
    spec = parse_workflow_spec({"name": "w", "params": {"g": "global"}, "tasks": tasks})
    row = InstanceRow(7, 1, 1, "RUNNING", 2, params or {}, run_options or {}, None, "m", 1, NOW)
    return new_owned(row, spec)


def attempt(iid: int, name: str, state: TaskState, n: int = 1, **out: str) -> AttemptRow:
    return AttemptRow(iid, 7, name, n, state.value, dict(out), NOW)


def create(
    inst: OwnedInstance, *names: str, rows: list[AttemptRow] | None = None
) -> list[NewAttempt]:
    rows = rows or []
    d = Decision(create=[ToCreate(n, 1, "ready") for n in names])
    return plan.rows_for(inst, d, rows, {r.id for r in rows}, NOW)


def test_a_shell_attempt_gets_resolved_parameters_and_its_rendered_command() -> None:
    inst = owned(
        [
            {
                "name": "a",
                "type": "SHELL",
                "command": "echo ${g} ${x} $[yyyyMMdd]",
                "params": {"x": "${g}-local"},
            }
        ],  # fmt: skip
        params={"x": "from-run"},
    )
    (a,) = create(inst, "a")
    assert a.state == TaskState.SUBMITTED and a.attempt == 1 and a.worker_group == "default"
    assert a.spec["env"]["g"] == "global"
    assert a.spec["command"].endswith("20260301")  # the base time is the run's start time


def test_a_parameter_that_cannot_resolve_is_recorded_for_the_worker_to_fail() -> None:
    inst = owned([{"name": "a", "type": "SHELL", "command": "echo $[yyyyMMdd+q]"}])
    (a,) = create(inst, "a")
    assert "render_error" in a.spec and a.spec["env"] == {}


def test_the_run_s_worker_group_replaces_the_default_only() -> None:
    inst = owned(
        [
            {"name": "a", "type": "SHELL", "command": "true"},
            {"name": "b", "type": "SHELL", "command": "true", "worker_group": "gpu"},
        ],  # fmt: skip
        run_options={"worker_group": "big"},
    )
    by = {a.name: a.worker_group for a in create(inst, "a", "b")}
    assert by == {"a": "big", "b": "gpu"}


def test_first_states_by_kind_of_task() -> None:
    tasks = [
        {"name": "up", "type": "SHELL", "command": "true"},
        {"name": "sub", "type": "SUB_PROCESS", "workflow_id": 9, "depends_on": ["up"]},
        {"name": "grp", "type": "SHELL", "command": "true", "task_group": "tg"},
    ]
    inst = owned(tasks)
    by = {a.name: a for a in create(inst, "sub", "grp")}
    assert by["sub"].state == TaskState.RUNNING  # its driver starts it in the same transaction
    assert by["grp"].state == TaskState.SUBMITTED and by["grp"].task_group == "tg"
    dry = owned(tasks, run_options={"dry_run": True})
    assert {a.state for a in create(dry, "sub", "grp")} == {TaskState.SUCCESS}


def test_conditions_routes_on_its_upstreams_outcome() -> None:
    tasks = [
        {"name": "up", "type": "SHELL", "command": "true"},
        {
            "name": "c",
            "type": "CONDITIONS",
            "depends_on": ["up"],
            "on_success": ["ok"],
            "on_failure": ["bad"],
        },  # fmt: skip
        {"name": "ok", "type": "SHELL", "command": "true", "depends_on": ["c"]},
        {"name": "bad", "type": "SHELL", "command": "true", "depends_on": ["c"]},
    ]
    inst = owned(tasks)
    (ok,) = create(inst, "c", rows=[attempt(1, "up", TaskState.SUCCESS)])
    assert ok.state == TaskState.SUCCESS and ok.output == {BRANCH_KEY: "ok"}
    failed = [attempt(1, "up", TaskState.FAILURE), attempt(2, "up", TaskState.FAILURE, 2)]
    (bad,) = create(inst, "c", rows=failed)
    assert bad.output == {BRANCH_KEY: "bad"} and "bad" in (bad.reason or "")


def test_switch_routes_on_parameters_and_a_broken_expression_fails_the_node() -> None:
    tasks = [
        {"name": "s", "type": "SWITCH", "params": {"region": "eu"},
         "cases": [{"when": '${region} == "eu"', "next": "eu"}], "default": "other"},
        {"name": "eu", "type": "SHELL", "command": "true", "depends_on": ["s"]},
        {"name": "other", "type": "SHELL", "command": "true", "depends_on": ["s"]},
    ]  # fmt: skip
    (s,) = create(owned(tasks), "s")
    assert s.output == {BRANCH_KEY: "eu"}
    bad = [dict(tasks[0], cases=[{"when": "int(${region}) > 1", "next": "eu"}]), *tasks[1:]]
    (s2,) = create(owned(bad), "s")
    assert s2.state == TaskState.FAILURE and s2.reason


def test_skips_are_final_rows_with_their_reason() -> None:
    inst = owned([{"name": "a", "type": "SHELL", "command": "true"}])
    d = Decision(skip=[ToSkip("a", 1, "upstream failed")])
    (k,) = plan.rows_for(inst, d, [], set(), NOW)
    assert (k.state, k.reason, k.spec) == (TaskState.SKIPPED, "upstream failed", {})


def test_outputs_come_from_the_latest_successful_attempt_without_internal_keys() -> None:
    rows = [
        attempt(1, "a", TaskState.SUCCESS, 1, x="old"),
        attempt(2, "a", TaskState.SUCCESS, 2, x="new", __resolved="hidden"),
        attempt(3, "b", TaskState.FAILURE, 1, y="no"),
    ]
    assert plan.latest_outputs(rows) == {"a": {"x": "new"}}


def test_cancels_take_the_latest_visible_attempt() -> None:
    rows = [attempt(1, "a", TaskState.FAILURE, 1), attempt(2, "a", TaskState.RUNNING, 2)]
    views = [AttemptView("a", 2, TaskState.RUNNING, None, 2)]
    d = Decision(cancel=["a", "gone"], cancel_state=TaskState.KILL)
    assert [(r.id, st) for r, st in plan.cancels_for(d, rows, views)] == [(2, TaskState.KILL)]


def new(name: str, iid: int, group: str | None, priority: int = 2) -> NewAttempt:
    return NewAttempt(iid, name, "SHELL", 1, priority, "default", {}, task_group=group)


def test_task_group_admission_in_priority_order_with_a_reason_for_the_rest() -> None:
    batch = [new("low", 1, "tg", 3), new("high", 2, "tg", 0), new("free", 1, None),
             new("x", 3, "nope")]  # fmt: skip
    adm = plan.gate(batch, {"tg": (2, 1)})  # capacity 2, 1 in use: one slot
    assert sorted(a.name for a in adm.keep) == ["free", "high"]
    assert adm.waiting == {
        1: ["low waits for task group tg (full, 2 slot(s))"],
        3: ["x waits for task group nope (does not exist)"],
    }
    assert plan.grouped_names(batch) == ["tg", "tg", "nope"]
    assert plan.gate([new("free", 1, None)], {}).keep[0].name == "free"


class FakeWriter:
    """Records the instances of each write; raises for the ones in ``bad``."""

    def __init__(self, bad: set[int]) -> None:
        self.bad, self.writes = bad, []

    def write(self, new, finishing, cancels):  # type: ignore[no-untyped-def]
        from master.writer import Written

        ids = {a.workflow_instance_id for a in new} | set(finishing)
        self.writes.append(ids)
        if ids & self.bad:
            raise ValueError("value out of range for this instance")
        return Written()


def runner_with(*instances: OwnedInstance, bad: set[int] | None = None):  # type: ignore[no-untyped-def]
    from master.runner import WorkflowRunner

    r = WorkflowRunner(None, None)  # type: ignore[arg-type]
    failed: list[tuple[int, str]] = []
    r.cache.fail_unrunnable = lambda iid, why: failed.append((iid, why))  # type: ignore[method-assign]
    r.writer = FakeWriter(bad or set())  # type: ignore[assignment]
    for inst in instances:
        inst.attempts = {}
        r.owned[inst.row.id] = inst
    return r, failed


def instance(iid: int, **spec_changes: Any) -> OwnedInstance:
    inst = owned([{"name": "a", "type": "SHELL", "command": "true"}])
    inst.row = InstanceRow(iid, 1, 1, "RUNNING", 2, {}, {}, None, "m", 1, NOW)
    inst.spec = inst.spec.model_copy(update=spec_changes)
    return inst


def test_one_instance_that_raises_never_stalls_the_others_and_fails_after_three_passes() -> None:
    from master.runner import MAX_INSTANCE_ERRORS, StepReport

    broken = instance(1, timeout_s=1e15)  # the deadline overflows a datetime
    fine = instance(2)
    r, failed = runner_with(broken, fine)
    for n in range(1, MAX_INSTANCE_ERRORS + 1):
        r._pass([1, 2] if 1 in r.owned else [2], StepReport())
        assert r.writer.writes[-1] == {2}  # the healthy instance was written every pass
        assert broken.errors == n
    assert failed and failed[0][0] == 1 and "OverflowError" in failed[0][1]
    assert 1 not in r.owned and 2 in r.owned


def test_a_write_one_instance_breaks_is_retried_per_instance() -> None:
    from master.runner import StepReport

    r, failed = runner_with(instance(1), instance(2), instance(3), bad={2})
    r._pass([1, 2, 3], StepReport())
    assert r.writer.writes == [{1, 2, 3}, {1}, {2}, {3}]
    assert r.owned[2].errors == 1 and r.owned[1].errors == r.owned[3].errors == 0
    assert failed == []  # not yet: it is tried again after a backoff
