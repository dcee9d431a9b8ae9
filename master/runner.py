"""The event-driven workflow runner: holds the owned instances in memory, and for each instance
that changed runs the pure decision, writes new attempts, queues them, and finishes instances."""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from common import dag as dag_mod
from common.db import attempts as q_attempts
from common.db import instances as q_instances
from common.db.engine import SessionFactory
from common.errors import ValidationError
from common.spec import WorkflowSpec, parse_workflow_spec
from common.states import Priority, TaskState, WorkflowState
from common.task_queue import QueueEntry, QueueKey, TaskQueue
from master.decide import AttemptView, decide, resolve_env

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    master_id: str
    epoch: int


@dataclass
class OwnedInstance:
    row: q_instances.InstanceRow
    spec: WorkflowSpec
    dag: dag_mod.Dag
    scope: set[str] | None = None
    wake_at: datetime | None = None
    done: bool = False
    priorities: dict[str, int] = field(default_factory=dict)
    # attempt id -> row; None until the first full load (then kept current incrementally)
    attempts: dict[int, q_attempts.AttemptRow] | None = None

    @property
    def failure_strategy(self) -> str:
        return str(self.row.run_options.get("failure_strategy") or "CONTINUE").upper()


class WorkflowRunner:
    def __init__(self, session_factory: SessionFactory, task_queue: TaskQueue) -> None:
        self.sf = session_factory
        self.queue = task_queue
        self.identity = Identity("", 0)
        self.owned: dict[int, OwnedInstance] = {}
        self._timers: list[tuple[datetime, int]] = []
        self._spec_cache: dict[tuple[int, int], WorkflowSpec] = {}

    @property
    def actor(self) -> str:
        return f"master {self.identity.master_id}@{self.identity.epoch}"

    # ownership ---------------------------------------------------------------------------
    def drop_all(self) -> None:
        """Forget every owned instance (session lost: someone else will adopt them)."""
        if self.owned:
            log.warning("%s: dropping %d owned instances", self.actor, len(self.owned))
        self.owned.clear()
        self._timers.clear()

    def load_owned(self, ids: list[int] | None = None) -> list[int]:
        """(Re)load our instances from PostgreSQL; return the ids now held in memory."""
        with self.sf.begin() as s:
            rows = q_instances.load_owned(s, self.identity.master_id, self.identity.epoch, ids)
            missing = {(r.workflow_id, r.version) for r in rows} - set(self._spec_cache)
            raw = q_attempts.load_versions(s, sorted(missing))
        for key, spec_raw in raw.items():
            try:
                self._spec_cache[key] = parse_workflow_spec(spec_raw)
            except ValidationError as exc:
                log.error("%s: workflow %s v%s no longer valid: %s", self.actor, *key, exc)
        loaded = []
        for r in rows:
            spec = self._spec_cache.get((r.workflow_id, r.version))
            if spec is None:
                self._fail_unrunnable(r.id, "its workflow version cannot be loaded")
                continue
            start_nodes = r.run_options.get("start_nodes") or None
            scope = set(start_nodes) & {t.name for t in spec.tasks} if start_nodes else None
            cur = self.owned.get(r.id)
            if cur is None:
                self.owned[r.id] = OwnedInstance(
                    row=r,
                    spec=spec,
                    dag=spec.to_dag(),
                    scope=scope,
                    priorities={t.name: Priority.parse(t.priority).value for t in spec.tasks},
                )
            else:
                cur.row = r
            loaded.append(r.id)
        return loaded

    def _fail_unrunnable(self, instance_id: int, why: str) -> None:
        with self.sf.begin() as s:
            q_instances.finish(
                s, instance_id, WorkflowState.FAILURE, self.identity.master_id, self.identity.epoch
            )
        log.error("%s: instance %d FAILURE: %s", self.actor, instance_id, why)

    # timers ------------------------------------------------------------------------------
    def next_timer(self) -> datetime | None:
        return self._timers[0][0] if self._timers else None

    def due_timers(self, now: datetime) -> set[int]:
        due = set()
        while self._timers and self._timers[0][0] <= now:
            due.add(heapq.heappop(self._timers)[1])
        return due

    # the step ----------------------------------------------------------------------------
    def step(self, instance_ids: set[int], changed: set[int] | None = None) -> None:
        """Decide and act for each of ``instance_ids`` that we own. ``changed`` names attempts
        known to have changed; instances without a cache, or stepped without ``changed``
        (reconcile, timers), are reloaded in full."""
        ids = [i for i in instance_ids if i in self.owned]
        if not ids:
            return
        now = datetime.now(UTC)
        full = [i for i in ids if self.owned[i].attempts is None or changed is None]
        with self.sf.begin() as s:
            rows = q_attempts.load_for_instances(s, full)
            if changed:
                rows += q_attempts.load_by_ids(s, sorted(changed))
        for i in full:
            self.owned[i].attempts = {}
        for r in rows:
            inst = self.owned.get(r.workflow_instance_id)
            if inst is not None and inst.attempts is not None:
                inst.attempts[r.id] = r
        by_inst: dict[int, list[q_attempts.AttemptRow]] = {
            i: list((self.owned[i].attempts or {}).values()) for i in ids
        }

        new: list[q_attempts.NewAttempt] = []
        finishing: dict[int, tuple[WorkflowState, str]] = {}
        for iid in ids:
            inst = self.owned[iid]
            views = [
                AttemptView(r.name, r.attempt, TaskState(r.state), r.end_time) for r in by_inst[iid]
            ]
            d = decide(inst.spec, inst.dag, views, now, inst.failure_strategy, inst.scope)
            if d.finish is not None:
                finishing[iid] = (d.finish, d.reason)
                continue
            if d.wake_at is not None and d.wake_at != inst.wake_at:
                inst.wake_at = d.wake_at
                heapq.heappush(self._timers, (d.wake_at, iid))
            if d.create:
                log.debug("%s: instance %d: %s", self.actor, iid, d.reason)
                outputs = _latest_outputs(by_inst[iid])
                new.extend(self._new_attempt(inst, c.name, c.attempt, outputs) for c in d.create)

        with self.sf.begin() as s:
            mine = q_instances.lock_owned(
                s,
                [*{a.workflow_instance_id for a in new}, *finishing],
                self.identity.master_id,
                self.identity.epoch,
            )
            created = q_attempts.insert_many(s, [a for a in new if a.workflow_instance_id in mine])
            names = {(a.workflow_instance_id, a.name): a.attempt for a in new}
            finished = []
            for iid, (state, _) in finishing.items():
                if iid in mine and q_instances.finish(
                    s, iid, state, self.identity.master_id, self.identity.epoch
                ):
                    finished.append(iid)
        lost = ({a.workflow_instance_id for a in new} | set(finishing)) - mine
        for iid in lost:
            log.warning("%s: instance %d is no longer ours; dropping it", self.actor, iid)
            self.owned.pop(iid, None)
        for c in created:
            inst = self.owned.get(c.workflow_instance_id)
            if inst is not None and inst.attempts is not None:
                inst.attempts[c.id] = q_attempts.AttemptRow(
                    c.id,
                    c.workflow_instance_id,
                    c.name,
                    names[(c.workflow_instance_id, c.name)],
                    TaskState.SUBMITTED.value,
                    {},
                    None,
                )
        for iid in finished:
            state, reason = finishing[iid]
            log.info("%s: instance %d %s (%s)", self.actor, iid, state.value, reason)
            self.owned.pop(iid, None)
        self.dispatch(created)

    def dispatch(self, created: list[q_attempts.CreatedAttempt]) -> None:
        """Queue committed attempts in ZooKeeper, then mark them DISPATCHED."""
        if not created:
            return
        entries = []
        for c in created:
            inst = self.owned.get(c.workflow_instance_id)
            wf_pri = inst.row.priority if inst else Priority.MEDIUM.value
            entries.append(
                QueueEntry(
                    c.worker_group, QueueKey(wf_pri, c.workflow_instance_id, c.priority, c.id)
                )
            )
        self.queue.push(entries)
        with self.sf.begin() as s:
            q_attempts.mark_dispatched(s, [c.id for c in created])
        log.debug("%s: dispatched %d attempts", self.actor, len(created))

    def requeue_submitted(self) -> int:
        """Queue attempts that were committed but never queued (crash between the two)."""
        with self.sf.begin() as s:
            pending = q_attempts.submitted_of(s, list(self.owned))
        self.dispatch(pending)
        return len(pending)

    def _new_attempt(
        self, inst: OwnedInstance, name: str, attempt: int, outputs: dict[str, dict[str, str]]
    ) -> q_attempts.NewAttempt:
        task = inst.spec.task(name)
        spec = task.model_dump()
        startup = {str(k): str(v) for k, v in (inst.row.params or {}).items()}
        spec["env"] = resolve_env(inst.spec, name, startup, outputs)
        group = task.worker_group
        if group == "default" and inst.row.run_options.get("worker_group"):
            group = str(inst.row.run_options["worker_group"])
        return q_attempts.NewAttempt(
            workflow_instance_id=inst.row.id,
            name=name,
            type=task.type,
            attempt=attempt,
            priority=inst.priorities[name],
            worker_group=group,
            spec=spec,
        )


def _latest_outputs(rows: list[q_attempts.AttemptRow]) -> dict[str, dict[str, str]]:
    best: dict[str, q_attempts.AttemptRow] = {}
    for r in rows:
        if r.state in (TaskState.SUCCESS.value, TaskState.FORCED_SUCCESS.value):
            cur = best.get(r.name)
            if cur is None or r.attempt > cur.attempt:
                best[r.name] = r
    return {n: {str(k): str(v) for k, v in (r.output or {}).items()} for n, r in best.items()}
