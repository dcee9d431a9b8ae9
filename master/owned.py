"""The instances a master owns, held in memory: each one's row, parsed spec, DAG, run scope and
attempt cache, and the cache itself (load from PostgreSQL, drop on session loss, fail what cannot
be loaded)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from core import dag as dag_mod
from core import task_types
from core.errors import ValidationError
from core.spec import WorkflowSpec, parse_workflow_spec
from core.states import Priority, TaskState, WorkflowState
from db import attempts as q_attempts
from db import instances as q_instances
from db.engine import SessionFactory
from master import logical, observe
from master.decide import AttemptView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    master_id: str
    epoch: int

    @property
    def actor(self) -> str:
        return f"master {self.master_id}@{self.epoch}"


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
    order: list[str] = field(default_factory=list)  # topological: how decisions judge tasks
    errors: int = 0  # passes in a row that raised on this instance
    observed: set[int] = field(default_factory=set)  # finished attempts counted in metrics
    # task name -> (attempt, end time) of its newest ended attempt: hand-off metrics read it
    # instead of scanning every attempt of the instance per finished one
    ends: dict[str, tuple[int, datetime]] = field(default_factory=dict)

    @property
    def failure_strategy(self) -> str:
        return str(self.row.run_options.get("failure_strategy") or "CONTINUE").upper()

    @property
    def dry_run(self) -> bool:
        return bool(self.row.run_options.get("dry_run"))

    def master_run(self, r: q_attempts.AttemptRow) -> bool:
        """A RUNNING attempt that a driver on this master runs (no worker holds it)."""
        return r.state == TaskState.RUNNING and r.worker_id is None and r.name in self.driven


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


def new_owned(row: q_instances.InstanceRow, spec: WorkflowSpec) -> OwnedInstance:
    dag = spec.to_dag()
    return OwnedInstance(
        row=row,
        spec=spec,
        dag=dag,
        scope=run_scope(spec, dag, row.run_options),
        priorities={t.name: Priority.parse(t.priority).value for t in spec.tasks},
        since_id=int(row.run_options.get("since_task_id") or 0),
        keep_successes=bool(row.run_options.get("keep_successes")),
        logical=frozenset(t.name for t in spec.tasks if task_types.is_logical(t.type)),
        driven=frozenset(t.name for t in spec.tasks if logical.driver_for(t.type) is not None),
        order=dag_mod.topological_order(dag),
    )


class InstanceCache:
    """``owned``: instance id -> OwnedInstance, for the master identity ``identity``."""

    def __init__(self, sf: SessionFactory) -> None:
        self.sf = sf
        self.identity = Identity("", 0)
        self.owned: dict[int, OwnedInstance] = {}
        self._specs: dict[tuple[int, int], WorkflowSpec] = {}

    @property
    def actor(self) -> str:
        return self.identity.actor

    def drop_all(self) -> None:
        """Forget every owned instance (session lost: someone else will adopt them)."""
        if self.owned:
            log.warning("%s: dropping %d owned instances", self.actor, len(self.owned))
        self.owned.clear()

    def load(self, ids: list[int] | None = None) -> list[int]:
        """(Re)load our instances from PostgreSQL; return the ids now held in memory."""
        master, epoch = self.identity.master_id, self.identity.epoch
        with self.sf.begin() as s:
            rows = q_instances.load_owned(s, master, epoch, ids)
            missing = {(r.workflow_id, r.version) for r in rows} - set(self._specs)
            raw = q_attempts.load_versions(s, sorted(missing))
        invalid: dict[tuple[int, int], str] = {}
        for key, spec_raw in raw.items():
            try:
                self._specs[key] = parse_workflow_spec(spec_raw)
            except ValidationError as exc:
                invalid[key] = exc.message
                log.error("%s: workflow %s v%s no longer valid: %s", self.actor, *key, exc)
        loaded = []
        for r in rows:
            spec = self._specs.get((r.workflow_id, r.version))
            if spec is None:
                why = invalid.get((r.workflow_id, r.version))
                self.fail_unrunnable(
                    r.id,
                    f"its workflow version is no longer valid: {why}"[:1000]
                    if why
                    else "its workflow version cannot be loaded",
                )
                continue
            cur = self.owned.get(r.id)
            if cur is None:
                self.owned[r.id] = new_owned(r, spec)
            else:
                cur.row = r
            loaded.append(r.id)
        if ids is not None:
            for gone in set(ids) - set(loaded):
                self.owned.pop(gone, None)  # paused, finished or taken over meanwhile
        return loaded

    def fail_unrunnable(self, instance_id: int, why: str) -> None:
        master, epoch = self.identity.master_id, self.identity.epoch
        with self.sf.begin() as s:
            q_instances.finish(s, instance_id, WorkflowState.FAILURE, master, epoch, why)
        log.error("%s: instance %d FAILURE: %s", self.actor, instance_id, why)

    def fill(
        self, rows: list[q_attempts.AttemptRow], full: list[int]
    ) -> list[tuple[OwnedInstance, q_attempts.AttemptRow]]:
        """Put freshly read attempt rows into their instances' caches (instances in ``full``
        start from an empty cache); returns the master-run attempts among them, which their
        drivers poll. FANOUT sub-executions (parent_id set) belong to their FANOUT attempt's
        driver, which reads them itself: they are not DAG tasks and stay out."""
        for i in full:
            if i in self.owned:
                self.owned[i].attempts = {}
                self.owned[i].ends = {}
        polls = []
        for r in rows:
            inst = self.owned.get(r.workflow_instance_id)
            if inst is not None and inst.attempts is not None and r.parent_id is None:
                inst.attempts[r.id] = r
                observe.attempt_seen(inst, r)
                if inst.driven and inst.master_run(r):
                    polls.append((inst, r))
        return polls
