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
from coord.zk import OUTAGE_ERRORS, ZkClient
from core.errors import CoordinationUnavailable, DatabaseUnavailable
from core.states import WorkflowState
from db import attempts as q_attempts
from db import instances as q_instances
from db.engine import SessionFactory
from db.engine import is_outage as db_outage
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
# Passes in a row an instance's processing may raise before it is failed with the error.
MAX_INSTANCE_ERRORS = 3
ERROR_RETRY_S = 1.0  # backoff per failed pass before the instance is tried again


def is_outage(exc: BaseException) -> bool:
    """ZooKeeper or PostgreSQL away: the whole pass fails (the loop's safe mode), not one
    instance."""
    outages = (CoordinationUnavailable, DatabaseUnavailable, *OUTAGE_ERRORS)
    return isinstance(exc, outages) or db_outage(exc)


@dataclass
class Share:
    """What one instance's decision writes in a pass."""

    instance_id: int
    new: list[q_attempts.NewAttempt] = field(default_factory=list)
    cancels: list[Cancel] = field(default_factory=list)
    finish: tuple[WorkflowState, str] | None = None


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
        that wrote final rows and must decide again. An instance whose decision or write raises
        (anything but an outage) is set aside so the others go on; see ``_instance_failed``."""
        now = datetime.now(UTC)
        shares: dict[int, Share] = {}
        failed: set[int] = set()
        for iid in ids:
            inst = self.owned[iid]
            try:
                shares[iid] = self._plan_one(inst, now)
            except Exception as exc:
                if is_outage(exc):
                    raise
                self._instance_failed(inst, exc, now)
        try:
            again = self._write(list(shares.values()), report)
        except Exception as exc:
            if is_outage(exc) or len(shares) <= 1:
                if len(shares) == 1 and not is_outage(exc):
                    self._instance_failed(self.owned[next(iter(shares))], exc, now)
                    return set()
                raise
            # one instance's data broke the shared transaction: write each share alone
            again = set()
            for iid, share in shares.items():
                try:
                    again |= self._write([share], report)
                except Exception as one:
                    if is_outage(one):
                        raise
                    if iid in self.owned:
                        self._instance_failed(self.owned[iid], one, now)
                    failed.add(iid)
        for iid in set(shares) - failed:
            if iid in self.owned:
                self.owned[iid].errors = 0
        return again

    def _write(self, shares: list[Share], report: StepReport) -> set[int]:
        new = [a for sh in shares for a in sh.new]
        cancels = [c for sh in shares for c in sh.cancels]
        finishing = {sh.instance_id: sh.finish for sh in shares if sh.finish is not None}
        written = self.writer.write(new, finishing, cancels)
        report.created += len(written.created)
        report.finished += written.finished
        report.lost += written.lost
        return written.again

    def _plan_one(self, inst: OwnedInstance, now: datetime) -> Share:
        """The decision over one instance and the rows it writes."""
        share = Share(inst.row.id)
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
            inst.order,
            settle=inst.dry_run,
        )
        if d.finish is not None:
            share.finish = (d.finish, d.reason)
            return share
        if d.wake_at is not None:
            self.timers.wake(inst, d.wake_at)
        if d.create or d.skip or d.cancel:
            log.debug("%s: instance %d: %s", self.actor, inst.row.id, d.reason)
        if d.cancel:
            share.cancels = [(inst, r, st) for r, st in plan.cancels_for(d, rows, views)]
        if d.create or d.skip:
            share.new = plan.rows_for(inst, d, rows, {v.id for v in views}, now)
        return share

    def _instance_failed(self, inst: OwnedInstance, exc: Exception, now: datetime) -> None:
        """An instance whose processing raised: tried again after a backoff, and failed with
        the error as its reason after MAX_INSTANCE_ERRORS passes in a row, so that one bad
        instance never stalls the master's passes for the others."""
        inst.errors += 1
        iid = inst.row.id
        log.error(
            "%s: instance %d: processing failed (%d of %d): %s: %s",
            self.actor, iid, inst.errors, MAX_INSTANCE_ERRORS, type(exc).__name__, exc,
            exc_info=exc,
        )  # fmt: skip
        if inst.errors < MAX_INSTANCE_ERRORS:
            self.timers.wake(inst, now + timedelta(seconds=ERROR_RETRY_S * inst.errors))
            return
        why = f"the master could not process it ({type(exc).__name__}: {exc})"[:1000]
        self.cache.fail_unrunnable(iid, why)
        self.owned.pop(iid, None)
