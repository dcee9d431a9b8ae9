"""The event-driven workflow runner: for each owned instance that changed, load what changed, run
the pure decision (master/decide.py), plan the rows (master/plan.py) and write them in one fenced
transaction (master/writer.py), again while a pass wrote final rows. Its parts: the instance cache
(owned.py), timers, driver calls, the dispatcher with refill, pacing and cancels."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from coord.queue import TaskQueue
from coord.zk import ZkClient
from core.states import WorkflowState
from db import attempts as q_attempts
from db import instances as q_instances
from db.engine import SessionFactory
from master import plan
from master.cancel import Cancel, Canceller
from master.decide import Mode, decide, visible_attempts
from master.dispatch import Dispatcher
from master.drivers import Drivers
from master.owned import Identity, InstanceCache, OwnedInstance
from master.pacing import Pacer
from master.timers import Timers
from master.writer import Writer

log = logging.getLogger(__name__)

__all__ = ["Identity", "StepReport", "WorkflowRunner"]

# A step that wrote final rows (skips, branch results) decides again at once, up to this often.
MAX_PASSES = 64


@dataclass
class StepReport:
    """What a step did, for the loop's one-line report."""

    stepped: int = 0
    created: int = 0
    finished: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)

    def add(self, other: StepReport) -> None:
        self.stepped += other.stepped
        self.created += other.created
        self.finished += other.finished
        self.lost += other.lost


