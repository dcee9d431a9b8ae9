"""The event-driven workflow runner: holds the owned instances in memory, and for each instance
that changed runs the pure decision, writes new attempts, queues them, and finishes instances."""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from coord import signals
from coord.queue import QueueKey, TaskQueue, format_key
from coord.zk import ZkClient
from core import branching
from core import dag as dag_mod
from core import params as params_mod
from core import task_types as types_mod
from core.errors import ValidationError
from core.spec import TaskSpec, WorkflowSpec, parse_workflow_spec
from core.states import WORKFLOW_TERMINAL, Priority, TaskState, WorkflowState
from db import attempts as q_attempts
from db import instances as q_instances
from db import serial as q_serial
from db.engine import SessionFactory
from master import logical
from master.decide import (
    BRANCH_KEY,
    AttemptView,
    Decision,
    Mode,
    decide,
    visible_attempts,
)

log = logging.getLogger(__name__)

# A step that wrote final rows (skips, branch results) decides again at once, up to this often.
MAX_PASSES = 64
# How soon an instance with tasks held back by a full task group looks again.
TASK_GROUP_RECHECK_S = 0.5
# How often a master holding attempts back from a full ZooKeeper queue looks for room.
QUEUE_RECHECK_S = 0.2
# A step decides over the whole instance (about 8 us per task), so a large instance is stepped
# at most once per this much per task (capped): its task events arriving meanwhile are batched
# into one step, and deciding takes at most about a fifth of the master's time.
PACE_PER_TASK_S = 0.00004
PACE_MAX_S = 0.25


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
    done: bool = False
    priorities: dict[str, int] = field(default_factory=dict)
    # attempt id -> row; None until the first full load (then kept current incrementally)
    attempts: dict[int, q_attempts.AttemptRow] | None = None
    # a rerun ignores attempts up to this id; a recovery keeps their successes
    since_id: int = 0
    keep_successes: bool = False
    logical: frozenset[str] = frozenset()
    wakes: set[datetime] = field(default_factory=set)
    kill_sent: dict[int, float] = field(default_factory=dict)  # attempt id -> monotonic time
    waiting: str | None = None  # the reason last written on the row
    timeout_warned: bool = False
    # attempt id -> (row, its AttemptView): decisions reuse views of rows that did not change
    views: dict[int, tuple[q_attempts.AttemptRow, AttemptView]] = field(default_factory=dict)
    # tasks whose type a registered driver runs on this master (master/logical.py)
    driven: frozenset[str] = frozenset()
    # master-run attempt id -> the cancel (KILL or PAUSE) its driver was already asked for
    driver_cancel: dict[int, TaskState] = field(default_factory=dict)

    @property
    def failure_strategy(self) -> str:
        return str(self.row.run_options.get("failure_strategy") or "CONTINUE").upper()

    @property
    def dry_run(self) -> bool:
        return bool(self.row.run_options.get("dry_run"))


