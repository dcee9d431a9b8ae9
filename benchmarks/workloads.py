"""Throughput and latency workloads of no-op SHELL tasks (``true``): wide, chain, fan, big, burst
and backlog. Each function runs once and returns flat figures (seconds, ms, per-second rates)
computed from the PostgreSQL rows of the run."""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Any

from benchmarks.harness import Ctx, Meter, TaskRow, Unfinished, task
from benchmarks.poster import post_many
from benchmarks.util import (
    MARK,
    RssSampler,
    median,
    ms,
    percentile,
    progress,
    rate,
    secs,
    tenths,
)
from core.settings import MasterSettings

STALL_S = 60.0  # backlog: no task finished for this long = stalled


def _span(rows: list[TaskRow]) -> float | None:
    starts = [r.start for r in rows if r.start]
    ends = [r.end for r in rows if r.end]
    return secs(min(starts), max(ends)) if starts and ends else None


def wide(ctx: Ctx, n: int) -> dict[str, Any]:
    """One workflow of ``n`` independent tasks."""
    wf = ctx.workflow(f"wide-{n}", lambda: [task(f"t{i:05d}") for i in range(n)])
    meter = Meter(ctx.cluster)
    iid = ctx.api.run(wf)
    ctx.wait_done([iid])
    out = meter.stop(n)
    ctx.require_success([iid])
    inst, rows = ctx.instance(iid), ctx.tasks(iid)
    trig = secs(inst.submit, inst.end)
    out.update(
        tasks=n,
        run_tasks_per_s=rate(n, _span(rows)),
        trigger_tasks_per_s=rate(n, trig),
        trigger_to_success_s=trig,
        trigger_to_first_start_ms=ms(secs(inst.submit, min(r.start for r in rows if r.start))),
    )
    return out


def chain(ctx: Ctx, n: int) -> dict[str, Any]:
    """A linear chain t0 -> t1 -> ... ; hand-off = downstream start - upstream end."""
    wf = ctx.workflow(
        f"chain-{n}",
        lambda: [task(f"t{i:04d}", [f"t{i - 1:04d}"] if i else []) for i in range(n)],
    )
    meter = Meter(ctx.cluster)
    iid = ctx.api.run(wf)
    ctx.wait_done([iid], poll=0.05)
    out = meter.stop(n)
    ctx.require_success([iid])
    inst = ctx.instance(iid)
    by_name = {r.name: r for r in ctx.tasks(iid)}
    rows = [by_name[f"t{i:04d}"] for i in range(n)]
    hand, master, worker = [], [], []
    for up, down in itertools.pairwise(rows):
        hand.append(ms(secs(up.end, down.start)))
        master.append(ms(secs(up.end, down.submit)))  # upstream end -> successor row inserted
        worker.append(ms(secs(down.submit, down.start)))  # inserted -> queued, claimed, started
    out.update(
        tasks=n,
        handoff_p50_ms=percentile(hand, 50),
        handoff_p90_ms=percentile(hand, 90),
        handoff_p99_ms=percentile(hand, 99),
        handoff_max_ms=percentile(hand, 100),
        handoff_master_p50_ms=percentile(master, 50),
        handoff_queue_and_start_p50_ms=percentile(worker, 50),
        total_s=secs(inst.submit, inst.end),
        trigger_to_first_start_ms=ms(secs(inst.submit, rows[0].start)),
    )
    return out


def fan(ctx: Ctx, n: int) -> dict[str, Any]:
    """root -> n middle tasks -> join."""
    mids = [f"m{i:05d}" for i in range(n)]
    wf = ctx.workflow(
        f"fan-{n}", lambda: [task("root"), *(task(m, ["root"]) for m in mids), task("join", mids)]
    )
    meter = Meter(ctx.cluster)
    iid = ctx.api.run(wf)
    ctx.wait_done([iid])
    out = meter.stop(n + 2)
    ctx.require_success([iid])
    inst, rows = ctx.instance(iid), ctx.tasks(iid)
    root = next(r for r in rows if r.name == "root")
    join = next(r for r in rows if r.name == "join")
    middle = [r for r in rows if r.name.startswith("m")]
    dispatched = [r.dispatch or r.start for r in middle]  # a fast claim may beat the UPDATE
    last_mid_end = max(r.end for r in middle if r.end)
    out.update(
        tasks=n + 2,
        dispatch_all_s=secs(root.end, max(d for d in dispatched if d)),
        insert_all_ms=ms(secs(root.end, max(r.submit for r in middle))),
        join_latency_ms=ms(secs(last_mid_end, join.start)),
        middle_tasks_per_s=rate(n, _span(middle)),
        total_s=secs(inst.submit, inst.end),
    )
    return out


