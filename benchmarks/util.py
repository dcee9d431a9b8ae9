"""Small helpers of the benchmark: progress lines, percentiles and medians, CPU and RSS meters over
the cluster's processes, and PostgreSQL / ZooKeeper activity counters."""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from benchmarks.cluster import Cluster

DB_NAME = "dagkeeper"  # the database the benchmark's cluster uses

_T0 = time.monotonic()
# Every statement the harness itself sends carries this marker, so that pg_stat_statements
# figures can leave the harness out.
MARK = "/* dkbench */"


def progress(msg: str) -> None:
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def percentile(values: Iterable[float | None], p: float) -> float | None:
    """Linear-interpolated percentile (0..100) of ``values`` (Nones left out); None if empty."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


def secs(a: datetime | None, b: datetime | None) -> float | None:
    """``b - a`` in seconds, None when either is missing."""
    if a is None or b is None:
        return None
    return (b - a).total_seconds()


def rate(n: int, seconds: float | None) -> float | None:
    return n / seconds if seconds and seconds > 0 else None


def ms(x: float | None) -> float | None:
    return None if x is None else x * 1000.0


# --- CPU and memory ---------------------------------------------------------------------------


def _cpu(pid: int | None, children: bool = True) -> tuple[float, float]:
    """(own, waited-for children) CPU seconds of a process; zeros if it is gone."""
    if not pid:
        return 0.0, 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0, 0.0
    return t.user + t.system, (t.children_user + t.children_system) if children else 0.0


def cpu_snapshot(cluster: Cluster) -> dict[str, float]:
    """CPU seconds used so far by each part of the cluster. ``tasks`` are the processes the
    workers ran (waited-for children); ``postgres`` is the postmaster with every backend."""
    out = dict.fromkeys(("master", "worker", "tasks", "api", "postgres", "zookeeper"), 0.0)
    for kind in ("master", "worker", "api"):
        for d in cluster.of(kind):
            own, kids = _cpu(d.pid)
            out[kind] += own
            if kind == "worker":
                out["tasks"] += kids
    pm = cluster.pg.pid
    if pm:
        own, kids = _cpu(pm)
        out["postgres"] = own + kids
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(pm).children():
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    out["postgres"] += t.user + t.system
    out["zookeeper"] = sum(_cpu(cluster.zk.pid))
    return out


def system_busy() -> float:
    """CPU seconds the whole machine has been busy (all processes, ours or not)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def harness_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    d = {k: max(0.0, b.get(k, 0.0) - a.get(k, 0.0)) for k in a}
    d["total"] = sum(d.values())
    return d


class RssSampler(threading.Thread):
    """Samples one process's resident set size every ``interval`` seconds; ``peak`` in bytes."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.first = self.rss()
        self._halt = threading.Event()

    def rss(self) -> int:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return 0

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def stop(self) -> int:
        self._halt.set()
        self.join(2)
        self.peak = max(self.peak, self.rss(), self.first)
        return self.peak


# --- activity counters --------------------------------------------------------------------------


def activity(cluster: Cluster) -> dict[str, float]:
    """Cumulative counters: PostgreSQL transactions of the dagkeeper database (less those of the
    harness), statements (pg_stat_statements, less the harness's), ZooKeeper packets received."""
    out: dict[str, float] = {}
    rows = cluster.query(
        f"SELECT xact_commit + xact_rollback FROM pg_stat_database {MARK} WHERE datname = :d",
        d=DB_NAME,
    )
    out["pg_xacts"] = float(rows[0][0]) - cluster.harness_xacts if rows else 0.0
    if cluster.pgss:
        rows = cluster.query(
            f"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements {MARK} "
            "WHERE query NOT LIKE :m AND dbid = (SELECT oid FROM pg_database WHERE datname = :d)",
            m="%dkbench%",
            d=DB_NAME,
        )
        out["pg_statements"] = float(rows[0][0])
    try:
        mntr = cluster.zk.four_letter("mntr")
    except OSError:
        return out
    for line in mntr.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0] == "zk_packets_received":
            out["zk_requests"] = float(parts[1])
    return out


def activity_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: max(0.0, b[k] - a[k]) for k in a if k in b}


def tenths(start: datetime, ends: list[datetime]) -> list[float]:
    """Tasks/s in each tenth of the time from ``start`` to the last of ``ends``."""
    span = secs(start, max(ends)) if ends else None
    if not span:
        return []
    counts = [0] * 10
    for e in ends:
        counts[min(9, int(10 * (secs(start, e) or 0.0) / span))] += 1
    return [c / (span / 10) for c in counts]


def flush_pg_stats() -> None:
    """PostgreSQL backends publish their counters at most once a second when idle."""
    time.sleep(1.1)


def round_floats(x: Any, digits: int = 4) -> Any:
    """Recursively round floats to ``digits`` significant decimals for the JSON report."""
    if isinstance(x, float):
        if x == 0 or not math.isfinite(x):
            return x
        return round(x, max(0, digits - 1 - math.floor(math.log10(abs(x)))))
    if isinstance(x, dict):
        return {k: round_floats(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [round_floats(v, digits) for v in x]
    return x
