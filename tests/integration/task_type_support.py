"""Helpers shared by the task-type integration tests (``pytest_plugins = ["task_type_support"]``):
runs of typed tasks as a master makes them, pushed to the test's real ZooKeeper queue and run by
real workers (the fixtures of test_worker)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from test_worker import (  # noqa: F401 - fixtures re-exported to the modules using this plugin
    Run,
    engine,
    gone,
    push,
    read_text,
    rows,
    sf,
    start_worker,
    wait_rows,
    zk,
)

from coord.zk import ZkClient
from db.engine import SessionFactory
from db.models import TaskInstance, WorkflowDefinition, WorkflowInstance, WorkflowVersion


def create_typed_run(factory: SessionFactory, tasks: list[dict[str, Any]]) -> Run:
    """One definition + version + RUNNING instance + SUBMITTED attempts; each task dict holds its
    ``type`` and type-specific fields (and ``env``: the resolved parameters)."""
    with factory.begin() as s:
        wd = WorkflowDefinition(name=f"wf-{uuid.uuid4().hex[:12]}", latest_version=1)
        s.add(wd)
        s.flush()
        specs = [{"name": f"t{i}", "worker_group": "default", **t} for i, t in enumerate(tasks)]
        s.add(WorkflowVersion(workflow_id=wd.id, version=1, spec={"name": wd.name, "tasks": specs}))
        s.flush()
        wfi = WorkflowInstance(
            workflow_id=wd.id,
            version=1,
            state="RUNNING",
            priority=2,
            command_type="START_PROCESS",
            owner="test-master",
            owner_epoch=1,
        )
        s.add(wfi)
        s.flush()
        made = []
        for sp in specs:
            sp.setdefault("env", {})
            made.append(
                TaskInstance(
                    workflow_instance_id=wfi.id,
                    name=sp["name"],
                    type=str(sp.get("type", "SHELL")).upper(),
                    attempt=1,
                    state="SUBMITTED",
                    priority=2,
                    worker_group=sp["worker_group"],
                    spec=sp,
                )
            )
        s.add_all(made)
        s.flush()
        return Run(
            wd.id, wfi.id, [r.id for r in made], [r.worker_group for r in made], [2] * len(made)
        )


def run_tasks(
    factory: SessionFactory,
    client: ZkClient,
    tasks: list[dict[str, Any]],
    scale: float,
    timeout=30.0,
) -> tuple[Run, dict[int, TaskInstance]]:
    """Create, push and wait for every task to reach a final state (a worker must be running)."""
    run = create_typed_run(factory, tasks)
    push(client, run)
    got = wait_rows(factory, run.task_ids, scale, timeout=timeout)
    return run, {i: got[i] for i in run.task_ids}  # in task order


def log_of(row: TaskInstance) -> str:
    return Path(row.log_path or "").read_text() if row.log_path else ""


__all__ = ["Run", "create_typed_run", "log_of", "push", "rows", "run_tasks", "wait_rows"]
