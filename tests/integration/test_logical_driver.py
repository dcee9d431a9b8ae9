"""The master-run task machinery with a test-registered driver on a real master, PostgreSQL and
ZooKeeper: an attempt is inserted RUNNING without a worker, started in the inserting transaction,
polled at the wake time it asked for, finished by a fenced write; a stop reaches its driver's
cancel; worker failover and the doctor never count it as lost."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session
from support import Cluster, act, run, tasks, wait_task, wait_terminal

from coord.queue import TaskQueue
from coord.zk import ZkClient
from core import task_types as types_mod
from core.states import TaskState
from db.attempts import AttemptRow
from db.engine import SessionFactory
from master import failover, logical
from master.logical import LogicalContext, Verdict
from ops import doctor


class WaitDriver:
    """Succeeds ``wait_s`` after it started (polled at that time); records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def _note(self, what: str, tid: int) -> None:
        with self.lock:
            self.calls.append((what, tid))

    def start(self, ctx: LogicalContext, s: Session, attempt_id: int, now: datetime) -> Verdict:
        self._note("start", attempt_id)
        # proves start runs in the inserting transaction: the row is visible and RUNNING
        state = s.execute(
            text("SELECT state FROM task_instance WHERE id = :i"), {"i": attempt_id}
        ).scalar_one()
        assert state == "RUNNING"
        wait = float(ctx.task.model_dump().get("wait_s", 0))
        if wait <= 0:
            return Verdict(TaskState.SUCCESS, {"param": ctx.params.get("x", "")}, "no wait")
        return Verdict(wake_at=now + timedelta(seconds=wait))

    def poll(self, ctx: LogicalContext, s: Session, attempt: AttemptRow, now: datetime) -> Verdict:
        self._note("poll", attempt.id)
        started = s.execute(
            text("SELECT start_time FROM task_instance WHERE id = :i"), {"i": attempt.id}
        ).scalar_one()
        due = started + timedelta(seconds=float(ctx.task.model_dump().get("wait_s", 0)))
        if now >= due:
            return Verdict(TaskState.SUCCESS, {"param": ctx.params.get("x", "")}, "waited")
        return Verdict(wake_at=due)

    def cancel(
        self, ctx: LogicalContext, s: Session, attempt: AttemptRow, target: TaskState, now: datetime
    ) -> Verdict:
        self._note(f"cancel {target.value}", attempt.id)
        return Verdict(target, reason="cancelled by the test driver")


DRIVER = WaitDriver()
logical.register("TEST_WAIT", DRIVER)
# a master-run type (worker failover and the doctor leave its attempts alone)
types_mod.define("TEST_WAIT", types_mod.RunsOn.MASTER, lambda t: [])


def _spec(name: str, wait_s: float) -> dict[str, Any]:
    return {
        "name": name,
        "params": {"x": "from-global"},
        "tasks": [
            {"name": "w", "type": "TEST_WAIT", "wait_s": wait_s},
            {"name": "after", "type": "SHELL", "command": "true", "depends_on": ["w"]},
        ],
    }


def test_driver_attempt_runs_without_worker_and_finishes_by_poll(
    cluster: Cluster, api: TestClient, sf: SessionFactory, zk: ZkClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(api, _spec("logical-wait", 1.5))
    t = wait_task(api, iid, "w", "RUNNING", 10 * timeout_scale)
    assert t.get("worker_id") in (None, "") and t.get("host") in (None, "")
    # while it runs: worker failover and the doctor leave it alone
    touched = failover.reoffer_lost_attempts(
        sf, zk, TaskQueue(zk.client, zk.paths), [iid], 0.0, "test"
    )
    assert touched == set()
    findings, _ = doctor.run(sf, zk, do_repair=True)
    assert "running_without_lease" not in {f.kind for f in findings}
    assert tasks(api, iid)["w"]["state"] == "RUNNING"
    done = wait_terminal(api, iid, 20 * timeout_scale)
    assert done["state"] == "SUCCESS", done
    w = tasks(api, iid)["w"]
    assert w["state"] == "SUCCESS" and w["attempt"] == 1
    assert tasks(api, iid)["after"]["state"] == "SUCCESS"
    ids = {tid for what, tid in DRIVER.calls if what == "start"}
    assert w["id"] in ids  # started exactly once, finished by a poll
    assert [c for c in DRIVER.calls if c == ("start", w["id"])] == [("start", w["id"])]
    assert ("poll", w["id"]) in DRIVER.calls


def test_driver_final_verdict_at_start_and_params(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(api, _spec("logical-now", 0))
    done = wait_terminal(api, iid, 20 * timeout_scale)
    assert done["state"] == "SUCCESS", done
    w = tasks(api, iid)["w"]
    assert w["state"] == "SUCCESS"


def test_stop_reaches_the_driver_cancel(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    iid = run(api, _spec("logical-stop", 3600))
    w = wait_task(api, iid, "w", "RUNNING", 10 * timeout_scale)
    act(api, iid, "stop")
    done = wait_terminal(api, iid, 20 * timeout_scale)
    assert done["state"] == "STOP", done
    assert tasks(api, iid)["w"]["state"] == "KILL"
    assert ("cancel KILL", w["id"]) in DRIVER.calls


def test_type_without_driver_still_fails_clearly(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    spec = _spec("logical-none", 0)
    spec["tasks"][0] = {"name": "w", "type": "TEST_NO_DRIVER"}
    types_mod.define("TEST_NO_DRIVER", types_mod.RunsOn.MASTER, lambda t: [])
    try:
        iid = run(api, spec)
        done = wait_terminal(api, iid, 20 * timeout_scale)
    finally:
        types_mod.forget("TEST_NO_DRIVER")
    assert done["state"] == "FAILURE"
    w = tasks(api, iid)["w"]
    assert w["state"] == "FAILURE"
    assert "not supported by this master" in (w.get("reason") or "")
