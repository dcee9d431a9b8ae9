"""Workloads about the cluster rather than the tasks: ``failover`` (kill -9 of a worker running a
task, of a master owning instances; times next to the session timeout) and ``idle`` (CPU and
database/ZooKeeper traffic of a cluster with nothing to do)."""

from __future__ import annotations

import threading
import time
from typing import Any

from kazoo.protocol.states import WatchedEvent

from benchmarks.cluster import Daemon
from benchmarks.harness import Ctx, task
from benchmarks.util import MARK, activity, activity_delta, cpu_delta, cpu_snapshot, progress
from ops.localserver import wait_for


def _znode_gone(ctx: Ctx, path: str) -> tuple[threading.Event, list[float]]:
    """An Event set (and the wall time recorded) when ``path`` is deleted."""
    gone, when = threading.Event(), []
    kz = ctx.cluster.kz
    assert kz is not None

    def watch(ev: WatchedEvent) -> None:
        if ev.type == "DELETED" and not gone.is_set():
            when.append(time.time())
            gone.set()

    if kz.exists(path, watch=watch) is None:
        when.append(time.time())
        gone.set()
    return gone, when


def _daemon_of(ctx: Ctx, kind: str, member_id: str) -> Daemon:
    members = ctx.cluster.members(kind)
    for d in ctx.cluster.of(kind):
        if d.pid in members and members[d.pid][0] == member_id:
            return d
    raise RuntimeError(f"no live {kind} daemon registered as {member_id!r}")


def worker_failover(ctx: Ctx) -> dict[str, Any]:
    """A task runs on worker A; kill -9 A (and its task): time until attempt 2 starts on B."""
    c, st = ctx.cluster, ctx.cluster.opts.session_timeout_s
    while len(c.of("worker")) < 2:
        c.spawn("worker")
    c.wait_members(1, 2)
    cmd = 'if [ "$DAGKEEPER_ATTEMPT" = 1 ]; then sleep 600; fi'
    wf = ctx.workflow("failover-worker", lambda: [task("victim", command=cmd)])
    iid = ctx.api.run(wf)

    def running() -> Any:
        rows = [r for r in ctx.tasks(iid) if r.state == "RUNNING" and r.worker_id]
        return rows[0] if rows else None

    att = wait_for(running, ctx.wait_timeout, 0.05, "the failover task to start")
    victim = _daemon_of(ctx, "worker", att.worker_id)
    gone, gone_at = _znode_gone(ctx, c.members("worker")[victim.pid][1])
    killed = c.kill9(victim)
    progress(f"failover: killed worker pid {victim.pid} running task {att.id}; waiting")
    gone.wait(st * 3 + 10)
    ctx.wait_done([iid], timeout=st * 3 + 60)
    ctx.require_success([iid])
    retry = [r for r in ctx.tasks(iid) if r.attempt > 1 and r.start]
    c.spawn("worker")  # back to two workers for the next repeat
    c.wait_members(1, 2)
    start = min(r.start.timestamp() for r in retry if r.start)
    out = {
        "session_timeout_s": st,
        "kill_to_session_gone_s": gone_at[0] - killed if gone_at else None,
        "kill_to_task_restart_s": start - killed,
        "session_gone_to_task_restart_s": start - gone_at[0] if gone_at else None,
    }
    return out


