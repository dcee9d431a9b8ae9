"""Worker-side helpers: the tests play the master. Rows as a master makes them (definition, version,
RUNNING instance, SUBMITTED attempts of any task type), their keys pushed to the test's real
ZooKeeper queue, and waits on the rows while real workers (the ``start_worker`` fixture) run them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import pid_gone as gone
from sqlalchemy import select

from coord.queue import QueueEntry, QueueKey, TaskQueue
from coord.zk import ZkClient
from db.engine import SessionFactory
from db.models import TaskInstance, WorkflowDefinition, WorkflowInstance, WorkflowVersion
from ops.localserver import wait_for
from worker.server import WorkerServer

TERMINAL = {"SUCCESS", "FAILURE", "KILL", "NEED_FAULT_TOLERANCE"}


@dataclass
class Run:
    workflow_id: int
    instance_id: int
    task_ids: list[int]
    groups: list[str]
    priorities: list[int]


def create_run(sf: SessionFactory, tasks: list[str | dict[str, Any]], wf_priority: int = 2) -> Run:
    """One definition + version + RUNNING instance + SUBMITTED attempts t0, t1... as a master
    makes them. A task is a SHELL command or a dict of its fields: ``type`` (SHELL), its
    type-specific fields, ``worker_group`` ("default"), ``priority`` (2) and ``env`` (the resolved
    parameters)."""
    specs, priorities = [], []
    for i, t in enumerate(tasks):
        sp = {"command": t} if isinstance(t, str) else dict(t)
        priorities.append(int(sp.pop("priority", 2)))
        sp = {"name": f"t{i}", "type": "SHELL", "worker_group": "default", **sp}
        specs.append(sp)
    with sf.begin() as s:
        wd = WorkflowDefinition(name=f"wf-{uuid.uuid4().hex[:12]}", latest_version=1)
        s.add(wd)
        s.flush()
        s.add(WorkflowVersion(workflow_id=wd.id, version=1, spec={"name": wd.name, "tasks": specs}))
        s.flush()
        wfi = WorkflowInstance(
            workflow_id=wd.id,
            version=1,
            state="RUNNING",
            priority=wf_priority,
            command_type="START_PROCESS",
            owner="test-master",
            owner_epoch=1,
        )
        s.add(wfi)
        s.flush()
        made = [
            TaskInstance(
                workflow_instance_id=wfi.id,
                name=sp["name"],
                type=str(sp["type"]).upper(),
                attempt=1,
                state="SUBMITTED",
                priority=pri,
                worker_group=sp["worker_group"],
                spec={**sp, "env": sp.get("env", {})},
            )
            for sp, pri in zip(specs, priorities, strict=True)
        ]
        s.add_all(made)
        s.flush()
        return Run(wd.id, wfi.id, [r.id for r in made], [r.worker_group for r in made], priorities)


def push(zk: ZkClient, run: Run, wf_priority: int = 2) -> None:
    """Queue every attempt of ``run`` under its key, as the master's dispatch does."""
    entries = [
        QueueEntry(g, QueueKey(wf_priority, run.instance_id, p, t))
        for t, g, p in zip(run.task_ids, run.groups, run.priorities, strict=True)
    ]
    assert TaskQueue(zk.client, zk.paths).push(entries) == len(entries)


def rows(sf: SessionFactory, ids: list[int]) -> dict[int, TaskInstance]:
    with sf.begin() as s:
        found = s.scalars(select(TaskInstance).where(TaskInstance.id.in_(ids))).all()
        return {r.id: r for r in found}


def wait_rows(
    sf: SessionFactory, ids: list[int], scale: float, states: set[str] = TERMINAL, timeout=30.0
) -> dict[int, TaskInstance]:
    """The rows of ``ids`` once every one is in ``states`` (a final state by default)."""

    def done() -> dict[int, TaskInstance]:
        got = rows(sf, ids)
        return got if all(r.state in states for r in got.values()) else {}

    return wait_for(done, timeout * scale, interval=0.05, what=f"tasks {ids} in {states}")


def run_tasks(
    sf: SessionFactory,
    zk: ZkClient,
    tasks: list[str | dict[str, Any]],
    scale: float,
    timeout=30.0,
) -> tuple[Run, dict[int, TaskInstance]]:
    """Create, push and wait for every task to reach a final state (a worker must be running)."""
    run = create_run(sf, tasks)
    push(zk, run)
    got = wait_rows(sf, run.task_ids, scale, timeout=timeout)
    return run, {i: got[i] for i in run.task_ids}  # in task order


@dataclass
class Bench:
    """The worker tests' side: the test plays the master on the test's database (``sf``) and
    ZooKeeper (``zk``), and real workers (``start_worker``) run what it queues; waits are scaled
    by ``scale`` (the ``bench`` fixture)."""

    sf: SessionFactory
    zk: ZkClient
    scale: float
    start_worker: Callable[..., WorkerServer]

    def create(self, tasks: list[str | dict[str, Any]], wf_priority: int = 2) -> Run:
        return create_run(self.sf, tasks, wf_priority)

    def push(self, run: Run, wf_priority: int = 2) -> None:
        push(self.zk, run, wf_priority)

    def rows(self, ids: list[int]) -> dict[int, TaskInstance]:
        return rows(self.sf, ids)

    def row(self, ti: int) -> TaskInstance:
        return rows(self.sf, [ti])[ti]

    def wait(
        self, ids: list[int], states: set[str] = TERMINAL, timeout: float = 30.0
    ) -> dict[int, TaskInstance]:
        return wait_rows(self.sf, ids, self.scale, states, timeout)

    def run_tasks(
        self, tasks: list[str | dict[str, Any]], timeout: float = 30.0
    ) -> tuple[Run, dict[int, TaskInstance]]:
        return run_tasks(self.sf, self.zk, tasks, self.scale, timeout)

    def running(self, task: str | dict[str, Any]) -> tuple[int, TaskInstance]:
        """Create and queue one task; its id and row once a worker runs it."""
        run = self.create([task])
        self.push(run)
        ti = run.task_ids[0]
        return ti, self.wait([ti], states={"RUNNING"})[ti]


def log_of(row: TaskInstance) -> str:
    return Path(row.log_path or "").read_text() if row.log_path else ""


def read_text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def session_of(w: WorkerServer) -> ZkClient:
    assert w.zk is not None
    return w.zk


__all__ = [
    "TERMINAL",
    "Bench",
    "Run",
    "create_run",
    "gone",
    "log_of",
    "push",
    "read_text",
    "rows",
    "run_tasks",
    "session_of",
    "wait_rows",
]
