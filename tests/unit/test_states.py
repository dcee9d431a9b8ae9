"""The transition tables: every (from, to) pair is checked against the intended table."""

import itertools

import pytest

from core.states import (
    TASK_TERMINAL,
    TASK_TRANSITIONS,
    WORKFLOW_TERMINAL,
    WORKFLOW_TRANSITIONS,
    Priority,
    TaskState,
    WorkflowState,
    can_transition_task,
    can_transition_workflow,
    task_sources,
    workflow_sources,
)

W, T = WorkflowState, TaskState

EXPECTED_WORKFLOW = {
    (W.SUBMITTED, W.RUNNING),
    (W.SUBMITTED, W.SERIAL_WAIT),
    (W.SUBMITTED, W.READY_STOP),
    (W.SUBMITTED, W.STOP),
    (W.SUBMITTED, W.FAILURE),
    (W.SERIAL_WAIT, W.SUBMITTED),
    (W.SERIAL_WAIT, W.RUNNING),
    (W.SERIAL_WAIT, W.READY_STOP),
    (W.SERIAL_WAIT, W.STOP),
    (W.RUNNING, W.READY_PAUSE),
    (W.RUNNING, W.READY_STOP),
    (W.RUNNING, W.SUCCESS),
    (W.RUNNING, W.FAILURE),
    (W.RUNNING, W.FAILOVER),
    (W.RUNNING, W.STOP),
    (W.RUNNING, W.PAUSE),
    (W.FAILOVER, W.RUNNING),
    (W.FAILOVER, W.READY_PAUSE),
    (W.FAILOVER, W.READY_STOP),
    (W.FAILOVER, W.SUCCESS),
    (W.FAILOVER, W.FAILURE),
    (W.READY_PAUSE, W.PAUSE),
    (W.READY_PAUSE, W.READY_STOP),
    (W.READY_PAUSE, W.SUCCESS),
    (W.READY_PAUSE, W.FAILURE),
    (W.READY_PAUSE, W.FAILOVER),
    (W.PAUSE, W.RUNNING),
    (W.PAUSE, W.READY_STOP),
    (W.PAUSE, W.STOP),
    (W.READY_STOP, W.STOP),
    (W.READY_STOP, W.FAILOVER),
    (W.STOP, W.RUNNING),
    (W.FAILURE, W.RUNNING),
    (W.SUCCESS, W.RUNNING),
}

EXPECTED_TASK = {
    (T.SUBMITTED, T.DISPATCHED),
    (T.SUBMITTED, T.RUNNING),
    (T.SUBMITTED, T.KILL),
    (T.SUBMITTED, T.PAUSE),
    (T.SUBMITTED, T.DELAY_EXECUTION),
    (T.SUBMITTED, T.SKIPPED),
    (T.SUBMITTED, T.FAILURE),
    (T.SUBMITTED, T.NEED_FAULT_TOLERANCE),
    (T.DELAY_EXECUTION, T.SUBMITTED),
    (T.DELAY_EXECUTION, T.DISPATCHED),
    (T.DELAY_EXECUTION, T.KILL),
    (T.DELAY_EXECUTION, T.PAUSE),
    (T.DISPATCHED, T.RUNNING),
    (T.DISPATCHED, T.KILL),
    (T.DISPATCHED, T.NEED_FAULT_TOLERANCE),
    (T.DISPATCHED, T.FAILURE),
    (T.DISPATCHED, T.PAUSE),
    (T.RUNNING, T.SUCCESS),
    (T.RUNNING, T.FAILURE),
    (T.RUNNING, T.KILL),
    (T.RUNNING, T.NEED_FAULT_TOLERANCE),
    (T.FAILURE, T.FORCED_SUCCESS),
    (T.KILL, T.FORCED_SUCCESS),
}


@pytest.mark.parametrize("src,dst", list(itertools.product(WorkflowState, WorkflowState)))
def test_every_workflow_pair(src, dst):
    assert can_transition_workflow(src, dst) == ((src, dst) in EXPECTED_WORKFLOW)


@pytest.mark.parametrize("src,dst", list(itertools.product(TaskState, TaskState)))
def test_every_task_pair(src, dst):
    assert can_transition_task(src, dst) == ((src, dst) in EXPECTED_TASK)


def test_tables_cover_every_state():
    assert set(WORKFLOW_TRANSITIONS) == set(WorkflowState)
    assert set(TASK_TRANSITIONS) == set(TaskState)


def test_no_state_moves_to_itself():
    assert all(s not in WORKFLOW_TRANSITIONS[s] for s in WorkflowState)
    assert all(s not in TASK_TRANSITIONS[s] for s in TaskState)


def test_terminal_task_states_only_move_to_forced_success():
    for s in TASK_TERMINAL:
        assert TASK_TRANSITIONS[s] <= {T.FORCED_SUCCESS}


def test_terminal_workflow_states_only_rerun():
    for s in WORKFLOW_TERMINAL:
        assert WORKFLOW_TRANSITIONS[s] == {W.RUNNING}


def test_sources_are_the_inverse_table():
    assert set(workflow_sources(W.SUCCESS)) == {"RUNNING", "FAILOVER", "READY_PAUSE"}
    assert set(task_sources(T.RUNNING)) == {"SUBMITTED", "DISPATCHED"}


def test_priority_parse_and_order():
    assert Priority.parse("highest") is Priority.HIGHEST
    assert Priority.parse(4) is Priority.LOWEST
    assert [p.value for p in Priority] == [0, 1, 2, 3, 4]
    with pytest.raises(KeyError):
        Priority.parse("urgent")