def big_spec(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` tasks; a fifth have no dependencies, the rest 1-3 random earlier tasks among the
    previous 200 (acyclic by construction)."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        deps: set[str] = set()
        if i >= 10 and rng.random() >= 0.2:
            lo = max(0, i - 200)
            deps = {f"t{rng.randrange(lo, i):05d}" for _ in range(rng.randint(1, 3))}
        tasks.append(task(f"t{i:05d}", sorted(deps)))
    return tasks


def big(ctx: Ctx, n: int) -> dict[str, Any]:
    """One DAG of ``n`` tasks with random dependencies: create (validation) time through the API,
    split and dispatch of the first level, master RSS, total run time."""
    spec = big_spec(n)
    first_level = {t["name"] for t in spec if not t["depends_on"]}
    master = ctx.cluster.of("master")[0]
    sampler = RssSampler(master.pid)
    sampler.start()
    t0 = time.perf_counter()
    wf = ctx.api.create_workflow(f"bench-big-{n}-{time.time_ns()}", spec)
    create_s = time.perf_counter() - t0
    meter = Meter(ctx.cluster)
    iid = ctx.api.run(wf)
    try:
        ctx.wait_done([iid])
    except TimeoutError as exc:
        out = meter.stop(n)
        out.update(_big_figures(ctx, iid, n, first_level, create_s, sampler))
        raise Unfinished(f"big: {exc} ({out['tasks_done']} of {n} tasks done)", out) from None
    out = meter.stop(n)
    ctx.require_success([iid])
    out.update(_big_figures(ctx, iid, n, first_level, create_s, sampler))
    return out


def _big_figures(
    ctx: Ctx, iid: int, n: int, first_level: set[str], create_s: float, sampler: RssSampler
) -> dict[str, Any]:
    rss = sampler.stop()
    inst, rows = ctx.instance(iid), ctx.tasks(iid)
    first = [r for r in rows if r.name in first_level]
    dispatched = [r.dispatch or r.start for r in first]
    starts = [r.start for r in rows if r.start]
    ends = [r.end for r in rows if r.end]
    per_tenth = tenths(min(starts), ends) if starts else []
    return {
        "tasks": n,
        "tasks_done": len(ends),
        "first_level_tasks": len(first_level),
        "api_create_s": create_s,
        "claim_ms": ms(secs(inst.submit, inst.start)),
        "split_s": secs(inst.start, max(r.submit for r in first)) if first else None,
        "first_level_dispatched_s": secs(inst.submit, max(d for d in dispatched if d))
        if any(dispatched)
        else None,
        "master_rss_mb_before": sampler.first / 2**20,
        "master_rss_mb_peak": rss / 2**20,
        "total_s": secs(inst.submit, inst.end),
        "run_tasks_per_s": rate(len(ends), _span(rows)),
        "tasks_per_s_first_tenth": per_tenth[0] if per_tenth else None,
        "tasks_per_s_last_tenth": per_tenth[-1] if per_tenth else None,
    }


def burst(ctx: Ctx, n: int, conc: int = 32) -> dict[str, Any]:
    """``n`` starts of a one-task workflow through the API at once (``conc`` connections)."""
    wf = ctx.workflow("burst", lambda: [task("only")])
    last_id = ctx.cluster.scalar(f"SELECT coalesce(max(id), 0) {MARK} FROM workflow_instance")
    meter = Meter(ctx.cluster)
    t0 = time.perf_counter()
    retried = post_many(ctx.api.base, f"/workflows/{wf}/runs", ctx.api.headers, n, min(n, conc))
    api_s = time.perf_counter() - t0
    ids = [
        r[0]
        for r in ctx.cluster.query(
            f"SELECT id {MARK} FROM workflow_instance WHERE workflow_id = :w AND id > :last",
            w=wf,
            last=last_id,
        )
    ]
    deadline = time.monotonic() + ctx.wait_timeout
    while ctx.cluster.scalar(
        f"SELECT count(*) {MARK} FROM workflow_instance WHERE id = ANY(:ids) "
        "AND start_time IS NULL",
        ids=ids,
    ):
        ctx.cluster.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"burst: not all {n} instances RUNNING after {ctx.wait_timeout}s")
        time.sleep(0.05)
    ctx.wait_done(ids)
    out = meter.stop(len(ids))
    ctx.require_success(ids)
    rows = ctx.instances(ids)
    first_submit = min(r.submit for r in rows)
    claimed = secs(first_submit, max(r.start for r in rows if r.start))
    out.update(
        instances=len(ids),
        api_retries=retried,
        masters=len(ctx.cluster.of("master")),
        owners=len({r.owner for r in rows}),
        api_submit_s=api_s,
        api_runs_per_s=rate(n, api_s),
        claims_per_s=rate(len(ids), claimed),
        all_running_s=claimed,
        claim_latency_p50_ms=percentile([ms(secs(r.submit, r.start)) or 0.0 for r in rows], 50),
        all_success_s=secs(first_submit, max(r.end for r in rows if r.end)),
    )
    return out


class _QueueSampler(threading.Thread):
    """Samples the number of entries in the ZooKeeper queue of the default group."""

    def __init__(self, ctx: Ctx, interval: float = 0.25) -> None:
        super().__init__(daemon=True, name="queue-sampler")
        self.ctx, self.interval = ctx, interval
        self.peak, self.errors = 0, 0
        self._halt = threading.Event()

    def run(self) -> None:
        c = self.ctx.cluster
        path = c.paths.queue("default")
        while not self._halt.wait(self.interval):
            try:
                stat = c.kz.exists(path) if c.kz else None
                self.peak = max(self.peak, stat.numChildren if stat else 0)
            except Exception:
                self.errors += 1

    def stop(self) -> int:
        self._halt.set()
        self.join(5)
        return self.peak


def _log_problems(ctx: Ctx) -> int:
    """Warning/error lines in the daemons' logs (they run at WARNING level)."""
    n = 0
    for d in ctx.cluster.daemons:
        try:
            text = d.log_path.read_text(errors="replace")
        except OSError:
            continue
        n += sum(1 for line in text.splitlines() if " ERROR " in line or "Traceback" in line)
    return n


def backlog(ctx: Ctx, n: int, timeout: float, instances: int = 10) -> dict[str, Any]:
    """``n`` ready tasks at once (``instances`` runs of an ``n/instances``-task workflow) against
    the workers' few slots: ZooKeeper queue depth, errors, and throughput over time."""
    per = n // instances
    wf = ctx.workflow(f"backlog-{per}", lambda: [task(f"t{i:06d}") for i in range(per)])
    problems0 = _log_problems(ctx)
    sampler = _QueueSampler(ctx)
    sampler.start()
    meter = Meter(ctx.cluster)
    ids = [ctx.api.run(wf) for _ in range(instances)]
    try:
        _wait_backlog(ctx, ids, n, timeout, sampler)
    except TimeoutError as exc:
        out = _backlog_figures(ctx, ids, n, sampler, meter, problems0)
        raise Unfinished(f"{exc} ({out['tasks_done']} of {n} tasks done)", out) from None
    out = _backlog_figures(ctx, ids, n, sampler, meter, problems0)
    ctx.require_success(ids)
    return out


def _wait_backlog(ctx: Ctx, ids: list[int], n: int, timeout: float, sampler: _QueueSampler) -> None:
    last, done, moved = 0.0, -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while True:
        ctx.cluster.check_alive()
        left = ctx.cluster.scalar(
            f"SELECT count(*) {MARK} FROM workflow_instance WHERE id = ANY(:ids) "
            "AND state NOT IN ('SUCCESS', 'FAILURE', 'STOP')",
            ids=ids,
        )
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"backlog: {left} instance(s) not finished after {timeout:.0f}s")
        if time.monotonic() - last > 15:
            last = time.monotonic()
            now_done = ctx.cluster.scalar(
                f"SELECT count(*) {MARK} FROM task_instance WHERE workflow_instance_id = ANY(:ids)"
                " AND end_time IS NOT NULL",
                ids=ids,
            )
            if now_done != done:
                done, moved = now_done, time.monotonic()
            elif time.monotonic() - moved > STALL_S:
                raise TimeoutError(f"backlog: stalled at {done}/{n} tasks for {STALL_S:.0f}s")
            progress(f"backlog: {done}/{n} tasks done, ZooKeeper queue peak {sampler.peak}")
        time.sleep(0.5)


def _backlog_figures(
    ctx: Ctx, ids: list[int], n: int, sampler: _QueueSampler, meter: Meter, problems0: int
) -> dict[str, Any]:
    peak = sampler.stop()
    out = meter.stop(n)
    ends = [
        r[0]
        for r in ctx.cluster.query(
            f"SELECT end_time {MARK} FROM task_instance WHERE workflow_instance_id = ANY(:ids) "
            "AND end_time IS NOT NULL ORDER BY end_time",
            ids=ids,
        )
    ]
    starts = ctx.cluster.scalar(
        f"SELECT min(start_time) {MARK} FROM task_instance WHERE workflow_instance_id = ANY(:ids)",
        ids=ids,
    )
    per_slice = tenths(starts, ends) if starts and ends else [0.0]
    out.update(
        tasks=n,
        tasks_done=len(ends),
        instances=len(ids),
        queue_peak=peak,
        queue_high_water=MasterSettings().queue_high_water,
        queue_sample_errors=sampler.errors,
        daemon_error_lines=_log_problems(ctx) - problems0,
        run_tasks_per_s=rate(len(ends), secs(starts, ends[-1]) if ends else None),
        tasks_per_s_first_tenth=per_slice[0],
        tasks_per_s_last_tenth=per_slice[-1],
        tasks_per_s_min_tenth=min(per_slice),
        tasks_per_s_median_tenth=median(per_slice),
    )
    return out
