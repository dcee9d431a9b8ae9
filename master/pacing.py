"""Pacing of large instances: a step decides over the whole instance (about 8 us per task), so a
large one is stepped at most once per its pace; task events arriving meanwhile are batched into
one step, and deciding takes at most about a fifth of the master's time."""

from __future__ import annotations

import time

from master.owned import OwnedInstance

PACE_PER_TASK_S = 0.00004
PACE_MAX_S = 0.25


def pace_of(inst: OwnedInstance) -> float:
    return min(PACE_MAX_S, len(inst.dag.deps) * PACE_PER_TASK_S)


class Pacer:
    def __init__(self, owned: dict[int, OwnedInstance]) -> None:
        self.owned = owned
        self._last_step: dict[int, float] = {}  # instance -> monotonic time of its last step
        self._deferred: set[int] = set()  # instances with task events not stepped yet
        self._deferred_changed: set[int] = set()

    def wait(self, now: float) -> float | None:
        """Seconds until a deferred instance's pace is over; None when nothing is deferred."""
        waits = [
            self._last_step.get(iid, 0.0) + pace_of(inst) - now
            for iid in self._deferred
            if (inst := self.owned.get(iid)) is not None
        ]
        return min(waits) if waits else None

    def pace(
        self, partial: set[int], changed: set[int], dirty: set[int]
    ) -> tuple[set[int], set[int]]:
        """Of the instances with task events (``partial``, attempts ``changed``) and those
        deferred before, the ones to step now: a large instance whose last step was less than
        its pace ago waits (its events are kept), so that a burst of finishing tasks costs one
        decision over the instance, not one per task. Instances in ``dirty`` are stepped in
        full anyway."""
        now = time.monotonic()
        self._deferred -= dirty
        self._deferred_changed |= changed
        ready: set[int] = set()
        for iid in partial | self._deferred:
            inst = self.owned.get(iid)
            if inst is not None and now - self._last_step.get(iid, 0.0) < pace_of(inst):
                self._deferred.add(iid)
                continue
            self._deferred.discard(iid)
            ready.add(iid)
            self._last_step[iid] = now
        for iid in dirty:
            self._last_step[iid] = now
        if len(self._last_step) > 2 * len(self.owned) + 64:
            self._last_step = {i: t for i, t in self._last_step.items() if i in self.owned}
        if not ready:
            return ready, set()
        # step() loads every changed row into the cache of whichever instance holds it, so the
        # instances still deferred need no reload later, only a decision
        out, self._deferred_changed = self._deferred_changed, set()
        return ready, out