def run_scope(spec: WorkflowSpec, dag: dag_mod.Dag, options: dict[str, object]) -> set[str] | None:
    """The tasks a run covers: all, or its start nodes widened by the depend mode (TASK_POST,
    the default: and everything downstream; TASK_PRE: and everything upstream; TASK_ONLY)."""
    start = options.get("start_nodes")
    if not start or not isinstance(start, list):
        return None
    base = {str(n) for n in start} & set(dag.deps)
    mode = str(options.get("depend_mode") or "TASK_POST").upper()
    if mode == "TASK_POST":
        return base | dag_mod.descendants(dag, base)
    if mode == "TASK_PRE":
        return base | dag_mod.ancestors(dag, base)
    return base


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
        self.queue = task_queue
        self.zk = zk
        self.kill_grace_s = kill_grace_s
        self.high_water = queue_high_water
        # worker groups where some of our SUBMITTED attempts wait in PostgreSQL for queue space
        self._held: set[str] = set()
        self._held_counts: dict[tuple[int, str], int] = {}
        self._queue_reason: dict[int, str | None] = {}  # instance -> the reason we last wrote
        self._next_refill = 0.0
        self._last_step: dict[int, float] = {}  # instance -> monotonic time of its last step
        self._deferred: set[int] = set()  # instances with task events not stepped yet
        self._deferred_changed: set[int] = set()
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
            cur = self.owned.get(r.id)
            if cur is None:
                dag = spec.to_dag()
                self.owned[r.id] = OwnedInstance(
                    row=r,
                    spec=spec,
                    dag=dag,
                    scope=run_scope(spec, dag, r.run_options),
                    priorities={t.name: Priority.parse(t.priority).value for t in spec.tasks},
                    since_id=int(r.run_options.get("since_task_id") or 0),
                    keep_successes=bool(r.run_options.get("keep_successes")),
                    logical=frozenset(t.name for t in spec.tasks if types_mod.is_logical(t.type)),
                    driven=frozenset(
                        t.name for t in spec.tasks if logical.driver_for(t.type) is not None
                    ),
                )
            else:
                cur.row = r
            loaded.append(r.id)
        if ids is not None:
            for gone in set(ids) - set(loaded):
                self.owned.pop(gone, None)  # paused, finished or taken over meanwhile
        return loaded

    def _fail_unrunnable(self, instance_id: int, why: str) -> None:
        with self.sf.begin() as s:
            q_instances.finish(
                s,
                instance_id,
                WorkflowState.FAILURE,
                self.identity.master_id,
                self.identity.epoch,
                why,
            )
        log.error("%s: instance %d FAILURE: %s", self.actor, instance_id, why)

    # timers ------------------------------------------------------------------------------
    def next_timer(self) -> datetime | None:
        return self._timers[0][0] if self._timers else None

    def due_timers(self, now: datetime) -> set[int]:
        due = set()
        while self._timers and self._timers[0][0] <= now:
            when, iid = heapq.heappop(self._timers)
            inst = self.owned.get(iid)
            if inst is not None:
                inst.wakes.discard(when)
                due.add(iid)
        return due

    def _wake(self, inst: OwnedInstance, when: datetime) -> None:
        if when not in inst.wakes:
            inst.wakes.add(when)
            heapq.heappush(self._timers, (when, inst.row.id))

    # the step ----------------------------------------------------------------------------
    def step(self, instance_ids: set[int], changed: set[int] | None = None) -> None:
        """Decide and act for each of ``instance_ids`` that we own. ``changed`` names attempts
        known to have changed; instances without a cache, or stepped without ``changed``
        (reconcile, timers), are reloaded in full."""
        ids = [i for i in instance_ids if i in self.owned]
        if not ids:
            return
        full = [i for i in ids if self.owned[i].attempts is None or changed is None]
        with self.sf.begin() as s:
            rows = q_attempts.load_for_instances(s, full)
            if changed:
                rows += q_attempts.load_by_ids(s, sorted(changed))
        for i in full:
            self.owned[i].attempts = {}
        polls: list[tuple[OwnedInstance, q_attempts.AttemptRow]] = []
        for r in rows:
            inst = self.owned.get(r.workflow_instance_id)
            # FANOUT sub-executions (parent_id set) belong to their FANOUT attempt's driver,
            # which reads them itself: they are not DAG tasks and stay out of the cache
            if inst is not None and inst.attempts is not None and r.parent_id is None:
                inst.attempts[r.id] = r
                if inst.driven and _master_run(inst, r):
                    polls.append((inst, r))  # after a (re)load, or it or what it owns changed
        if polls:
            ids = sorted(set(ids) | self._poll(polls))
        for _ in range(MAX_PASSES):
            again = self._pass([i for i in ids if i in self.owned])
            if not again:
                break
            ids = sorted(again)

    def _mode(self, inst: OwnedInstance, now: datetime) -> Mode:
        state = inst.row.state
        if state == WorkflowState.READY_STOP.value:
            return Mode.STOP
        spec, start = inst.spec, inst.row.start_time
        if spec.timeout_s is not None and start is not None:
            deadline = start + timedelta(seconds=spec.timeout_s)
            if now < deadline:
                self._wake(inst, deadline)
            else:
                if spec.timeout_strategy != "FAILED" and not inst.timeout_warned:
                    inst.timeout_warned = True
                    self._alert(
                        inst, "WORKFLOW_TIMEOUT", f"instance {inst.row.id} ran past its timeout"
                    )
                if spec.timeout_strategy != "WARN":
                    return Mode.FAIL
        if state == WorkflowState.READY_PAUSE.value:
            return Mode.PAUSE
        return Mode.RUN

    def _alert(self, inst: OwnedInstance, kind: str, title: str) -> None:
        content = {"instance_id": inst.row.id, "workflow": inst.spec.name, "master": self.actor}
        with self.sf.begin() as s:
            q_instances.add_alert(s, kind, title, content, inst.row.id)
        log.warning("%s: instance %d: %s", self.actor, inst.row.id, title)

    def _pass(self, ids: list[int]) -> set[int]:
        """One decision per instance and one transaction for all of them; returns the instances
        that wrote final rows and must decide again."""
        now = datetime.now(UTC)
        new: list[q_attempts.NewAttempt] = []
        finishing: dict[int, tuple[WorkflowState, str]] = {}
        cancels: list[tuple[OwnedInstance, q_attempts.AttemptRow, TaskState]] = []
        for iid in ids:
            inst = self.owned[iid]
            rows = list((inst.attempts or {}).values())
            numbers: dict[str, int] = {}
            for r in rows:
                numbers[r.name] = max(numbers.get(r.name, 0), r.attempt)
            views = visible_attempts(
                [_view(inst, r) for r in rows],
                inst.since_id,
                inst.keep_successes,
                inst.logical,
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
                self._wake(inst, d.wake_at)
            if d.create or d.skip or d.cancel:
                log.debug("%s: instance %d: %s", self.actor, iid, d.reason)
            if d.cancel:
                visible = {v.id for v in views}
                latest = {r.name: r for r in sorted(rows, key=lambda r: r.attempt)}
                for name in d.cancel:
                    row = latest.get(name)
                    if row is not None and row.id in visible:
                        cancels.append((inst, row, d.cancel_state))
            if d.create or d.skip:
                new.extend(self._rows_for(inst, d, rows, {v.id for v in views}))
        return self._write(new, finishing, cancels)

    def _rows_for(
        self,
        inst: OwnedInstance,
        d: Decision,
        rows: list[q_attempts.AttemptRow],
        visible: set[int],
    ) -> list[q_attempts.NewAttempt]:
        outputs = _latest_outputs([r for r in rows if r.id in visible])
        out = []
        for c in d.create:
            task = inst.spec.task(c.name)
            a = self._new_attempt(inst, c.name, c.attempt, outputs)
            if task.type in branching.BRANCH_TYPES:
                a = self._route(inst, task, a, rows, visible)
            elif task.name in inst.driven:
                if inst.dry_run:
                    a = replace(a, state="SUCCESS", reason="dry run: not executed")
                else:
                    a = replace(a, state="RUNNING")  # its driver starts it in the same transaction
            elif types_mod.is_logical(task.type):
                a = replace(
                    a, state="FAILURE", reason=f"{task.type} tasks are not supported by this master"
                )
            elif inst.dry_run:
                a = replace(a, state="SUCCESS", reason="dry run: not executed")
            elif task.task_group:
                a = replace(a, task_group=task.task_group)
            out.append(a)
        for k in d.skip:
            task = inst.spec.task(k.name)
            out.append(
                q_attempts.NewAttempt(
                    workflow_instance_id=inst.row.id,
                    name=k.name,
                    type=task.type,
                    attempt=k.attempt,
                    priority=inst.priorities[k.name],
                    worker_group=task.worker_group,
                    spec={},
                    state="SKIPPED",
                    reason=k.reason,
                )
            )
        return out

    def _route(
        self,
        inst: OwnedInstance,
        task: TaskSpec,
        a: q_attempts.NewAttempt,
        rows: list[q_attempts.AttemptRow],
        visible: set[int],
    ) -> q_attempts.NewAttempt:
        """Evaluate a CONDITIONS or SWITCH node now: a final row naming the chosen tasks."""
        latest: dict[str, q_attempts.AttemptRow] = {}
        for r in sorted(rows, key=lambda r: r.attempt):
            if r.id in visible:
                latest[r.name] = r
        fields = task.model_dump()
        try:
            if task.type == branching.CONDITIONS:
                ok = all(
                    latest[u].state in ("SUCCESS", "FORCED_SUCCESS")
                    for u in task.depends_on
                    if u in latest
                )
                route = branching.route_conditions(fields, ok)
            else:
                env = {str(k): str(v) for k, v in (a.spec.get("env") or {}).items()}
                route = branching.route_switch(fields, env)
        except branching.ExpressionError as exc:
            return replace(a, state="FAILURE", reason=str(exc))
        chosen = ",".join(route.chosen)
        return replace(
            a,
            state="SUCCESS",
            output={BRANCH_KEY: chosen},
            reason=f"{route.reason}: {chosen or 'nothing'}",
        )

    def _gate(
        self, s: Session, new: list[q_attempts.NewAttempt]
    ) -> tuple[list[q_attempts.NewAttempt], dict[int, list[str]]]:
        """Hold back attempts whose task group is full; slots are counted from live attempts
        under a per-group lock, so masters cannot overrun a limit together."""
        grouped = [a for a in new if a.task_group and a.state == "SUBMITTED"]
        if not grouped:
            return new, {}
        slots = q_attempts.task_group_free_slots(s, [str(a.task_group) for a in grouped])
        free = {g: cap - used for g, (cap, used) in slots.items()}
        keep = [a for a in new if not (a.task_group and a.state == "SUBMITTED")]
        waiting: dict[int, list[str]] = {}
        order = sorted(grouped, key=lambda a: (a.priority, a.workflow_instance_id, a.name))
        for a in order:
            g = str(a.task_group)
            if free.get(g, 0) > 0:
                free[g] -= 1
                keep.append(a)
                continue
            why = "does not exist" if g not in slots else f"full, {slots[g][0]} slot(s)"
            waiting.setdefault(a.workflow_instance_id, []).append(
                f"{a.name} waits for task group {g} ({why})"
            )
        return keep, waiting

    def _write(
        self,
        new: list[q_attempts.NewAttempt],
        finishing: dict[int, tuple[WorkflowState, str]],
        cancels: list[tuple[OwnedInstance, q_attempts.AttemptRow, TaskState]],
    ) -> set[int]:
        master, epoch = self.identity.master_id, self.identity.epoch
        # master-run attempts are cancelled through their drivers, once per target
        drive = [
            (i, r, st)
            for i, r, st in cancels
            if _master_run(i, r) and i.driver_cancel.get(r.id) != st
        ]
        cancels = [(i, r, st) for i, r, st in cancels if not _master_run(i, r)]
        unstarted = [(i, r, st) for i, r, st in cancels if r.state != "RUNNING"]
        running = [(i, r) for i, r, st in cancels if r.state == "RUNNING" and st == TaskState.KILL]
        touched = {a.workflow_instance_id for a in new} | set(finishing)
        touched |= {i.row.id for i, _, _ in cancels} | {i.row.id for i, _, _ in drive}
        mono = time.monotonic()
        overdue = [
            (i, r)
            for i, r in running
            if r.id in i.kill_sent and mono - i.kill_sent[r.id] >= self.kill_grace_s
        ]
        if not touched:
            return set()
        with self.sf.begin() as s:
            mine = q_instances.lock_owned(s, sorted(touched), master, epoch)
            keep, waiting = self._gate(s, [a for a in new if a.workflow_instance_id in mine])
            created = q_attempts.insert_many(s, keep)
            finals, born = self._start_driven(s, created, keep)
            for inst, r, st in drive:
                if inst.row.id in mine:
                    inst.driver_cancel[r.id] = st
                    v = self._drive(s, inst, r, "cancel", born, target=st)
                    if v is not None:
                        finals[r.id] = v
            moved: set[int] = set()
            for target in (TaskState.KILL, TaskState.PAUSE):
                ids = [r.id for i, r, st in unstarted if st == target and i.row.id in mine]
                moved.update(q_attempts.cancel_unstarted(s, ids, target.value, _why(target)))
            # our cache may be behind (a worker marks RUNNING without waking us): re-read those
            # that did not move, so a running one gets a kill request instead of nothing
            stale = [r.id for i, r, _ in unstarted if i.row.id in mine and r.id not in moved]
            fresh = {r.id: r for r in q_attempts.load_by_ids(s, stale)}
            forced = {
                r.id
                for i, r in overdue
                if i.row.id in mine
                and q_attempts.force_kill(s, r.id, r.lease_token, "no answer to the kill request")
            }
            finished, promoted = [], []
            for iid, (state, reason) in finishing.items():
                if iid in mine and q_instances.finish(s, iid, state, master, epoch, reason):
                    finished.append(iid)
                    spec, wid = self.owned[iid].spec, self.owned[iid].row.workflow_id
                    if state in WORKFLOW_TERMINAL and spec.execution_type != "PARALLEL":
                        nxt = q_serial.promote_next(s, wid, spec.execution_type, master, epoch)
                        if nxt is not None:
                            promoted.append(nxt)
            for iid in mine:
                held = self.owned.get(iid)
                why = "; ".join(waiting[iid]) if iid in waiting else None
                if held is not None and iid not in finishing and why != held.waiting:
                    q_instances.set_reason(s, iid, why, master, epoch)
                    held.waiting = why
        for iid in touched - mine:
            log.warning("%s: instance %d is no longer ours; dropping it", self.actor, iid)
            self.owned.pop(iid, None)
        again: set[int] = set()
        states = {(a.workflow_instance_id, a.name): a for a in keep}
        for c in created:
            owner = self.owned.get(c.workflow_instance_id)
            a = states[(c.workflow_instance_id, c.name)]
            if owner is not None and owner.attempts is not None:
                row = q_attempts.AttemptRow(
                    c.id,
                    c.workflow_instance_id,
                    c.name,
                    a.attempt,
                    a.state,
                    a.output or {},
                    datetime.now(UTC) if a.state not in ("SUBMITTED", "RUNNING") else None,
                    priority=c.priority,
                    worker_group=c.worker_group,
                )
                owner.attempts[c.id] = finals.pop(c.id, row)
                if owner.attempts[c.id].state not in ("SUBMITTED", "RUNNING"):
                    again.add(c.workflow_instance_id)
        for tid, final in finals.items():  # master-run attempts that a cancel finished
            owner = self.owned.get(final.workflow_instance_id)
            if owner is not None and owner.attempts is not None:
                owner.attempts[tid] = final
                again.add(owner.row.id)
        again |= self._load_born(born)
        for inst, r, st in unstarted:
            now_row = fresh.get(r.id)
            if now_row is None or inst.attempts is None:
                continue
            inst.attempts[r.id] = now_row
            again.add(inst.row.id)
            if now_row.state == "RUNNING" and st == TaskState.KILL:
                running.append((inst, now_row))
        self._after_cancel(unstarted, running, moved, forced, again)
        now = datetime.now(UTC)
        for iid in waiting:
            if iid in self.owned:
                self._wake(self.owned[iid], now + timedelta(seconds=TASK_GROUP_RECHECK_S))
        for iid in finished:
            end, reason = finishing[iid]
            log.info("%s: instance %d %s (%s)", self.actor, iid, end.value, reason)
            self.owned.pop(iid, None)
        self.dispatch(
            [c for c in created if states[(c.workflow_instance_id, c.name)].state == "SUBMITTED"]
        )
        for iid in self.load_owned(promoted) if promoted else []:
            log.info("%s: instance %d starts (next serial run)", self.actor, iid)
            self.owned[iid].attempts = {}
            again.add(iid)
        return again

    # master-run attempts (master/logical.py) ----------------------------------------------
    def _ctx(
        self, inst: OwnedInstance, name: str, params: dict[str, str]
    ) -> logical.LogicalContext:
        return logical.LogicalContext(
            sf=self.sf,
            zk=self.zk,
            master_id=self.identity.master_id,
            epoch=self.identity.epoch,
            instance=inst.row,
            spec=inst.spec,
            task=inst.spec.task(name),
            params=params,
        )

    def _drive(
        self,
        s: Session,
        inst: OwnedInstance,
        row: q_attempts.AttemptRow,
        call: str,
        born: list[int],
        params: dict[str, str] | None = None,
        target: TaskState = TaskState.KILL,
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
                final = v.state is not None and v.state != TaskState.RUNNING
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
                self._wake(inst, now + timedelta(seconds=logical.RETRY_AFTER_ERROR_S))
                return None
            v = logical.Verdict(TaskState.FAILURE, reason=f"{task.type} could not start: {exc}")
            final = q_attempts.finish_master_run(s, row.id, "FAILURE", {}, v.reason)
        born.extend(ctx.new_instances)
        if v.wake_at is not None:
            self._wake(inst, v.wake_at)
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

    def _start_driven(
        self, s: Session, created: list[q_attempts.CreatedAttempt], new: list[q_attempts.NewAttempt]
    ) -> tuple[dict[int, q_attempts.AttemptRow], list[int]]:
        """Start the master-run attempts just inserted RUNNING, in the same transaction."""
        finals: dict[int, q_attempts.AttemptRow] = {}
        born: list[int] = []
        running = {(a.workflow_instance_id, a.name): a for a in new if a.state == "RUNNING"}
        if not running:
            return finals, born
        for c in created:
            a = running.get((c.workflow_instance_id, c.name))
            inst = self.owned.get(c.workflow_instance_id)
            if a is None or inst is None:
                continue
            row = q_attempts.AttemptRow(
                c.id, c.workflow_instance_id, c.name, a.attempt, "RUNNING", {}, None,
                priority=c.priority, worker_group=c.worker_group,
            )  # fmt: skip
            params = {str(k): str(v) for k, v in (a.spec.get("params") or {}).items()}
            final = self._drive(s, inst, row, "start", born, params)
            if final is not None:
                finals[c.id] = final
        return finals, born

    def _poll(self, polls: list[tuple[OwnedInstance, q_attempts.AttemptRow]]) -> set[int]:
        """Poll RUNNING master-run attempts in one fenced transaction; returns the instances
        that the drivers made ours (children to load and step)."""
        master, epoch = self.identity.master_id, self.identity.epoch
        born: list[int] = []
        finals: list[tuple[OwnedInstance, q_attempts.AttemptRow]] = []
        with self.sf.begin() as s:
            mine = q_instances.lock_owned(s, sorted({i.row.id for i, _ in polls}), master, epoch)
            ours = [(i, r) for i, r in polls if i.row.id in mine]
            params = q_attempts.params_of(s, [r.id for _, r in ours])
            for inst, r in ours:
                final = self._drive(s, inst, r, "poll", born, params.get(r.id))
                if final is not None:
                    finals.append((inst, final))
        for inst, final in finals:
            if inst.attempts is not None:
                inst.attempts[final.id] = final
        return self._load_born(born)

    def _load_born(self, born: list[int]) -> set[int]:
        """Load the instances a driver made ours (a child it created or resumed)."""
        if not born:
            return set()
        loaded = set(self.load_owned(sorted(set(born))))
        with self.sf.begin() as s:  # a resumed child has attempts already
            rows = q_attempts.load_for_instances(s, sorted(loaded))
        for iid in loaded:
            self.owned[iid].attempts = {}
        for r in rows:
            attempts = self.owned[r.workflow_instance_id].attempts
            if attempts is not None and r.parent_id is None:
                attempts[r.id] = r
        log.info("%s: instances %s start (children)", self.actor, sorted(loaded))
        return loaded

    def _after_cancel(
        self,
        unstarted: list[tuple[OwnedInstance, q_attempts.AttemptRow, TaskState]],
        running: list[tuple[OwnedInstance, q_attempts.AttemptRow]],
        moved: set[int],
        forced: set[int],
        again: set[int],
    ) -> None:
        """Update the cache for cancelled attempts, take their queue entries back, and ask the
        workers holding running ones to kill them (forcing KILL after the grace)."""
        for inst, r, st in unstarted:
            if r.id not in moved or inst.attempts is None:
                continue
            inst.attempts[r.id] = replace(r, state=st.value, end_time=datetime.now(UTC))
            again.add(inst.row.id)
            key = format_key(inst.row.priority, inst.row.id, r.priority, r.id)
            try:
                self.queue.remove(r.worker_group, key)
            except Exception as exc:  # the worker finds it not startable anyway
                log.debug("%s: cannot remove queue entry %s: %s", self.actor, key, exc)
        mono = time.monotonic()
        for inst, r in running:
            if r.id in forced and inst.attempts is not None:
                inst.attempts[r.id] = replace(r, state="KILL", end_time=datetime.now(UTC))
                again.add(inst.row.id)
                log.warning("%s: task %d forced to KILL (worker %s)", self.actor, r.id, r.worker_id)
                continue
            if r.id in inst.kill_sent:
                continue
            inst.kill_sent[r.id] = mono
            self._wake(inst, datetime.now(UTC) + timedelta(seconds=self.kill_grace_s))
            if self.zk is not None and r.worker_id:
                try:
                    signals.request_kill(self.zk, r.worker_id, r.id, self.actor)
                except Exception as exc:
                    log.warning(
                        "%s: cannot ask %s to kill task %d: %s", self.actor, r.worker_id, r.id, exc
                    )

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
            if group in self._held:
                held = True
                continue
            items.sort(key=self._key_of)
            if len(self._push(group, items)) < len(items):
                self._held.add(group)
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
        inst = self.owned.get(c.workflow_instance_id)
        wf_pri = inst.row.priority if inst else Priority.MEDIUM.value
        return QueueKey(wf_pri, c.workflow_instance_id, c.priority, c.id)

    def _push(self, group: str, items: list[q_attempts.CreatedAttempt]) -> list[int]:
        """Push ``items`` (in queue order) as far as the high-water mark allows; mark the pushed
        ones DISPATCHED and return their ids."""
        by_key = {self._key_of(c): c.id for c in items}
        done = self.queue.push_bounded(group, list(by_key), self.high_water)
        ids = [by_key[k] for k in done]
        if ids:
            with self.sf.begin() as s:
                q_attempts.mark_dispatched(s, ids)
            log.debug("%s: dispatched %d attempts to %s", self.actor, len(ids), group)
        return ids

    def refill_wait(self) -> float | None:
        """Seconds until ``refill`` or a paced step wants to run; None when nothing waits."""
        waits = []
        now = time.monotonic()
        if self._held:
            waits.append(self._next_refill - now)
        for iid in self._deferred:
            inst = self.owned.get(iid)
            if inst is not None:
                waits.append(self._last_step.get(iid, 0.0) + _pace(inst) - now)
        return max(0.0, min(waits)) if waits else None

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
            if inst is not None and now - self._last_step.get(iid, 0.0) < _pace(inst):
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

    def refill(self, kick: bool = False, recount: bool = False) -> int:
        """Queue held-back attempts of ours in queue order, as far as the high-water mark allows
        (the group's entry count is read first: one cheap call). Runs when ``kick``ed (a task of
        ours changed) or on a short timer; pushes once the room is worth a query (a tenth of the
        mark, or all that wait). Returns how many were queued."""
        if not self._held:
            return 0
        mono = time.monotonic()
        if not kick and mono < self._next_refill:
            return 0
        self._next_refill = mono + QUEUE_RECHECK_S
        ids = sorted(self.owned)
        pushed = 0
        for group in sorted(self._held):
            room = self.high_water - self.queue.depth(group)
            waiting = sum(n for (_, g), n in self._held_counts.items() if g == group)
            if room <= 0 or (room < max(1, min(self.high_water // 10, 500)) and room < waiting):
                continue
            with self.sf.begin() as s:
                rows = q_attempts.submitted_in_order(s, ids, group, room + 1)
            todo = rows[:room]
            done = self._push(group, todo)
            pushed += len(done)
            recount = True
            if len(rows) <= room and len(done) == len(todo):
                self._held.discard(group)
                log.info("%s: queue %s has room again; nothing waits", self.actor, group)
        if recount:
            self._note_waiting()
        return pushed

    def _note_waiting(self) -> None:
        """Count our attempts that wait for queue space and say so in their instances' reason."""
        owned = sorted(self.owned)
        with self.sf.begin() as s:
            self._held_counts = q_attempts.submitted_counts(s, owned)
            per: dict[int, int] = {}
            for (iid, group), n in self._held_counts.items():
                if group in self._held:
                    per[iid] = per.get(iid, 0) + n
            for iid in sorted(set(per) | set(self._queue_reason)):
                inst = self.owned.get(iid)
                if inst is None:
                    self._queue_reason.pop(iid, None)
                    continue
                parts = [inst.waiting] if inst.waiting else []
                if per.get(iid):
                    parts.append(f"{per[iid]} attempts wait for queue space")
                why = "; ".join(parts) or None
                if why != self._queue_reason.get(iid, inst.waiting):
                    q_instances.set_reason(
                        s, iid, why, self.identity.master_id, self.identity.epoch
                    )
                if per.get(iid):
                    self._queue_reason[iid] = why
                else:
                    self._queue_reason.pop(iid, None)

    def requeue_submitted(self) -> int:
        """Queue attempts that were committed but never queued (a crash or a ZooKeeper outage
        between the two, or held back by the high-water mark), in queue order and up to the
        mark; returns how many were queued."""
        with self.sf.begin() as s:
            counts = q_attempts.submitted_counts(s, list(self.owned))
        self._held |= {g for _, g in counts}
        self._held_counts = counts
        return self.refill(kick=True, recount=bool(counts))

    def _new_attempt(
        self, inst: OwnedInstance, name: str, attempt: int, outputs: dict[str, dict[str, str]]
    ) -> q_attempts.NewAttempt:
        task = inst.spec.task(name)
        spec = task.model_dump()
        startup = {str(k): str(v) for k, v in (inst.row.params or {}).items()}
        # base time of the built-ins: stable across attempts, retries and master failover
        base = inst.row.schedule_time or inst.row.start_time or datetime.now(UTC)
        try:
            upstream = params_mod.merge_upstream_outputs(task.depends_on, outputs)
            resolved = params_mod.resolve_task_params(
                inst.spec.params, upstream, startup, task.params, base, inst.spec.timezone
            )
            spec["env"] = params_mod.params_to_env(resolved)
            if name in inst.driven:
                spec["params"] = resolved  # what its driver gets (LogicalContext.params)
            if task.type == "SHELL" and task.command:
                spec["command"] = params_mod.render_shell(
                    task.command, resolved, base, inst.spec.timezone
                )
        except ValidationError as exc:  # the worker fails the attempt with this reason
            log.warning("%s: instance %d task %s: %s", self.actor, inst.row.id, name, exc.message)
            spec["env"] = {}
            spec["render_error"] = exc.message
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


def _master_run(inst: OwnedInstance, r: q_attempts.AttemptRow) -> bool:
    """A RUNNING attempt that a driver on this master runs (no worker holds it)."""
    return r.state == "RUNNING" and r.worker_id is None and r.name in inst.driven


def _pace(inst: OwnedInstance) -> float:
    return min(PACE_MAX_S, len(inst.dag.deps) * PACE_PER_TASK_S)


def _view(inst: OwnedInstance, r: q_attempts.AttemptRow) -> AttemptView:
    """The decision's view of a cached row, built once per row version (rows are immutable)."""
    hit = inst.views.get(r.id)
    if hit is not None and hit[0] is r:
        return hit[1]
    view = AttemptView(r.name, r.attempt, TaskState(r.state), r.end_time, r.id, r.output)
    inst.views[r.id] = (r, view)
    return view


def _why(state: TaskState) -> str:
    return "paused before it started" if state == TaskState.PAUSE else "cancelled before it ran"


def _latest_outputs(rows: list[q_attempts.AttemptRow]) -> dict[str, dict[str, str]]:
    best: dict[str, q_attempts.AttemptRow] = {}
    for r in rows:
        if r.state in (TaskState.SUCCESS.value, TaskState.FORCED_SUCCESS.value):
            cur = best.get(r.name)
            if cur is None or r.attempt > cur.attempt:
                best[r.name] = r
    return {
        n: {str(k): str(v) for k, v in (r.output or {}).items() if not str(k).startswith("__")}
        for n, r in best.items()
    }
