"""The one lost-attempt decision (core/lost.py) and the doctor's rules that use it, pure."""

from __future__ import annotations

from coord.queue import format_key
from core.lost import lost_reason
from core.states import TaskState
from ops.doctor_rules import AttemptFact, Snapshot, diagnose

R, D, S = TaskState.RUNNING.value, TaskState.DISPATCHED.value, TaskState.SUBMITTED.value


def test_a_lease_always_holds_an_attempt() -> None:
    assert lost_reason(R, leased=True, queued=False) is None
    assert lost_reason(D, leased=True, queued=False, dispatched_s_ago=99) is None


def test_running_without_a_lease_is_lost_at_once() -> None:
    assert "RUNNING without a lease" in (lost_reason(R, leased=False, queued=False) or "")


def test_dispatched_is_lost_only_past_its_deadline_without_an_entry() -> None:
    assert lost_reason(D, False, True) is None  # still queued
    assert lost_reason(D, False, False, dispatched_s_ago=1, dispatch_deadline_s=10) is None
    assert lost_reason(D, False, False, dispatched_s_ago=11, dispatch_deadline_s=10)
    assert lost_reason(D, False, False)  # the doctor: no deadline
    assert lost_reason(D, False, False, sub_execution=True) is None  # its driver times it out
    assert lost_reason(S, False, False) is None  # not dispatched yet


def snapshot(**kw) -> Snapshot:
    base = dict(live_masters={("m", 1)}, active_instances=[], active_attempts={}, queue={},
                leases=set())  # fmt: skip
    return Snapshot(**{**base, **kw})


def test_the_doctor_finds_what_failover_would_take() -> None:
    facts = {
        1: AttemptFact(R, "default", 7, 2, 2, 5),  # running, leased
        2: AttemptFact(R, "default", 7, 2, 2, 5),  # running, no lease: lost
        3: AttemptFact(D, "default", 7, 2, 2),  # dispatched, queued
        4: AttemptFact(D, "default", 7, 2, 2),  # dispatched, neither: lost
    }
    snap = snapshot(
        active_attempts=facts,
        leases={1},
        queue={"default": [format_key(2, 7, 2, 3), format_key(2, 7, 2, 99)]},
    )
    by = {f.kind: f for f in diagnose(snap)}
    assert by["running_without_lease"].ids == [2]
    assert by["dispatched_without_entry"].ids == [4]
    assert "1 queue entr" in by["queue_entry_without_row"].message  # 99 has no waiting attempt
    assert all(by[k].repairable for k in by)


def test_orphaned_instances_are_reported_not_repaired() -> None:
    snap = snapshot(active_instances=[(7, "m", 1), (8, "gone", 3)])
    (f,) = diagnose(snap)
    assert (f.kind, f.ids, f.repairable) == ("instance_without_owner", [8], False)
