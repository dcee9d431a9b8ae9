"""The report: medians over repeats, figures as fractions of the machine's ceiling, the issue's
targets next to them, a compact table for stdout and the JSON document."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from benchmarks.util import median, round_floats

# (figure, label) shown in the table for each workload family
HEADLINES: dict[str, list[tuple[str, str]]] = {
    "ceiling": [
        ("pg_commits_per_s", "PostgreSQL single-row commits/s (1 client)"),
        ("zk_sync_creates_per_s", "ZooKeeper sync creates/s (1 client)"),
        ("zk_batched_creates_per_s", "ZooKeeper creates/s in txns of 100"),
        ("bash_spawns_per_s", "bash -c true spawns/s (1 process)"),
        ("serial_tasks_per_s", "tasks/s if 4 commits+3 ZK writes+1 spawn, serial"),
    ],
    "idle": [
        ("cpu_pct.daemons", "CPU % of one core: master+worker+api"),
        ("cpu_pct.master", "CPU %: master"),
        ("cpu_pct.worker", "CPU %: worker"),
        ("cpu_pct.api", "CPU %: api"),
        ("pg_statements_per_s", "PostgreSQL statements/s"),
        ("pg_xacts_per_s", "PostgreSQL transactions/s"),
        ("zk_requests_per_s", "ZooKeeper requests/s"),
    ],
    "wide": [
        ("run_tasks_per_s", "tasks/s, first start -> last end"),
        ("trigger_tasks_per_s", "tasks/s, trigger -> SUCCESS"),
        ("trigger_to_success_s", "trigger -> SUCCESS, s"),
        ("cpu_ms_per_task.total", "CPU ms per task, all processes"),
        ("cpu_ms_per_task.master", "CPU ms per task, master"),
        ("cpu_ms_per_task.worker", "CPU ms per task, worker (w/o tasks)"),
        ("pg_xacts_per_task", "PostgreSQL transactions per task"),
        ("zk_requests_per_task", "ZooKeeper requests per task"),
        ("other_cores_busy", "cores busy with other work meanwhile"),
    ],
    "chain": [
        ("handoff_p50_ms", "hand-off p50, ms (end -> next start)"),
        ("handoff_p90_ms", "hand-off p90, ms"),
        ("handoff_p99_ms", "hand-off p99, ms"),
        ("handoff_max_ms", "hand-off max, ms"),
        ("handoff_master_p50_ms", "  of which end -> successor row, p50 ms"),
        ("total_s", "total run time, s"),
    ],
    "fan": [
        ("dispatch_all_s", "root end -> all middle dispatched, s"),
        ("join_latency_ms", "join latency, ms (last middle end -> join)"),
        ("middle_tasks_per_s", "middle tasks/s"),
        ("total_s", "total run time, s"),
    ],
    "big": [
        ("api_create_s", "API create (validation), s"),
        ("split_s", "split: claim -> first level rows, s"),
        ("first_level_dispatched_s", "trigger -> first level dispatched, s"),
        ("master_rss_mb_peak", "master RSS peak, MB"),
        ("total_s", "total run time, s"),
        ("tasks_done", "tasks done"),
        ("run_tasks_per_s", "tasks/s"),
        ("tasks_per_s_first_tenth", "tasks/s, first tenth of the run"),
        ("tasks_per_s_last_tenth", "tasks/s, last tenth of the run"),
    ],
    "burst": [
        ("claims_per_s", "commands claimed/s (first submit -> last claim)"),
        ("all_running_s", "first submit -> all RUNNING, s"),
        ("api_runs_per_s", "API accepted runs/s"),
        ("all_success_s", "first submit -> all SUCCESS, s"),
    ],
    "failover": [
        ("worker.session_timeout_s", "configured session timeout, s"),
        ("worker.kill_to_session_gone_s", "worker kill -> session gone (ZK), s"),
        ("worker.session_gone_to_task_restart_s", "worker session gone -> task restarted, s"),
        ("worker.kill_to_task_restart_s", "worker kill -> task restarted, s"),
        ("master.kill_to_session_gone_s", "master kill -> session gone (ZK), s"),
        ("master.session_gone_to_adopted_s", "master session gone -> adopted, s"),
        ("master.kill_to_adopted_s", "master kill -> instances adopted, s"),
    ],
    "backlog": [
        ("tasks", "ready tasks"),
        ("tasks_done", "tasks done"),
        ("queue_peak", "ZooKeeper queue peak entries"),
        ("run_tasks_per_s", "tasks/s overall"),
        ("tasks_per_s_first_tenth", "tasks/s, first tenth of the run"),
        ("tasks_per_s_last_tenth", "tasks/s, last tenth of the run"),
        ("daemon_error_lines", "ERROR lines in daemon logs"),
    ],
}

# (workload, figure, op, bound, text) from the issue, shown and judged but never asserted
TARGETS = [
    ("wide_2000", "run_tasks_per_s", ">=", 300.0, "wide N=2000 >= 300 tasks/s"),
    ("chain", "handoff_p50_ms", "<=", 10.0, "chain hand-off p50 <= 10 ms"),
    ("chain", "handoff_p99_ms", "<=", 50.0, "chain hand-off p99 <= 50 ms"),
    ("big", "first_level_dispatched_s", "<=", 5.0, "big split + dispatch <= 5 s"),
    ("big", "master_rss_mb_peak", "<", 300.0, "big master RSS < 300 MB"),
    ("failover", "worker.session_gone_to_task_restart_s", "<=", 1.0, "task restart <= 1 s"),
    ("idle", "cpu_pct.daemons", "<", 2.0, "idle < 2% of a core"),
]


def family(key: str) -> str:
    return key.split("_")[0]


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each numeric figure over the runs; other values from the last run."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for r in runs for k in r):
        vals = [r.get(key) for r in runs]
        nums = [v for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
        out[key] = (
            median(nums)
            if nums and len(nums) == len([v for v in vals if v is not None])
            else vals[-1]
        )
    return out


def fractions(key: str, med: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, float]:
    """Figures as fractions of what the machine can do (1.0 = at the raw rate)."""
    if not ceiling:
        return {}
    fam, out = family(key), {}
    spawns, serial = ceiling.get("bash_spawns_per_s"), ceiling.get("serial_tasks_per_s")
    tps = med.get("run_tasks_per_s") or med.get("middle_tasks_per_s")
    if fam in ("wide", "big", "backlog", "fan") and isinstance(tps, float):
        out["tasks_per_s_of_bash_spawns"] = tps / spawns if spawns else 0.0
        out["tasks_per_s_of_serial_task_ceiling"] = tps / serial if serial else 0.0
    if fam == "burst" and med.get("claims_per_s"):
        out["claims_per_s_of_pg_commits"] = med["claims_per_s"] / ceiling["pg_commits_per_s"]
    if fam == "chain" and med.get("handoff_p50_ms"):
        # one hand-off needs at least a commit, a ZooKeeper create, a claim and a spawn
        floor = 2 * ceiling["pg_commit_ms"] + 2 * ceiling["zk_create_ms"] + ceiling["bash_spawn_ms"]
        out["handoff_floor_ms"] = floor
        out["handoff_p50_floor_over_measured"] = floor / med["handoff_p50_ms"]
    return out


def judge(workloads: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for wl, fig, op, bound, txt in TARGETS:
        val = workloads.get(wl, {}).get("median", {}).get(fig)
        met = None
        if isinstance(val, int | float):
            met = val >= bound if op == ">=" else val <= bound if op == "<=" else val < bound
        out.append(
            {
                "workload": wl,
                "figure": fig,
                "target": f"{op} {bound:g}",
                "what": txt,
                "value": val,
                "met": met,
            }
        )
    return out


def machine(pg_version: str) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    zk = ""
    try:
        zk = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "zookeeper"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "loadavg_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": pg_version,
        "zookeeper": zk,
    }


def source() -> dict[str, Any]:
    """The commit measured and the files changed on top of it (outside benchmarks/)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            res = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return res.stdout.rstrip("\n") if res.returncode == 0 else ""

    changed = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=all").splitlines()
        if line[3:].endswith(".py") and not line[3:].startswith(("benchmarks/", "tests/"))
    ]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "changed_files": changed}


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        a = abs(v)
        return (
            f"{v:.0f}"
            if a >= 100
            else f"{v:.1f}"
            if a >= 10
            else f"{v:.2f}"
            if a >= 0.1
            else f"{v:.3f}"
        )
    return str(v)


