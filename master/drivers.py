"""Calls into master-run task types' drivers (master/logical.py): start the attempts just inserted
RUNNING, poll running ones, cancel them — each call in a savepoint of the caller's fenced
transaction — and load the instances a driver made ours (a child it created or resumed)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from coord.zk import ZkClient
from core.states import TaskState
from db import attempts as q_attempts
from db import instances as q_instances
from master import logical
from master.owned import InstanceCache, OwnedInstance
from master.timers import Timers

log = logging.getLogger(__name__)

S = TaskState


class Drivers:
    def __init__(self, cache: InstanceCache, timers: Timers, zk: ZkClient | None) -> None:
        self.cache = cache
        self.timers = timers
        self.zk = zk

    @property
    def actor(self) -> str:
        return self.cache.actor

    def _ctx(
        self, inst: OwnedInstance, name: str, params: dict[str, str]
    ) -> logical.LogicalContext:
        ident = self.cache.identity
        return logical.LogicalContext(
            sf=self.cache.sf,
            zk=self.zk,
            master_id=ident.master_id,
            epoch=ident.epoch,
            instance=inst.row,
            spec=inst.spec,
            task=inst.spec.task(name),
            params=params,
        )

    def drive(
        self,
        s: Session,
        inst: OwnedInstance,
        row: q_attempts.AttemptRow,
        call: str,
        born: list[int],
        params: dict[str, str] | None = None,
        target: TaskState = S.KILL,
    ) -> q_attempts.AttemptRow | None:
        """Call a driver's ``start``, ``poll`` or ``cancel`` in a savepoint of the caller's fenced
        transaction and apply a final verdict (the attempt still RUNNING); returns the final row.
        A driver that raises on start fails the attempt; on poll or cancel it is polled again."""
        task = inst.spec.task(row.name)
        drv = logical.driver_for(task.type)
        now = datetime.now(UTC)
        if drv is None:
            return None
        ctx = self._ctx(inst, row.name, params or {})
        try:
            with s.begin_nested():
                if call == "start":
                    v = drv.start(ctx, s, row.id, now)
                elif call == "poll":
                    v = drv.poll(ctx, s, row, now)
                else:
                    v = drv.cancel(ctx, s, row, target, now)
                final = v.state is not None and v.state != S.RUNNING
                if final and not q_attempts.finish_master_run(
                    s, row.id, v.state.value if v.state else "", v.output, v.reason
                ):
                    final = False
        except Exception as exc:
            log.exception(
                "%s: instance %d task %s (%d): %s %s failed",
                self.actor,
                inst.row.id,
                row.name,
                row.id,
                task.type,
                call,
            )
            if call != "start":
                self.timers.wake(inst, now + timedelta(seconds=logical.RETRY_AFTER_ERROR_S))
                return None
            v = logical.Verdict(S.FAILURE, reason=f"{task.type} could not start: {exc}")
            final = q_attempts.finish_master_run(s, row.id, S.FAILURE.value, {}, v.reason)
        born.extend(ctx.new_instances)
        if v.wake_at is not None:
            self.timers.wake(inst, v.wake_at)
        if not final or v.state is None:
            return None
        log.info(
            "%s: instance %d task %s (%d) %s%s",
            self.actor,
            inst.row.id,
            row.name,
            row.id,
            v.state.value,
            f": {v.reason}" if v.reason else "",
        )
        return replace(row, state=v.state.value, end_time=now, output={**row.output, **v.output})

    def start_all(
        self, s: Session, created: list[q_attempts.CreatedAttempt], new: list[q_attempts.NewAttempt]
    ) -> tuple[dict[int, q_attempts.AttemptRow], list[int]]:
        """Start the master-run attempts just inserted RUNNING, in the same transaction; returns
        the ones that finished at once and the instances the drivers made ours."""
        finals: dict[int, q_attempts.AttemptRow] = {}
        born: list[int] = []
        running = {(a.workflow_instance_id, a.name): a for a in new if a.state == S.RUNNING}
        if not running:
            return finals, born
        for c in created:
            a = running.get((c.workflow_instance_id, c.name))
            inst = self.cache.owned.get(c.workflow_instance_id)
            if a is None or inst is None:
                continue
            row = q_attempts.AttemptRow(
                c.id, c.workflow_instance_id, c.name, a.attempt, S.RUNNING.value, {}, None,
                priority=c.priority, worker_group=c.worker_group,
            )  # fmt: skip
            params = {str(k): str(v) for k, v in (a.spec.get("params") or {}).items()}
            final = self.drive(s, inst, row, "start", born, params)
            if final is not None:
                finals[c.id] = final
        return finals, born

    def poll(self, polls: list[tuple[OwnedInstance, q_attempts.AttemptRow]]) -> set[int]:
        """Poll RUNNING master-run attempts in one fenced transaction; returns the instances
        that the drivers made ours (children to load and step)."""
        ident = self.cache.identity
        born: list[int] = []
        finals: list[tuple[OwnedInstance, q_attempts.AttemptRow]] = []
        with self.cache.sf.begin() as s:
            ids = sorted({i.row.id for i, _ in polls})
            mine = q_instances.lock_owned(s, ids, ident.master_id, ident.epoch)
            ours = [(i, r) for i, r in polls if i.row.id in mine]
            params = q_attempts.params_of(s, [r.id for _, r in ours])
            for inst, r in ours:
                final = self.drive(s, inst, r, "poll", born, params.get(r.id))
                if final is not None:
                    finals.append((inst, final))
        for inst, final in finals:
            if inst.attempts is not None:
                inst.attempts[final.id] = final
        return self.load_born(born)

    def load_born(self, born: list[int]) -> set[int]:
        """Load the instances a driver made ours (a child it created or resumed)."""
        if not born:
            return set()
        loaded = set(self.cache.load(sorted(set(born))))
        with self.cache.sf.begin() as s:  # a resumed child has attempts already
            rows = q_attempts.load_for_instances(s, sorted(loaded))
        self.cache.fill(rows, sorted(loaded))
        log.info("%s: instances %s start (children)", self.actor, sorted(loaded))
        return loaded
