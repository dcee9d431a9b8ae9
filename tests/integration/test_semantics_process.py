"""Stop on real processes: a stop requested while the task's worker is killed -9 still reaches
STOP (its attempt is failed over but not run again), and the task's process group is gone."""

from __future__ import annotations

import time

from harness import Cluster, group_alive

from db import control


def test_stop_with_the_tasks_worker_killed_still_reaches_stop(proc_cluster: Cluster) -> None:
    c = proc_cluster
    c.up(masters=1, workers=1)
    iid = c.submit(
        [
            {"name": "long", "command": "sleep 300"},
            {"name": "next", "command": "true", "depends_on": ["long"]},
        ]
    )
    first = c.wait(lambda: c.find_attempt(iid, "long", attempt=1), 30, "attempt 1 RUNNING")
    pgid = first.pid
    c.kill9(first.host, with_tasks=False)  # the worker dies; nothing answers a kill request
    with c.sf.begin() as s:
        assert control.stop(s, iid).state == "READY_STOP"
    stopped_at = time.time()
    c.wait(lambda: c.state(iid) == "STOP", 30, "instance STOP")
    took = time.time() - stopped_at
    print(f"\nstop with its worker killed -9: STOP after {took:.2f}s")
    rows = c.attempts(iid)
    assert [(r.name, r.attempt) for r in rows] == [("long", 1)]  # not run again, next never
    assert rows[0].state in ("NEED_FAULT_TOLERANCE", "KILL")
    c.wait(lambda: not group_alive(pgid), 5, f"process group {pgid} gone", interval=0.02)
