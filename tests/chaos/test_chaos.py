"""Chaos: a 3-node ZooKeeper ensemble, 3 masters, 3 workers and a workload of random DAGs, while
a seeded schedule kills -9 masters and workers, freezes workers past the session timeout (the
whole host, or the worker daemon only while its tasks go on), kills the ZooKeeper leader and
restarts PostgreSQL. Then every invariant must hold (no two attempts of a task ever ran at once,
a killed one included) and doctor must find the cluster clean. Reproduce a run with
DAGKEEPER_CHAOS_SEED=<seed>; size it with DAGKEEPER_CHAOS_WORKFLOWS / _TASKS / _FAULTS, or
DAGKEEPER_CHAOS_SOAK=1 (40 x 20, 16 faults)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import Cluster

from core.settings import test_timeout_scale as timeout_scale_env
from ops.localserver import PostgresServer, ZookeeperEnsemble

SESSION_S = 4
MASTERS = ("m1", "m2", "m3")
WORKERS = ("w1", "w2", "w3")
KINDS = (
    "kill_master",
    "kill_worker",
    "freeze_worker",  # the whole host: daemon, guardian and tasks
    "freeze_worker_daemon",  # the daemon only (a GC pause, a debugger): its tasks go on
    "kill_zk_leader",
    "restart_db",
)
TICK_S = 0.25  # a running task's sign of life: a killed attempt lived until its last tick
SOAK = os.environ.get("DAGKEEPER_CHAOS_SOAK", "") not in ("", "0")
# (workflows, tasks per workflow, faults): the CI run takes a few minutes, the soak longer
DEFAULTS = (40, 20, 16) if SOAK else (15, 8, 6)


def sizes() -> tuple[int, int, int]:
    env = os.environ.get
    return (
        int(env("DAGKEEPER_CHAOS_WORKFLOWS") or DEFAULTS[0]),
        int(env("DAGKEEPER_CHAOS_TASKS") or DEFAULTS[1]),
        int(env("DAGKEEPER_CHAOS_FAULTS") or DEFAULTS[2]),
    )


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the workload starts
    kind: str
    victim: str
    down_s: float  # how long the victim stays dead / frozen


def schedule(rng: random.Random, n: int) -> list[Fault]:
    """``n`` faults one after another (each recovered before the next), so a master and a worker
    and a ZooKeeper quorum are always there to make progress."""
    out, t = [], 1.0
    kinds = list(KINDS) + [rng.choice(KINDS) for _ in range(max(0, n - len(KINDS)))]
    rng.shuffle(kinds)
    for kind in kinds[:n]:
        t += rng.uniform(0.5, 2.0)
        if kind == "kill_master":
            victim, down = rng.choice(MASTERS), rng.uniform(1.0, 4.0)
        elif kind == "kill_worker":
            victim, down = rng.choice(WORKERS), rng.uniform(1.0, 4.0)
        elif kind in ("freeze_worker", "freeze_worker_daemon"):
            victim, down = rng.choice(WORKERS), SESSION_S + rng.uniform(1.0, 3.0)
        elif kind == "restart_db":
            # a fast shutdown, or a crash (kill -9 of the whole server, then crash recovery)
            victim, down = rng.choice(("fast", "crash")), rng.uniform(0.5, 3.0)
        else:
            victim, down = "leader", rng.uniform(2.0, 5.0)
        out.append(Fault(round(t, 2), kind, victim, round(down, 2)))
        t += down + 1.0
    return out


def workload(rng: random.Random, n_workflows: int, n_tasks: int) -> list[list[dict[str, object]]]:
    """Random DAGs: task i depends on up to two earlier tasks; each sleeps 0.5-2.5 s, or one in
    six 5-8 s (so that a frozen daemon's tasks are still running when their re-runs start)."""
    flows = []
    for _ in range(n_workflows):
        tasks: list[dict[str, object]] = []
        for i in range(n_tasks):
            deps = sorted(rng.sample(range(i), k=min(i, rng.randint(0, 2))))
            long = rng.random() < 1 / 6
            secs = rng.uniform(5.0, 8.0) if long else rng.uniform(0.5, 2.5)
            tasks.append(
                {
                    "name": f"t{i}",
                    "command": f"sleep {secs:.2f}",
                    "depends_on": [f"t{d}" for d in deps],
                }
            )
        flows.append(tasks)
    return flows


@pytest.fixture
def ensemble(server_root: Path, timeout_scale: float) -> Iterator[ZookeeperEnsemble]:
    ens = ZookeeperEnsemble(server_root / "chaos-zk", 3, tick_ms=500, fsync=False)
    ens.start(timeout=60 * timeout_scale)
    yield ens
    ens.stop()


@pytest.mark.timeout((3600 if SOAK else 600) * timeout_scale_env())
def test_chaos(
    request: pytest.FixtureRequest,
    server_root: Path,
    ensemble: ZookeeperEnsemble,
    pg_server: PostgresServer,
    db_url: str,
    zk_root: str,
    timeout_scale: float,
) -> None:
    seed = int(os.environ.get("DAGKEEPER_CHAOS_SEED") or random.SystemRandom().randrange(10**9))
    n_wf, n_tasks, n_faults = sizes()
    print(
        f"\nchaos seed {seed} (reproduce: DAGKEEPER_CHAOS_SEED={seed}); {n_wf} workflows x"
        f" {n_tasks} tasks, {n_faults} faults"
    )
    rng = random.Random(seed)
    faults = schedule(rng, n_faults)
    flows = workload(rng, n_wf, n_tasks)
    c = Cluster(
        server_root / "chaos", db_url, ensemble.hosts, zk_root, timeout_scale, SESSION_S, TICK_S
    )
    failed = request.session.testsfailed
    try:
        for m in MASTERS:
            c.master(m)
        for w in WORKERS:
            c.worker(w)
        c.wait_registered(len(MASTERS), len(WORKERS))
        t0 = time.monotonic()
        # submit in three waves so that work is in flight throughout the fault schedule
        waves = [flows[i::3] for i in range(3)]
        pending = list(faults)
        wave_at = [0.0, 10.0, 20.0]
        while pending or waves:
            now = time.monotonic() - t0
            if waves and now >= wave_at[3 - len(waves)]:
                for tasks in waves.pop(0):
                    c.submit(tasks)
            if pending and now >= pending[0].at:
                apply(c, ensemble, pg_server, pending.pop(0), timeout_scale)
            time.sleep(0.05)
        print(f"faults done at {time.monotonic() - t0:.1f}s: {faults}")
        c.wait_all_terminal(120 + 0.5 * n_wf * n_tasks)
        print(f"all {len(c.submitted)} workflows terminal at {time.monotonic() - t0:.1f}s")
        stats = c.rows("SELECT state, count(*) FROM task_instance GROUP BY state ORDER BY state")
        print("attempts by state:", {r[0]: r[1] for r in stats})
        bad = c.check_invariants()
        assert not bad, f"seed {seed}:\n" + "\n".join(bad) + "\n" + c.logs()
    finally:
        c.close()
        if request.session.testsfailed > failed:
            print(f"chaos seed {seed}\n{c.logs()}")


def apply(c: Cluster, ens: ZookeeperEnsemble, pg: PostgresServer, f: Fault, scale: float) -> None:
    """Inject one fault and undo it after ``down_s`` (blocking: faults do not overlap)."""
    print(f"  fault {f}")
    if f.kind in ("kill_master", "kill_worker"):
        # a worker's task process groups are left to its guardian: a task that outlived its
        # worker would overlap its next attempt, which the side-effect log shows
        c.kill9(f.victim, with_tasks=False)
        time.sleep(f.down_s)
        c.restart(f.victim)
    elif f.kind == "freeze_worker":
        c.sigstop(f.victim, with_tasks=True)
        time.sleep(f.down_s)
        c.sigcont(f.victim)
    elif f.kind == "freeze_worker_daemon":
        # its guardian kills the tasks at the watchdog deadline, before the session can expire
        # and the masters start them elsewhere; the overlap check (ticks) shows it if not
        c.sigstop(f.victim)
        time.sleep(f.down_s)
        c.sigcont(f.victim)
        said = c.procs[f.victim].log_path.read_text().splitlines()
        for line in [x for x in said if "no beat from the worker" in x][-1:]:
            print(f"    {f.victim}: ...{line[line.index('no beat') :][:160]}")
    elif f.kind == "restart_db":
        if f.victim == "crash":
            pg.kill9()
        else:
            pg.stop()
        time.sleep(f.down_s)
        pg.start(timeout=60 * scale)
        c.engine.dispose()  # the harness's own pooled connections died with the server
    else:
        leader = ens.leader()
        if leader is None:
            return
        leader.kill9()
        time.sleep(f.down_s)
        leader.start(timeout=60 * scale)
