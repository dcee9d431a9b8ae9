"""A master's metrics: latencies read off attempt rows the master loads anyway (hand-off,
dispatch, duration: PostgreSQL's timestamps, so one clock), and its scrape-time sources (the
attempts it holds back from full queues, its pool, its ZooKeeper session, cron leadership)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from core import metrics
from core.states import TASK_TERMINAL

if TYPE_CHECKING:
    from db import attempts as q_attempts
    from master.owned import OwnedInstance
    from master.server import MasterServer


def attempt_seen(inst: OwnedInstance, r: q_attempts.AttemptRow) -> None:
    """Observe a finished attempt once per instance held: its dispatch latency (row inserted ->
    started), duration, and hand-off (its upstreams' last end -> its start, first attempts of
    tasks with upstreams only: a retry's wait is its retry delay, not a hand-off). O(upstreams)
    per attempt: the newest end per task is kept in ``inst.ends`` as rows arrive."""
    if r.parent_id is not None:
        return
    if r.end_time is not None:
        seen = inst.ends.get(r.name)
        if seen is None or r.attempt >= seen[0]:
            inst.ends[r.name] = (r.attempt, r.end_time)
    if r.state not in TASK_TERMINAL or r.id in inst.observed:
        return
    inst.observed.add(r.id)
    start = r.start_time
    if start is None:
        return
    if r.worker_id is not None and r.submit_time is not None:
        metrics.DISPATCH.observe(max(0.0, (start - r.submit_time).total_seconds()))
    spec = inst.spec.tasks_by_name().get(r.name)
    if r.end_time is not None and spec is not None:
        metrics.TASK_DURATION.labels(spec.type).observe(
            max(0.0, (r.end_time - start).total_seconds())
        )
    ups = inst.dag.deps.get(r.name) if r.attempt == 1 else None
    if not ups:
        return
    ends = [inst.ends.get(u) for u in ups]
    if all(e is not None for e in ends):
        last = max(e[1] for e in ends if e is not None)
        metrics.HANDOFF.observe(max(0.0, (start - last).total_seconds()))


def install(server: MasterServer) -> None:
    """Register the master's scrape-time sources (reads of memory and client state only)."""
    runner = server.runner

    def held() -> Iterable[metrics.Sample]:
        d = runner.dispatcher
        counts: dict[str, int] = {}
        for (_, group), n in d._held_counts.items():
            if group in d.held:
                counts[group] = counts.get(group, 0) + n
        doc = "Attempts this master holds in PostgreSQL while the group's queue is full"
        out = [
            ("dagkeeper_queue_held_back", doc, {"group": g}, float(n)) for g, n in counts.items()
        ]
        out.append(("dagkeeper_master_owned_instances", "Instances this master owns", {},
                    float(len(runner.owned))))  # fmt: skip
        return out

    def cron() -> Iterable[metrics.Sample]:
        return [("dagkeeper_cron_leader", "1 while this master leads cron", {},
                 float(server.cron.was_leader))]  # fmt: skip

    metrics.add_source("master.held", held, (
        ("dagkeeper_queue_held_back", "Attempts held in PostgreSQL while the queue is full"),
    ))  # fmt: skip
    metrics.add_source("master.cron", cron)
    metrics.add_source("master.zk", metrics.zk_source(lambda: server.zk.client.state))
    metrics.add_source("master.pool", metrics.pool_source(server.engine.pool))
