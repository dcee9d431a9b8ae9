"""The chaos harness's overlap check for the watchdog's fault (no servers): a killed attempt (no end
record) counts as running until its last tick, so a kill that comes after the re-run started is
an overlap; and the task wrapper's ticker writes while the task runs and goes with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))
from harness import Cluster  # noqa: E402

S = 1_000_000_000  # ns


def cluster(tmp_path: Path) -> Cluster:
    # nothing connects: the engine is lazy and only files are read here
    return Cluster(tmp_path, "postgresql+psycopg2://nobody@127.0.0.1:1/none", "", "/x", tick_s=0.25)


def life(c: Cluster, tid: int, attempt: int, *at_s: float, worker: str = "w1") -> None:
    with open(c.life_file, "a") as f:
        for t in at_s:
            f.write(f"7 {tid} t0 {attempt} {int(t * S)} {worker}\n")


def side(c: Cluster, tid: int, attempt: int, start_s: float, end_s: float, worker: str) -> None:
    with open(c.side_file, "a") as f:
        f.write(f"7 {tid} t0 {attempt} {int(start_s * S)} {int(end_s * S)} {worker}\n")


def test_a_killed_attempt_runs_until_its_last_tick(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    life(c, 1, 1, 0.0, 1.0, 2.0, 5.0)  # killed at ~5 s, after its re-run started
    life(c, 2, 2, 4.0, worker="w2")
    side(c, 2, 2, 4.0, 6.0, "w2")
    assert c.check_overlaps() == [
        "instance 7 task t0: attempt 1 on w1 (killed) and attempt 2 on w2 overlapped by 1.000s"
    ]


def test_killed_before_the_rerun_started_is_no_overlap(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    life(c, 1, 1, 0.0, 1.0, 2.0)  # the watchdog's kill, ~2 s
    life(c, 2, 2, 4.0, worker="w2")
    side(c, 2, 2, 4.0, 6.0, "w2")
    assert c.check_overlaps() == []


def test_a_finished_attempt_runs_until_its_end(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    life(c, 1, 1, 0.0, 1.0)
    side(c, 1, 1, 0.0, 6.5, "w1")  # no watchdog: it ran its course beside its re-run
    side(c, 2, 2, 4.0, 8.0, "w2")
    assert c.check_overlaps() == [
        "instance 7 task t0: attempt 1 on w1 and attempt 2 on w2 overlapped by 2.500s"
    ]


ENV = {
    "PATH": os.environ["PATH"],
    "DAGKEEPER_WORKFLOW_INSTANCE_ID": "7",
    "DAGKEEPER_TASK_INSTANCE_ID": "1",
    "DAGKEEPER_TASK_NAME": "t0",
    "DAGKEEPER_ATTEMPT": "1",
    "DAGKEEPER_WORKER_ID": "w1",
}


def live_members(pgid: int) -> list[int]:
    """Pids of group ``pgid`` that are not zombies (an orphan's zombie may wait for init)."""
    out = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            out.append(int(name))
    return out


def test_the_wrapper_ticks_while_the_task_runs_and_stops_with_it(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    p = subprocess.Popen(["bash", "-c", c.task("sleep 0.7")], env=ENV, start_new_session=True)
    assert p.wait(timeout=10) == 0
    time.sleep(0.4)  # a ticker left behind would tick again by now
    ticks = [r.at_ns for r in c.life_records()]
    (rec,) = c.side_records()
    assert 3 <= len(ticks) <= 5, ticks  # the start line and a tick every 0.25 s
    assert max(ticks) <= rec.end_ns
    assert live_members(p.pid) == [], "a ticker outlived its task"


def test_a_killed_task_stops_ticking(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    p = subprocess.Popen(["bash", "-c", c.task("sleep 30")], env=ENV, start_new_session=True)
    time.sleep(0.6)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    killed_ns = time.time_ns()
    time.sleep(0.4)
    ticks = [r.at_ns for r in c.life_records()]
    assert len(ticks) >= 2 and max(ticks) < killed_ns and c.side_records() == []
