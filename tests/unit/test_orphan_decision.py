"""The start-up sweep's decision: which recorded task process groups no live worker holds."""

from __future__ import annotations

from db.attempts_worker import RecordedGroup
from worker.orphans import orphans


def test_orphans_are_groups_no_live_registration_holds() -> None:
    rows = [
        RecordedGroup(1, 101, "w-a", 5, "RUNNING"),  # its worker re-registered (epoch 6)
        RecordedGroup(2, 102, "w-a", 6, "RUNNING"),  # held by w-a@6
        RecordedGroup(3, 103, "w-b", 9, "NEED_FAULT_TOLERANCE"),  # w-b is gone
        RecordedGroup(4, 104, "me", 1, "RUNNING"),  # ours
        RecordedGroup(5, 105, None, None, "RUNNING"),  # no holder recorded
    ]
    got = orphans(rows, live={("w-a", 6), ("me", 1)}, held={4})
    assert [r.task_instance_id for r in got] == [1, 3, 5]
    assert orphans([], live=set(), held=set()) == []
