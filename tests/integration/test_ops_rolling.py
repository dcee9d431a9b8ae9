"""Rolling restart: ``ops.rolling`` restarts 3 masters and 3 workers one by one with SIGTERM while
20 workflows of 10 tasks (1-3 s each) run, a supervisor thread starting each daemon again as
systemd or compose would; every workflow succeeds with no task failed, no retry, no two attempts
of a task overlapping, and no task waiting anything like a session timeout for a master."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from harness import REPO, Cluster

from core.settings import Settings
from ops import rolling
from ops.status import collect

WORKFLOWS = 20
FAN = 8  # a -> b1..b8 -> z: 10 tasks per workflow


def _tasks(seed: int) -> list[dict[str, object]]:
    def secs(k: int) -> int:
        return 1 + (seed + k) % 3  # 1, 2 or 3 s

    fan = [f"b{k}" for k in range(1, FAN + 1)]
    return [
        {"name": "a", "command": f"sleep {secs(0)}"},
        *({"name": b, "command": f"sleep {secs(k)}", "depends_on": ["a"]} for k, b in enumerate(fan, 1)),
        {"name": "z", "command": f"sleep {secs(9)}", "depends_on": fan},
    ]  # fmt: skip


class Supervisor(threading.Thread):
    """Starts every daemon of the cluster again once its process has exited (Restart=always)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.halt = threading.Event()
        self.restarts: list[str] = []

    def run(self) -> None:
        while not self.halt.wait(0.05):
            for name, p in list(self.cluster.procs.items()):
                if p.popen is not None and p.popen.poll() is not None and not p.stopped:
                    self.cluster.restart(name)
                    self.restarts.append(name)


def test_rolling_restart_of_every_daemon_during_a_workload_loses_nothing(
    proc_cluster: Cluster, settings: Settings
) -> None:
    c = proc_cluster
    for i in range(1, 4):
        c.master(f"m{i}")
    for i in range(1, 4):
        c.worker(f"w{i}", DAGKEEPER_WORKER__CAPACITY="8")
    c.wait_registered(3, 3)
    # what an operator checks first: `dagkeeper status` lists the six daemons
    res = subprocess.run([sys.executable, "-m", "ops.cli", "status", "--json", "--min-masters", "3",
                          "--min-workers", "3", "--wait", "10"],
                         env=c._env("status", "status", {}), cwd=REPO, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["zookeeper"]["ok"] and doc["postgresql"]["ok"], doc
    assert doc["postgresql"]["revision"] == doc["postgresql"]["newest"], doc
    assert sorted(w["host"] for w in doc["workers"]) == ["w1", "w2", "w3"], doc
    assert [w["capacity"] for w in doc["workers"]] == [8, 8, 8], doc
    assert sum(m["cron_leader"] for m in doc["masters"]) == 1, doc
    ids = [c.submit(_tasks(n), name=f"roll{n}") for n in range(WORKFLOWS)]
    c.wait(lambda: c.one("SELECT count(*) FROM task_instance WHERE state = 'RUNNING'"), 30,
           "the first tasks running")  # fmt: skip
    supervisor = Supervisor(c)
    supervisor.start()
    said: list[str] = []
    started = time.monotonic()
    try:
        rc = rolling.run(lambda: collect(settings, api=False), "kill -TERM {pid}",
                         timeout_s=60 * c.scale, say=said.append)  # fmt: skip
        rolled_s = time.monotonic() - started
        unfinished = [i for i in ids if c.state(i) not in ("SUCCESS", "FAILURE", "STOP")]
        print("\n" + "\n".join(said))
        assert rc == 0, "\n".join(said) + c.logs()
        assert unfinished, "the workload ended before the rolling restart did: it proves nothing"
        c.wait_all_terminal(120)
    finally:
        supervisor.halt.set()
        supervisor.join()
    assert sorted(supervisor.restarts) == ["m1", "m2", "m3", "w1", "w2", "w3"], supervisor.restarts

    assert [c.state(i) for i in ids] == ["SUCCESS"] * WORKFLOWS, c.logs()
    rows = c.rows("SELECT state, attempt, count(*) FROM task_instance GROUP BY 1, 2")
    assert [tuple(r) for r in rows] == [("SUCCESS", 1, WORKFLOWS * (FAN + 2))], rows
    # the longest a ready task waited for its submission (its predecessors' last end -> submit)
    gap = c.one(
        "SELECT max(extract(epoch FROM n.submit_time - p.last_end)) FROM task_instance n JOIN"
        " (SELECT workflow_instance_id, max(end_time) FILTER (WHERE name = 'a') AS a_end,"
        " max(end_time) FILTER (WHERE name LIKE 'b%') AS b_end FROM task_instance GROUP BY 1) g"
        " ON g.workflow_instance_id = n.workflow_instance_id CROSS JOIN LATERAL (SELECT CASE"
        " WHEN n.name LIKE 'b%' THEN g.a_end WHEN n.name = 'z' THEN g.b_end END AS last_end) p"
        " WHERE n.name <> 'a'"
    )
    print(f"rolling restart of 6 daemons took {rolled_s:.1f}s; longest hand-over gap"
          f" (ready -> submitted) {float(gap):.3f}s; session timeout {c.session_timeout_s}s")  # fmt: skip
    assert float(gap) < c.session_timeout_s / 2, gap
    c.assert_invariants()