class WorkflowRunner:
    def __init__(
        self,
        session_factory: SessionFactory,
        task_queue: TaskQueue,
        zk: ZkClient | None = None,
        kill_grace_s: float = 10.0,
        queue_high_water: int = 5000,
    ) -> None:
        self.sf = session_factory
        self.cache = InstanceCache(session_factory)
        self.owned: dict[int, OwnedInstance] = self.cache.owned
        self.timers = Timers(self.owned)
        self.pacer = Pacer(self.owned)
        self.drivers = Drivers(self.cache, self.timers, zk)
        self.dispatcher = Dispatcher(self.cache, task_queue, queue_high_water)
        canceller = Canceller(self.cache, self.timers, task_queue, zk, kill_grace_s)
        self.writer = Writer(self.cache, self.timers, self.drivers, self.dispatcher, canceller)

    @property
    def identity(self) -> Identity:
        return self.cache.identity

    @identity.setter
    def identity(self, value: Identity) -> None:
        self.cache.identity = value

    @property
    def actor(self) -> str:
        return self.cache.actor

    # ownership, timers, queue (delegated) -----------------------------------------------
    def drop_all(self) -> None:
        """Forget every owned instance (session lost: someone else will adopt them)."""
        self.cache.drop_all()
        self.timers.clear()

    def load_owned(self, ids: list[int] | None = None) -> list[int]:
        """(Re)load our instances from PostgreSQL; return the ids now held in memory."""
        return self.cache.load(ids)

    def next_timer(self) -> datetime | None:
        return self.timers.next()

    def due_timers(self, now: datetime) -> set[int]:
        return self.timers.due(now)

    def refill_wait(self) -> float | None:
        """Seconds until ``refill`` or a paced step wants to run; None when nothing waits."""
        now = time.monotonic()
        waits = [w for w in (self.dispatcher.wait(now), self.pacer.wait(now)) if w is not None]
        return max(0.0, min(waits)) if waits else None

    def pace(
        self, partial: set[int], changed: set[int], dirty: set[int]
    ) -> tuple[set[int], set[int]]:
        return self.pacer.pace(partial, changed, dirty)

    def refill(self, kick: bool = False, recount: bool = False) -> int:
        return self.dispatcher.refill(kick, recount)

    def requeue_submitted(self) -> int:
        return self.dispatcher.requeue_submitted()

    def dispatch(self, created: list[q_attempts.CreatedAttempt]) -> None:
        self.dispatcher.dispatch(created)

    # the step ----------------------------------------------------------------------------
    def step(self, instance_ids: set[int], changed: set[int] | None = None) -> StepReport:
        """Decide and act for each of ``instance_ids`` that we own. ``changed`` names attempts
        known to have changed; instances without a cache, or stepped without ``changed``
        (reconcile, timers), are reloaded in full."""
        report = StepReport()
        ids = [i for i in instance_ids if i in self.owned]
        if not ids:
            return report
        full = [i for i in ids if self.owned[i].attempts is None or changed is None]
        with self.sf.begin() as s:
            rows = q_attempts.load_for_instances(s, full)
            if changed:
                rows += q_attempts.load_by_ids(s, sorted(changed))
        polls = self.cache.fill(rows, full)
        if polls:  # after a (re)load, or it or what it owns changed
            ids = sorted(set(ids) | self.drivers.poll(polls))
        for _ in range(MAX_PASSES):
            todo = [i for i in ids if i in self.owned]
            report.stepped += len(todo)
            again = self._pass(todo, report)
            if not again:
                break
            ids = sorted(again)
        return report

    def _mode(self, inst: OwnedInstance, now: datetime) -> Mode:
        state = inst.row.state
        if state == WorkflowState.READY_STOP:
            return Mode.STOP
        spec, start = inst.spec, inst.row.start_time
        if spec.timeout_s is not None and start is not None:
            deadline = start + timedelta(seconds=spec.timeout_s)
            if now < deadline:
                self.timers.wake(inst, deadline)
            else:
                if spec.timeout_strategy != "FAILED" and not inst.timeout_warned:
                    inst.timeout_warned = True
                    self._alert(
                        inst, "WORKFLOW_TIMEOUT", f"instance {inst.row.id} ran past its timeout"
                    )
                if spec.timeout_strategy != "WARN":
                    return Mode.FAIL
        if state == WorkflowState.READY_PAUSE:
            return Mode.PAUSE
        return Mode.RUN

    def _alert(self, inst: OwnedInstance, kind: str, title: str) -> None:
        content = {"instance_id": inst.row.id, "workflow": inst.spec.name, "master": self.actor}
        with self.sf.begin() as s:
            q_instances.add_alert(s, kind, title, content, inst.row.id)
        log.warning("%s: instance %d: %s", self.actor, inst.row.id, title)

    def _pass(self, ids: list[int], report: StepReport) -> set[int]:
        """One decision per instance and one transaction for all of them; returns the instances
        that wrote final rows and must decide again."""
        now = datetime.now(UTC)
        new: list[q_attempts.NewAttempt] = []
        finishing: dict[int, tuple[WorkflowState, str]] = {}
        cancels: list[Cancel] = []
        for iid in ids:
            inst = self.owned[iid]
            rows = list((inst.attempts or {}).values())
            numbers: dict[str, int] = {}
            for r in rows:
                numbers[r.name] = max(numbers.get(r.name, 0), r.attempt)
            views = visible_attempts(
                [plan.view(inst, r) for r in rows], inst.since_id, inst.keep_successes, inst.logical
            )
            d = decide(
                inst.spec,
                inst.dag,
                views,
                now,
                inst.failure_strategy,
                inst.scope,
                self._mode(inst, now),
                numbers,
                inst.driven,
            )
            if d.finish is not None:
                finishing[iid] = (d.finish, d.reason)
                continue
            if d.wake_at is not None:
                self.timers.wake(inst, d.wake_at)
            if d.create or d.skip or d.cancel:
                log.debug("%s: instance %d: %s", self.actor, iid, d.reason)
            if d.cancel:
                cancels.extend((inst, r, st) for r, st in plan.cancels_for(d, rows, views))
            if d.create or d.skip:
                new.extend(plan.rows_for(inst, d, rows, {v.id for v in views}, now))
        written = self.writer.write(new, finishing, cancels)
        report.created += len(written.created)
        report.finished += written.finished
        report.lost += written.lost
        return written.again