def table(report: dict[str, Any]) -> str:
    lines = [f"{'workload':18} {'figure':50} {'median':>9}  {'of ceiling':>10}  target"]
    targets = {(t["workload"], t["figure"]): t for t in report["targets"]}
    ceiling = report.get("ceiling") or {}
    if ceiling:
        for fig, label in HEADLINES["ceiling"]:
            lines.append(f"{'ceiling':18} {label:50} {_fmt(ceiling.get(fig)):>9}")
    for key, wl in report["workloads"].items():
        name = key
        if wl.get("error"):
            lines.append(f"{key:18} ERROR: {wl['error'].splitlines()[0][:110]}")
            if "median" not in wl:
                continue
            name = ""  # the partial figures follow the error line
        med, frac = wl["median"], wl.get("fraction_of_ceiling", {})
        first_frac = next((v for k, v in frac.items() if "over" in k or "_of_" in k), None)
        shown = 0
        for fig, label in HEADLINES.get(family(key), []):
            if med.get(fig) is None:
                continue
            f = _fmt(first_frac) if shown == 0 and first_frac is not None else ""
            t = targets.get((key, fig))
            tgt = f"{t['target']} {'ok' if t['met'] else 'MISSED'}" if t else ""
            lines.append(
                f"{name if shown == 0 else '':18} {label:50} {_fmt(med[fig]):>9}  {f:>10}  {tgt}"
            )
            shown += 1
    return "\n".join(lines)


def write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(round_floats(report), indent=2, default=str) + "\n")
