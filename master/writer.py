"""The writer: one fenced transaction per pass for everything the pass decided — lock the
instances still ours, admit task-group attempts, insert new attempts (starting master-run ones),
cancel, force overdue kills, finish instances and promote the next serial run, write waiting
reasons — then bring the cache up to date and hand the new attempts to the dispatcher."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.states import WORKFLOW_TERMINAL, TaskState, WorkflowState
from db import attempts as q_attempts
from db import instances as q_instances
from db import serial as q_serial
from master import alerting, plan
from master.cancel import Cancel, Canceller, sort_cancels
from master.dispatch import Dispatcher
from master.drivers import Drivers
from master.owned import InstanceCache
from master.timers import Timers

log = logging.getLogger(__name__)

S = TaskState
# How soon an instance with tasks held back by a full task group looks again.
TASK_GROUP_RECHECK_S = 0.5
OPEN = (S.SUBMITTED.value, S.RUNNING.value)  # states of a new attempt that is not final


@dataclass
class Written:
    """What one pass's transaction did (for the loop's report and the cache)."""

    created: list[q_attempts.CreatedAttempt] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # instances that are no longer ours
    again: set[int] = field(default_factory=set)  # instances that must decide again


class Writer:
    def __init__(
        self,
        cache: InstanceCache,
        timers: Timers,
        drivers: Drivers,
        dispatcher: Dispatcher,
        canceller: Canceller,
    ) -> None:
        self.cache = cache
        self.timers = timers
        self.drivers = drivers
        self.dispatcher = dispatcher
        self.canceller = canceller

    def write(
        self,
        new: list[q_attempts.NewAttempt],
        finishing: dict[int, tuple[WorkflowState, str]],
        cancels: list[Cancel],
    ) -> Written:
        cache, owned = self.cache, self.cache.owned
        master, epoch = cache.identity.master_id, cache.identity.epoch
        cp = sort_cancels(cancels, self.canceller.kill_grace_s, time.monotonic())
        touched = {a.workflow_instance_id for a in new} | set(finishing) | cp.touched
        out = Written()
        if not touched:
            return out
        with cache.sf.begin() as s:
            mine = q_instances.lock_owned(s, sorted(touched), master, epoch)
            ours = [a for a in new if a.workflow_instance_id in mine]
            groups = plan.grouped_names(ours)
            slots = q_attempts.task_group_free_slots(s, groups) if groups else {}
            admitted = plan.gate(ours, slots)
            keep, waiting = admitted.keep, admitted.waiting
            created = q_attempts.insert_many(s, keep)
            finals, born = self.drivers.start_all(s, created, keep)
            for inst, r, st in cp.drive:
                if inst.row.id in mine:
                    inst.driver_cancel[r.id] = st
                    v = self.drivers.drive(s, inst, r, "cancel", born, target=st)
                    if v is not None:
                        finals[r.id] = v
            moved: set[int] = set()
            for target in (S.KILL, S.PAUSE):
                ids = [r.id for i, r, st in cp.unstarted if st == target and i.row.id in mine]
                moved.update(
                    q_attempts.cancel_unstarted(s, ids, target.value, plan.cancel_reason(target))
                )
            # our cache may be behind (a worker marks RUNNING without waking us): re-read those
            # that did not move, so a running one gets a kill request instead of nothing
            stale = [r.id for i, r, _ in cp.unstarted if i.row.id in mine and r.id not in moved]
            fresh = {r.id: r for r in q_attempts.load_by_ids(s, stale)}
            forced = {
                r.id
                for i, r in cp.overdue
                if i.row.id in mine
                and q_attempts.force_kill(s, r.id, r.lease_token, "no answer to the kill request")
            }
            promoted = []
            for iid, (state, reason) in finishing.items():
                if iid in mine and q_instances.finish(s, iid, state, master, epoch, reason):
                    out.finished.append(iid)
                    alerting.instance_finished(s, owned[iid], state, reason)
                    spec, wid = owned[iid].spec, owned[iid].row.workflow_id
                    if state in WORKFLOW_TERMINAL and spec.execution_type != "PARALLEL":
                        nxt = q_serial.promote_next(s, wid, spec.execution_type, master, epoch)
                        if nxt is not None:
                            promoted.append(nxt)
            for iid in mine:
                held = owned.get(iid)
                why = "; ".join(waiting[iid]) if iid in waiting else None
                if held is not None and iid not in finishing and why != held.waiting:
                    q_instances.set_reason(s, iid, why, master, epoch)
                    held.waiting = why
        for iid in touched - mine:
            log.warning("%s: instance %d is no longer ours; dropping it", cache.actor, iid)
            owned.pop(iid, None)
            out.lost.append(iid)
        out.created = created
        again = out.again
        states = {(a.workflow_instance_id, a.name): a for a in keep}
        now = datetime.now(UTC)
        for c in created:
            holder = owned.get(c.workflow_instance_id)
            a = states[(c.workflow_instance_id, c.name)]
            if holder is not None and holder.attempts is not None:
                row = q_attempts.AttemptRow(
                    c.id, c.workflow_instance_id, c.name, a.attempt, a.state, a.output or {},
                    now if a.state not in OPEN else None,
                    priority=c.priority, worker_group=c.worker_group,
                )  # fmt: skip
                holder.attempts[c.id] = finals.pop(c.id, row)
                if holder.attempts[c.id].state not in OPEN:
                    again.add(c.workflow_instance_id)
        for tid, final in finals.items():  # master-run attempts that a cancel finished
            holder = owned.get(final.workflow_instance_id)
            if holder is not None and holder.attempts is not None:
                holder.attempts[tid] = final
                again.add(holder.row.id)
        again |= self.drivers.load_born(born)
        running = list(cp.running)
        for inst, r, st in cp.unstarted:
            now_row = fresh.get(r.id)
            if now_row is None or inst.attempts is None:
                continue
            inst.attempts[r.id] = now_row
            again.add(inst.row.id)
            if now_row.state == S.RUNNING and st == S.KILL:
                running.append((inst, now_row))
        self.canceller.after(cp.unstarted, running, moved, forced, again)
        for iid in waiting:
            if iid in owned:
                self.timers.wake(owned[iid], now + timedelta(seconds=TASK_GROUP_RECHECK_S))
        for iid in out.finished:
            end, reason = finishing[iid]
            log.info("%s: instance %d %s (%s)", cache.actor, iid, end.value, reason)
            owned.pop(iid, None)
        self.dispatcher.dispatch(
            [c for c in created if states[(c.workflow_instance_id, c.name)].state == S.SUBMITTED]
        )
        for iid in cache.load(promoted) if promoted else []:
            log.info("%s: instance %d starts (next serial run)", cache.actor, iid)
            owned[iid].attempts = {}
            again.add(iid)
        return out
