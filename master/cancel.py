"""Cancelling attempts: sort what a decision cancels by who acts on it (a driver on this master, an
attempt not started yet, a running one on a worker), take unstarted ones' queue entries back, ask
the workers holding running ones to kill them, and force KILL after the grace without an answer."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from coord import signals
from coord.queue import TaskQueue, format_key
from coord.zk import ZkClient
from core.states import TaskState
from db.attempts import AttemptRow
from master.owned import InstanceCache, OwnedInstance
from master.timers import Timers

log = logging.getLogger(__name__)

S = TaskState
Cancel = tuple[OwnedInstance, AttemptRow, TaskState]


@dataclass
class CancelPlan:
    """A pass's cancels sorted by who acts on them."""

    drive: list[Cancel] = field(default_factory=list)  # master-run: through their drivers
    unstarted: list[Cancel] = field(default_factory=list)  # not RUNNING: a conditional UPDATE
    running: list[tuple[OwnedInstance, AttemptRow]] = field(default_factory=list)  # kill requests
    overdue: list[tuple[OwnedInstance, AttemptRow]] = field(default_factory=list)  # force KILL
    touched: set[int] = field(default_factory=set)  # instances the cancels write about


def sort_cancels(cancels: list[Cancel], kill_grace_s: float, mono: float) -> CancelPlan:
    """Pure: master-run attempts are cancelled through their drivers, once per target; an
    attempt not running yet moves at once; a running one gets a kill request, and KILL is
    forced once its request is older than the grace."""
    plan = CancelPlan()
    for i, r, st in cancels:
        if i.master_run(r):
            if i.driver_cancel.get(r.id) != st:
                plan.drive.append((i, r, st))
                plan.touched.add(i.row.id)
            continue
        plan.touched.add(i.row.id)
        if r.state != S.RUNNING:
            plan.unstarted.append((i, r, st))
        elif st == S.KILL:
            plan.running.append((i, r))
    plan.overdue = [
        (i, r)
        for i, r in plan.running
        if r.id in i.kill_sent and mono - i.kill_sent[r.id] >= kill_grace_s
    ]
    return plan


class Canceller:
    def __init__(
        self,
        cache: InstanceCache,
        timers: Timers,
        queue: TaskQueue,
        zk: ZkClient | None,
        kill_grace_s: float,
    ) -> None:
        self.cache = cache
        self.timers = timers
        self.queue = queue
        self.zk = zk
        self.kill_grace_s = kill_grace_s

    def after(
        self,
        unstarted: list[Cancel],
        running: list[tuple[OwnedInstance, AttemptRow]],
        moved: set[int],
        forced: set[int],
        again: set[int],
    ) -> None:
        """Update the cache for cancelled attempts, take their queue entries back, and ask the
        workers holding running ones to kill them (forcing KILL after the grace)."""
        actor = self.cache.actor
        for inst, r, st in unstarted:
            if r.id not in moved or inst.attempts is None:
                continue
            inst.attempts[r.id] = replace(r, state=st.value, end_time=datetime.now(UTC))
            again.add(inst.row.id)
            key = format_key(inst.row.priority, inst.row.id, r.priority, r.id)
            try:
                self.queue.remove(r.worker_group, key)
            except Exception as exc:  # the worker finds it not startable anyway
                log.debug("%s: cannot remove queue entry %s: %s", actor, key, exc)
        mono = time.monotonic()
        for inst, r in running:
            if r.id in forced and inst.attempts is not None:
                inst.attempts[r.id] = replace(r, state=S.KILL.value, end_time=datetime.now(UTC))
                again.add(inst.row.id)
                log.warning("%s: task %d forced to KILL (worker %s)", actor, r.id, r.worker_id)
                continue
            if r.id in inst.kill_sent:
                continue
            inst.kill_sent[r.id] = mono
            self.timers.wake(inst, datetime.now(UTC) + timedelta(seconds=self.kill_grace_s))
            if self.zk is not None and r.worker_id:
                try:
                    signals.request_kill(self.zk, r.worker_id, r.id, actor)
                except Exception as exc:
                    log.warning(
                        "%s: cannot ask %s to kill task %d: %s", actor, r.worker_id, r.id, exc
                    )
