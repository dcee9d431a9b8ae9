"""Three master processes and a per-second schedule: the cron leader is killed -9 mid-run. Every
fire time from the first to the last has exactly one workflow instance: the next leader catches
up the seconds missed while the dead leader's session was still open (FIRE_ALL), and the unique
key on (schedule, fire time) keeps a fire from happening twice."""

from __future__ import annotations

from datetime import UTC, datetime

from harness import Cluster
from kazoo.client import KazooClient
from zk_acl import kazoo_acl

from coord.membership import cron_leader
from core.spec import parse_workflow_spec
from core.zk_paths import ZkPaths
from db import schedules as q_schedules
from db.definitions import create_workflow

SESSION_S = 4


def _fire_times(c: Cluster, schedule_id: int) -> list[datetime]:
    rows = c.rows(
        "SELECT schedule_time FROM workflow_instance WHERE schedule_id = :s ORDER BY 1",
        s=schedule_id,
    )
    return [r[0] for r in rows]


def _leader_proc(c: Cluster, zk: KazooClient) -> str | None:
    """The name of the master process holding cron leadership (master ids carry the pid)."""
    leader = cron_leader(zk, ZkPaths(c.zk_root))
    if leader is None:
        return None
    for name, p in c.procs.items():
        if p.role == "master" and p.alive and f"-{p.pid}-" in leader:
            return name
    return None


def test_killing_the_cron_leader_loses_and_doubles_no_fire(proc_cluster: Cluster) -> None:
    c = proc_cluster
    c.up(masters=3, workers=1)
    spec = parse_workflow_spec({"name": "tick", "tasks": [{"name": "a", "command": "true"}]})
    with c.sf.begin() as s:
        definition, _ = create_workflow(s, spec)
        fields = q_schedules.ScheduleFields(
            workflow_id=definition.id, cron="* * * * * ?", misfire="FIRE_ALL"
        )
        sid = int(q_schedules.create(s, fields, now=datetime.now(UTC)).id)
    zk = KazooClient(hosts=c.zk_hosts, **kazoo_acl())
    zk.start(timeout=10)
    try:
        c.wait(lambda: len(_fire_times(c, sid)) >= 3, 30, "three fires")
        leader = c.wait(lambda: _leader_proc(c, zk), 30, "the cron leader's process")
        before = len(_fire_times(c, sid))
        c.kill9(leader)
        killed_at = datetime.now(UTC)
        # the dead leader's session lives on for SESSION_S; then another master leads and
        # catches up every second it missed
        c.wait(
            lambda: (p := _leader_proc(c, zk)) is not None and p != leader and p,
            30,
            "a new cron leader",
        )
        took_over = datetime.now(UTC)
        c.wait(
            lambda: [t for t in _fire_times(c, sid) if t > took_over][2:],
            30,
            "three fires under the new leader",
        )
    finally:
        zk.stop()
        zk.close()
    times = _fire_times(c, sid)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    print(f"\n{len(times)} fires ({before} before the kill) from {times[0]} to {times[-1]}")
    assert len(times) == len(set(times)), "a fire time has two instances"
    assert gaps == [1.0] * len(gaps), f"a fire time is missing: gaps {gaps}"
    # the seconds between the kill and the take-over were fired late (caught up), not lost
    assert [t for t in times if killed_at < t <= took_over], (killed_at, took_over, times)
    dup = c.rows(
        "SELECT schedule_time, count(*) FROM workflow_instance WHERE schedule_id = :s"
        " GROUP BY 1 HAVING count(*) > 1",
        s=sid,
    )
    assert dup == []
