"""The worker's start-up sweep against real PostgreSQL and ZooKeeper: a task process group that
outlived its worker is killed; groups of live workers, of other hosts and a pgid reused by a
process we did not spawn are left alone. (The guardian is tested with real kill -9 in
test_failover.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import update
from support import group_gone
from task_type_support import Bench

from coord.zk import ZkClient
from core.settings import Settings
from db.models import TaskInstance
from ops.localserver import wait_for


@pytest.fixture
def spawn() -> Iterator[Callable[[int | None], int]]:
    """Start ``bash`` with a background ``sleep`` in a new process group, carrying the marker of
    the given attempt (None: no marker); returns the pgid. Every group is killed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(ti_id: int | None) -> int:
        env = {"PATH": os.environ["PATH"]}
        if ti_id is not None:
            env["DAGKEEPER_TASK_INSTANCE_ID"] = str(ti_id)
        p = subprocess.Popen(
            ["bash", "-c", "(sleep 300) & sleep 300 & wait"], env=env, start_new_session=True
        )
        started.append(p)
        return p.pid

    yield start
    for p in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_sweep_kills_only_orphaned_groups_of_this_host(
    bench: Bench, zk: ZkClient, spawn: Callable[[int | None], int], settings: Settings
) -> None:
    host = settings.worker.host
    run = bench.create(["x", "x", "x", "x"])
    orphan, live, reused, elsewhere = run.task_ids
    # a live worker (registered, epoch 42) holds ``live``
    zk.client.create(
        zk.paths.worker("default", "live-worker"),
        json.dumps({"host": host, "pid": os.getpid(), "epoch": 42}).encode(),
        ephemeral=True,
        makepath=True,
    )
    pg = {
        orphan: spawn(orphan),
        live: spawn(live),
        reused: spawn(None),  # the recorded pgid now belongs to a process we did not spawn
        elsewhere: spawn(elsewhere),
    }
    cols = {
        orphan: ("RUNNING", host, "dead-worker", 7),
        live: ("RUNNING", host, "live-worker", 42),
        reused: ("NEED_FAULT_TOLERANCE", host, "dead-worker", 7),
        elsewhere: ("RUNNING", "another-host", "dead-worker", 7),
    }
    with bench.sf.begin() as s:
        for ti, (state, h, wid, token) in cols.items():
            s.execute(
                update(TaskInstance)
                .where(TaskInstance.id == ti)
                .values(state=state, host=h, worker_id=wid, lease_token=token, pid=pg[ti])
            )

    w = bench.start_worker()

    wait_for(lambda: group_gone(pg[orphan]), 5 * bench.scale, what="orphaned group killed")
    assert w.stats["orphans_killed"] == 1
    for ti in (live, reused, elsewhere):
        assert not group_gone(pg[ti]), ti