def master_failover(ctx: Ctx, instances: int = 4) -> dict[str, Any]:
    """Instances run on two masters; kill -9 the owner of the first: time until another master
    owns them all (the owner column changes), and whether they still finish."""
    c, st = ctx.cluster, ctx.cluster.opts.session_timeout_s
    while len(c.of("master")) < 2:
        c.spawn("master")
    c.wait_members(2, 1)
    hold = max(3.0, 2 * st + 3)  # still running when the adoption happens
    wf = ctx.workflow(
        "failover-master", lambda: [task("a", command=f"sleep {hold:.0f}"), task("b", ["a"])]
    )
    ids = [ctx.api.run(wf) for _ in range(instances)]

    def owned() -> Any:
        rows = ctx.instances(ids)
        return rows if all(r.owner and r.state == "RUNNING" for r in rows) else None

    rows = wait_for(owned, ctx.wait_timeout, 0.05, "the failover instances to be owned")
    owner = rows[0].owner
    assert owner is not None
    mine = [r.id for r in rows if r.owner == owner]
    victim = _daemon_of(ctx, "master", owner)
    gone, gone_at = _znode_gone(ctx, c.members("master")[victim.pid][1])
    killed = c.kill9(victim)
    progress(f"failover: killed master pid {victim.pid} owning instances {mine}; waiting")

    def adopted() -> float:
        now = time.time()
        rows = ctx.instances(mine)
        return now if all(r.owner and r.owner != owner for r in rows) else 0.0

    adopted_at: float = wait_for(adopted, st * 3 + 30, 0.02, "the instances to be adopted")
    gone.wait(1)
    ctx.wait_done(ids, timeout=hold + st * 3 + 60)
    ok = all(r.state == "SUCCESS" for r in ctx.instances(ids))
    c.spawn("master")
    c.wait_members(2, 1)
    return {
        "session_timeout_s": st,
        "instances_adopted": len(mine),
        "kill_to_session_gone_s": gone_at[0] - killed if gone_at else None,
        "kill_to_adopted_s": adopted_at - killed,
        "session_gone_to_adopted_s": adopted_at - gone_at[0] if gone_at else None,
        "adopted_finished_ok": ok,
    }


def failover(ctx: Ctx) -> dict[str, Any]:
    out = {f"worker.{k}": v for k, v in worker_failover(ctx).items()}
    out.update({f"master.{k}": v for k, v in master_failover(ctx).items()})
    return out


def restore(ctx: Ctx, masters: int = 1, workers: int = 1) -> None:
    """Stop extra daemons (gracefully) until ``masters`` and ``workers`` are left."""
    c = ctx.cluster
    for kind, keep in (("master", masters), ("worker", workers)):
        for d in c.of(kind)[keep:]:
            c.stop_daemon(d)
    c.wait_members(masters, workers)


def idle(ctx: Ctx, seconds: float, settle: float = 2.0) -> dict[str, Any]:
    """CPU of master + worker + API over ``seconds`` with nothing to do (after ``settle``), and
    PostgreSQL statements/s (pg_stat_statements, else transactions/s) and ZooKeeper requests/s."""
    c = ctx.cluster
    busy = c.scalar(
        f"SELECT count(*) {MARK} FROM workflow_instance "
        "WHERE state NOT IN ('SUCCESS', 'FAILURE', 'STOP')"
    )
    time.sleep(settle)
    if c.pgss:  # so that the statements listed below are those of the idle window
        c.query(f"SELECT pg_stat_statements_reset() {MARK}")
    a0, c0, t0 = activity(c), cpu_snapshot(c), time.monotonic()
    time.sleep(seconds)
    a1, c1 = activity(c), cpu_snapshot(c)
    wall = time.monotonic() - t0
    cpu = cpu_delta(c0, c1)
    act = activity_delta(a0, a1)
    pct = {k: 100.0 * cpu[k] / wall for k in ("master", "worker", "api", "postgres", "zookeeper")}
    out: dict[str, Any] = {f"cpu_pct.{k}": v for k, v in pct.items()}
    out["cpu_pct.daemons"] = pct["master"] + pct["worker"] + pct["api"]
    out["seconds"] = wall
    out["unfinished_instances"] = busy
    out["pg_xacts_per_s"] = act.get("pg_xacts", 0.0) / wall
    if "pg_statements" in act:
        out["pg_statements_per_s"] = act["pg_statements"] / wall
    out["zk_requests_per_s"] = act.get("zk_requests", 0.0) / wall
    out["pg_stat_statements"] = c.pgss
    if c.pgss:
        out["top_statements"] = [
            {"calls": int(r[0]), "query": r[1][:160]}
            for r in c.query(
                f"SELECT calls, query {MARK} FROM pg_stat_statements WHERE query NOT LIKE :m "
                "ORDER BY calls DESC LIMIT 5",
                m="%dkbench%",
            )
        ]
    return out
