"""The runner's wake-up times: a heap of (when, instance id) for retry delays, timeouts, driver
polls and rechecks; an instance is woken at most once per distinct time."""

from __future__ import annotations

import heapq
from datetime import datetime

from master.owned import OwnedInstance


class Timers:
    def __init__(self, owned: dict[int, OwnedInstance]) -> None:
        self.owned = owned
        self._heap: list[tuple[datetime, int]] = []

    def clear(self) -> None:
        self._heap.clear()

    def next(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None

    def wake(self, inst: OwnedInstance, when: datetime) -> None:
        if when not in inst.wakes:
            inst.wakes.add(when)
            heapq.heappush(self._heap, (when, inst.row.id))

    def due(self, now: datetime) -> set[int]:
        """The owned instances whose wake time has come (each popped once)."""
        due = set()
        while self._heap and self._heap[0][0] <= now:
            when, iid = heapq.heappop(self._heap)
            inst = self.owned.get(iid)
            if inst is not None:
                inst.wakes.discard(when)
                due.add(iid)
        return due
