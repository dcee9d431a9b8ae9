"""The benchmark suite's smoke run (``python -m benchmarks.run --quick``) works end to end and
writes a report with every quick workload; no timing target is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QUICK_WORKLOADS = ("idle", "wide_20", "chain", "fan", "big", "burst")
# figures that are rates, durations or sizes of real work, so must be > 0
POSITIVE = {
    "idle": ["seconds"],
    "wide_20": ["run_tasks_per_s", "trigger_tasks_per_s", "trigger_to_success_s", "tasks"],
    "chain": ["handoff_p50_ms", "handoff_p99_ms", "handoff_max_ms", "total_s"],
    "fan": ["dispatch_all_s", "join_latency_ms", "middle_tasks_per_s", "total_s"],
    "big": ["api_create_s", "first_level_dispatched_s", "master_rss_mb_peak", "total_s"],
    "burst": ["claims_per_s", "all_running_s", "api_runs_per_s", "all_success_s"],
}
CEILING = ("pg_commits_per_s", "zk_sync_creates_per_s", "bash_spawns_per_s")


def test_quick_benchmark_writes_a_report(tmp_path: Path, timeout_scale: float) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240 * timeout_scale,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-6000:]}"
    report = json.loads(out.read_text())
    for fig in CEILING:
        assert report["ceiling"][fig] > 0, fig
    assert set(QUICK_WORKLOADS) <= set(report["workloads"]), sorted(report["workloads"])
    for name in QUICK_WORKLOADS:
        wl = report["workloads"][name]
        assert "error" not in wl, (name, wl.get("error"))
        med = wl["median"]
        numbers = {k: v for k, v in med.items() if isinstance(v, int | float)}
        assert numbers, name
        assert all(v >= 0 for k, v in numbers.items() if not isinstance(v, bool)), (name, med)
        for fig in POSITIVE[name]:
            assert isinstance(med.get(fig), int | float) and med[fig] > 0, (name, fig, med)
    assert "workload" in proc.stdout  # the table
