"""``python -m benchmarks.run``: start a private cluster (PostgreSQL, ZooKeeper, master, worker,
API as separate processes), run the workloads, print a table and write the JSON report. Every
process it starts is stopped on exit, Ctrl-C included."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import ceiling, faults, profile, report, workloads
from benchmarks.cluster import Cluster, ClusterOptions
from benchmarks.harness import Api, Ctx, Unfinished
from benchmarks.util import progress

FAMILIES = ("ceiling", "idle", "wide", "chain", "fan", "big", "burst", "failover", "backlog")
QUICK_SKIP = ("failover", "backlog")
PROFILED = ("wide", "chain", "burst")


@dataclass
class Sizes:
    wide: tuple[int, ...]
    chain: int
    fan: int
    big: int
    burst: int
    idle_s: float
    ceiling_s: float


FULL = Sizes(wide=(200, 2000), chain=50, fan=1000, big=10_000, burst=1000, idle_s=10, ceiling_s=3)
QUICK = Sizes(wide=(20,), chain=5, fan=20, big=200, burst=20, idle_s=4, ceiling_s=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI smoke run)")
    p.add_argument("--workloads", default="", help=f"comma list of {','.join(FAMILIES)}")
    p.add_argument("--repeat", type=int, default=None, help="runs per workload (3; quick: 1)")
    p.add_argument("--out", type=Path, default=None, help="JSON report path")
    p.add_argument("--capacity", type=int, default=8, help="worker capacity (tasks at once)")
    p.add_argument(
        "--masters",
        type=int,
        default=None,
        help="also run burst with this many masters (3; quick: 1)",
    )
    p.add_argument(
        "--session-timeout", type=float, default=10.0, help="ZooKeeper session timeout, s"
    )
    p.add_argument("--no-fsync", action="store_true", help="PostgreSQL/ZooKeeper without fsync")
    p.add_argument("--backlog-tasks", type=int, default=100_000, help="ready tasks of backlog")
    p.add_argument(
        "--backlog-budget",
        type=float,
        default=240.0,
        help="scale backlog down so that it should take about this many seconds",
    )
    p.add_argument("--burst-connections", type=int, default=32, help="concurrent API connections")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the master, worker and API "
        "during wide, chain and burst (first repeat) into this directory",
    )
    p.add_argument(
        "--run-timeout",
        type=float,
        default=None,
        help="give up on a run after this many seconds, keep its partial figures and restart the "
        "cluster afresh (300; quick: 90)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (servers' data, logs)")
    args = p.parse_args(argv)
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(chosen) - set(FAMILIES)
    if unknown:
        p.error(f"unknown workload(s) {sorted(unknown)}; choose from {','.join(FAMILIES)}")
    args.families = chosen or [f for f in FAMILIES if not (args.quick and f in QUICK_SKIP)]
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.masters = args.masters or (1 if args.quick else 3)
    args.run_timeout = args.run_timeout or (90.0 if args.quick else 300.0)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out = args.out or Path(__file__).parent / "reports" / f"{stamp}.json"
    return args


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Runner:
    def __init__(self, args: argparse.Namespace, cluster: Cluster) -> None:
        self.args, self.cluster = args, cluster
        self.sizes = QUICK if args.quick else FULL
        self.ctx: Ctx | None = None
        self.workloads: dict[str, Any] = {}
        self.profiles: dict[str, Any] = {}
        self.failed = False

    def plan(self) -> list[tuple[str, Callable[[], dict[str, Any]], int]]:
        ctx, s, a = self.ctx, self.sizes, self.args
        assert ctx is not None
        r = a.repeat
        steps: list[tuple[str, Callable[[], dict[str, Any]], int]] = []
        fams = a.families
        if "idle" in fams:
            steps.append(("idle", lambda: faults.idle(ctx, s.idle_s), r))
        if "wide" in fams:
            for n in s.wide:
                steps.append((f"wide_{n}", lambda n=n: workloads.wide(ctx, n), r))  # type: ignore[misc]
        if "chain" in fams:
            steps.append(("chain", lambda: workloads.chain(ctx, s.chain), r))
        if "fan" in fams:
            steps.append(("fan", lambda: workloads.fan(ctx, s.fan), r))
        if "big" in fams:
            steps.append(("big", lambda: workloads.big(ctx, s.big), r))
        if "burst" in fams:
            conc = a.burst_connections
            steps.append(("burst", lambda: workloads.burst(ctx, s.burst, conc), r))
            if a.masters > 1:
                steps.append((f"burst_{a.masters}_masters", lambda: self._burst_many(), r))
        if "failover" in fams:
            steps.append(("failover", lambda: faults.failover(ctx), r))
        if "backlog" in fams:
            steps.append(("backlog", self._backlog, 1))
        return steps

    def _burst_many(self) -> dict[str, Any]:
        assert self.ctx is not None
        c = self.cluster
        while len(c.of("master")) < self.args.masters:
            c.spawn("master")
        c.wait_members(self.args.masters, 1)
        return workloads.burst(self.ctx, self.sizes.burst, self.args.burst_connections)

    def _backlog(self) -> dict[str, Any]:
        assert self.ctx is not None
        a = self.args
        rates = [
            w["median"].get("run_tasks_per_s")
            for k, w in self.workloads.items()
            if k.startswith("wide") and "median" in w
        ]
        # a long queue slows the run down (about half the wide rate was seen): be conservative
        est = max([x for x in rates if x] or [100.0]) / 2
        n = a.backlog_tasks
        if n / est > a.backlog_budget:
            n = max(1000, int(est * a.backlog_budget) // 1000 * 1000)
            progress(
                f"backlog: {a.backlog_tasks} tasks would take ~{a.backlog_tasks / est:.0f}s "
                f"at {est:.0f} tasks/s; running a scaled-down {n}"
            )
        out = workloads.backlog(self.ctx, n, timeout=max(600.0, 3 * a.backlog_budget))
        out["scaled_down_from"] = a.backlog_tasks if n < a.backlog_tasks else None
        return out

    def run_step(self, key: str, fn: Callable[[], dict[str, Any]], repeats: int) -> None:
        runs: list[dict[str, Any]] = []
        entry: dict[str, Any] = {"repeats": repeats, "runs": runs}
        self.workloads[key] = entry
        try:
            for i in range(repeats):
                progress(f"{key}: run {i + 1}/{repeats}")
                prof = None
                if i == 0 and report.family(key) in PROFILED:
                    prof = profile.start(self.args.profile, key, self._pids())
                t0 = time.monotonic()
                try:
                    runs.append(fn())
                finally:
                    if prof is not None:
                        self.profiles[key] = prof.stop()
                heads = report.HEADLINES.get(report.family(key), [])[:3]
                shown = ", ".join(
                    f"{lbl.strip()}={report._fmt(runs[-1].get(f))}" for f, lbl in heads
                )
                progress(f"{key}: run {i + 1} took {time.monotonic() - t0:.1f}s: {shown}")
        except KeyboardInterrupt:
            entry["error"] = "interrupted"
            raise
        except Exception as exc:
            self.failed = True
            if isinstance(exc, Unfinished):
                runs.append(exc.figures | {"finished": False})
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()
            progress(f"{key}: FAILED: {type(exc).__name__}: {str(exc)[:2000]}")
            self._reset(key)
            return
        finally:
            if runs:
                entry["median"] = report.medians(runs)
        if report.family(key) in ("failover", "burst") and self.ctx is not None:
            try:
                faults.restore(self.ctx)
            except Exception as exc:
                progress(f"{key}: could not restore 1 master + 1 worker: {exc}")
                self._reset(key)

    def _reset(self, key: str) -> None:
        """Leftover work of a failed run must not skew the next workloads: start afresh."""
        assert self.ctx is not None
        tail = self.cluster.log_tails(15)
        self.workloads[key]["daemon_log_tails"] = tail
        self.cluster.reset()
        self.ctx.workflows.clear()

    def _pids(self) -> dict[str, int]:
        """The first master, worker and API (py-spy follows these)."""
        daemons = self.cluster.of("master") + self.cluster.of("worker") + self.cluster.of("api")
        return {d.kind: d.pid for d in reversed(daemons)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="dagkeeper-bench-"))
    os.chmod(root, 0o711)  # the postgres OS user (when we are root) must reach its data dir
    opts = ClusterOptions(args.capacity, args.session_timeout, not args.no_fsync, args.keep)
    cluster = Cluster(root, opts)
    runner = Runner(args, cluster)
    started = datetime.now(UTC)
    doc: dict[str, Any] = {"version": 1, "started": started.isoformat(), "argv": sys.argv[1:]}
    doc["loadavg_at_start"] = os.getloadavg()
    doc["source"] = report.source()  # the daemons run the code as it is now
    doc["config"] = {
        "quick": args.quick,
        "repeat": args.repeat,
        "families": args.families,
        "worker_capacity": args.capacity,
        "session_timeout_s": args.session_timeout,
        "masters_for_burst": args.masters,
        "run_timeout_s": args.run_timeout,
        "fsync": not args.no_fsync,
        "sizes": vars(runner.sizes),
    }
    rc, api = 0, None
    t0 = time.monotonic()
    progress(f"benchmark: workloads {','.join(args.families)}, repeat {args.repeat}, dir {root}")
    try:
        cluster.start_servers()
        if "ceiling" in args.families:
            doc["ceiling"] = ceiling.measure(cluster.pg, cluster.zk.hosts, runner.sizes.ceiling_s)
        cluster.start_daemons()
        api = Api(cluster.api_base, cluster.token)
        runner.ctx = Ctx(cluster, api, args.quick, wait_timeout=args.run_timeout)
        workloads.wide(runner.ctx, 5)  # warm-up: connection pools, imports, caches
        for key, fn, repeats in runner.plan():
            runner.run_step(key, fn, repeats)
        rc = 1 if runner.failed else 0
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        progress("benchmark: interrupted; stopping everything")
        doc["interrupted"] = True
        rc = 130
    except Exception as exc:
        progress(f"benchmark: failed: {type(exc).__name__}: {exc}")
        doc["error"] = f"{type(exc).__name__}: {exc}"
        doc["traceback"] = traceback.format_exc()
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        if api is not None:
            api.close()
        pg_version = ""
        try:
            pg_version = (cluster.pg.pgdata / "PG_VERSION").read_text().strip()
        except OSError:
            pass
        cluster.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)
        keep = args.keep or rc not in (0, 130)
        if keep:
            progress(f"benchmark: servers' data and daemon logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    for key, wl in runner.workloads.items():
        if "median" in wl:
            wl["fraction_of_ceiling"] = report.fractions(key, wl["median"], doc.get("ceiling", {}))
    doc["workloads"] = runner.workloads
    doc["targets"] = report.judge(runner.workloads)
    if runner.profiles:
        doc["profiles"] = runner.profiles
    doc["notes"] = notes(runner.workloads)
    doc["machine"] = report.machine(pg_version)
    doc["finished"] = datetime.now(UTC).isoformat()
    doc["duration_s"] = time.monotonic() - t0
    report.write(args.out, doc)
    print(report.table(doc), flush=True)
    progress(f"benchmark: report written to {args.out} ({doc['duration_s']:.0f}s, exit {rc})")
    return rc


def notes(wls: dict[str, Any]) -> list[str]:
    out = []
    bl = wls.get("backlog", {}).get("median", {})
    if bl.get("scaled_down_from"):
        out.append(
            f"backlog was scaled down from {bl['scaled_down_from']} to {bl['tasks']} tasks "
            "to fit its time budget; it runs once, not --repeat times"
        )
    elif "backlog" in wls:
        out.append("backlog runs once, not --repeat times")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
