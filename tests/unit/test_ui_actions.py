"""The actions the UI offers follow the transition tables: each instance state accepts exactly
the requests db/control.py accepts, and a refusal reads like the API's 409 message."""

from __future__ import annotations

from api import ui_actions as ua
from core.states import TaskState, WorkflowState

W, T = WorkflowState, TaskState


def allowed(state: WorkflowState) -> set[str]:
    return {a for a, v in ua.instance_actions(7, state.value).items() if v.allowed}


def test_each_instance_state_allows_what_the_state_table_allows() -> None:
    assert allowed(W.RUNNING) == {"stop", "pause"}
    assert allowed(W.SUBMITTED) == {"stop"}
    assert allowed(W.SERIAL_WAIT) == {"stop"}
    assert allowed(W.PAUSE) == {"stop", "resume"}
    assert allowed(W.READY_PAUSE) == {"stop"}
    assert allowed(W.READY_STOP) == set()
    assert allowed(W.FAILOVER) == {"stop", "pause"}
    assert allowed(W.SUCCESS) == {"rerun"}
    assert allowed(W.FAILURE) == {"rerun", "recover-failed"}
    assert allowed(W.STOP) == {"rerun", "recover-failed"}


def test_refusals_carry_the_api_message() -> None:
    acts = ua.instance_actions(12, "SUCCESS")
    assert acts["stop"].reason == "cannot stop instance 12: it is SUCCESS; it has already finished"
    assert acts["pause"].reason == (
        "cannot pause instance 12: it is SUCCESS; only a RUNNING instance can be paused"
    )
    assert acts["resume"].reason == (
        "cannot resume instance 12: it is SUCCESS; only a PAUSE instance can be resumed"
    )
    assert acts["recover-failed"].reason == (
        "cannot recover instance 12: it is SUCCESS; only a FAILURE or STOP instance can be recovered"
    )
    assert acts["rerun"].reason is None
    assert ua.instance_actions(3, "READY_STOP")["stop"].reason == "instance 3: already stopping"


def test_task_actions_by_state_and_attempt() -> None:
    refs = [
        ua.AttemptRef(1, "a", "FAILURE", 1),
        ua.AttemptRef(2, "a", "FAILURE", 2),
        ua.AttemptRef(3, "b", "RUNNING", 1),
        ua.AttemptRef(4, "c", "SUCCESS", 1),
    ]
    acts = ua.task_actions(refs)
    assert acts[2]["force-success"].allowed and not acts[2]["kill"].allowed
    assert acts[1]["force-success"].reason == (
        "cannot force success of task instance 1: attempt 2 of 'a' came after it"
    )
    assert acts[3]["kill"].allowed and not acts[3]["force-success"].allowed
    assert acts[4]["kill"].reason == "cannot kill task instance 4: it is SUCCESS, not running"
    assert acts[4]["force-success"].reason == (
        "cannot force success of task instance 4: it is SUCCESS (only FAILURE or KILL can be forced)"
    )
    for st in (T.SUBMITTED, T.DISPATCHED, T.DELAY_EXECUTION):
        assert ua.task_actions([ua.AttemptRef(9, "x", st.value, 1)])[9]["kill"].allowed
