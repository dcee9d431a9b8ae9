"""The dispatcher: queues committed attempts in ZooKeeper up to the high-water mark per worker
group, marks the queued ones DISPATCHED, keeps the rest SUBMITTED in PostgreSQL and refills the
queue in queue order as it drains, saying on each instance how many attempts wait for space."""

from __future__ import annotations

import logging
import time

from coord.queue import QueueKey, TaskQueue
from core.states import Priority
from db import attempts as q_attempts
from db import instances as q_instances
from master.owned import InstanceCache

log = logging.getLogger(__name__)

# How often a master holding attempts back from a full ZooKeeper queue looks for room.
QUEUE_RECHECK_S = 0.2


class Dispatcher:
    def __init__(self, cache: InstanceCache, queue: TaskQueue, high_water: int) -> None:
        self.cache = cache
        self.queue = queue
        self.high_water = high_water
        # worker groups where some of our SUBMITTED attempts wait in PostgreSQL for queue space
        self.held: set[str] = set()
        self._held_counts: dict[tuple[int, str], int] = {}
        self._queue_reason: dict[int, str | None] = {}  # instance -> the reason we last wrote
        self._next_refill = 0.0

    @property
    def actor(self) -> str:
        return self.cache.actor

    def dispatch(self, created: list[q_attempts.CreatedAttempt]) -> None:
        """Queue committed attempts in ZooKeeper, up to the high-water mark per worker group, and
        mark the queued ones DISPATCHED. The rest stay SUBMITTED in PostgreSQL and ``refill``
        queues them in queue order as the queue drains; so does a group that already has some
        waiting (a new attempt must not overtake them)."""
        if not created:
            return
        by_group: dict[str, list[q_attempts.CreatedAttempt]] = {}
        for c in created:
            by_group.setdefault(c.worker_group, []).append(c)
        held = newly = False
        for group, items in sorted(by_group.items()):
            if group in self.held:
                held = True
                continue
            items.sort(key=self._key_of)
            if len(self._push(group, items)) < len(items):
                self.held.add(group)
                held = newly = True
                log.info(
                    "%s: queue %s is at its high-water mark (%d); attempts wait in PostgreSQL",
                    self.actor,
                    group,
                    self.high_water,
                )
        if held:
            self.refill(kick=True, recount=newly)

    def _key_of(self, c: q_attempts.CreatedAttempt) -> QueueKey:
        inst = self.cache.owned.get(c.workflow_instance_id)
        wf_pri = inst.row.priority if inst else Priority.MEDIUM.value
        return QueueKey(wf_pri, c.workflow_instance_id, c.priority, c.id)

    def _push(self, group: str, items: list[q_attempts.CreatedAttempt]) -> list[int]:
        """Push ``items`` (in queue order) as far as the high-water mark allows; mark the pushed
        ones DISPATCHED and return their ids."""
        by_key = {self._key_of(c): c.id for c in items}
        done = self.queue.push_bounded(group, list(by_key), self.high_water)
        ids = [by_key[k] for k in done]
        if ids:
            with self.cache.sf.begin() as s:
                q_attempts.mark_dispatched(s, ids)
            log.debug("%s: dispatched %d attempts to %s", self.actor, len(ids), group)
        return ids

    def wait(self, now: float) -> float | None:
        """Seconds until ``refill`` wants to run; None when nothing is held back."""
        return self._next_refill - now if self.held else None

    def refill(self, kick: bool = False, recount: bool = False) -> int:
        """Queue held-back attempts of ours in queue order, as far as the high-water mark allows
        (the group's entry count is read first: one cheap call). Runs when ``kick``ed (a task of
        ours changed) or on a short timer; pushes once the room is worth a query (a tenth of the
        mark, or all that wait). Returns how many were queued."""
        if not self.held:
            return 0
        mono = time.monotonic()
        if not kick and mono < self._next_refill:
            return 0
        self._next_refill = mono + QUEUE_RECHECK_S
        ids = sorted(self.cache.owned)
        pushed = 0
        for group in sorted(self.held):
            room = self.high_water - self.queue.depth(group)
            waiting = sum(n for (_, g), n in self._held_counts.items() if g == group)
            if room <= 0 or (room < max(1, min(self.high_water // 10, 500)) and room < waiting):
                continue
            with self.cache.sf.begin() as s:
                rows = q_attempts.submitted_in_order(s, ids, group, room + 1)
            todo = rows[:room]
            done = self._push(group, todo)
            pushed += len(done)
            recount = True
            if len(rows) <= room and len(done) == len(todo):
                self.held.discard(group)
                log.info("%s: queue %s has room again; nothing waits", self.actor, group)
        if recount:
            self._note_waiting()
        return pushed

    def _note_waiting(self) -> None:
        """Count our attempts that wait for queue space and say so in their instances' reason."""
        owned = sorted(self.cache.owned)
        ident = self.cache.identity
        with self.cache.sf.begin() as s:
            self._held_counts = q_attempts.submitted_counts(s, owned)
            per: dict[int, int] = {}
            for (iid, group), n in self._held_counts.items():
                if group in self.held:
                    per[iid] = per.get(iid, 0) + n
            for iid in sorted(set(per) | set(self._queue_reason)):
                inst = self.cache.owned.get(iid)
                if inst is None:
                    self._queue_reason.pop(iid, None)
                    continue
                parts = [inst.waiting] if inst.waiting else []
                if per.get(iid):
                    parts.append(f"{per[iid]} attempts wait for queue space")
                why = "; ".join(parts) or None
                if why != self._queue_reason.get(iid, inst.waiting):
                    q_instances.set_reason(s, iid, why, ident.master_id, ident.epoch)
                if per.get(iid):
                    self._queue_reason[iid] = why
                else:
                    self._queue_reason.pop(iid, None)

    def requeue_submitted(self) -> int:
        """Queue attempts that were committed but never queued (a crash or a ZooKeeper outage
        between the two, or held back by the high-water mark), in queue order and up to the
        mark; returns how many were queued."""
        with self.cache.sf.begin() as s:
            counts = q_attempts.submitted_counts(s, list(self.cache.owned))
        self.held |= {g for _, g in counts}
        self._held_counts = counts
        return self.refill(kick=True, recount=bool(counts))
