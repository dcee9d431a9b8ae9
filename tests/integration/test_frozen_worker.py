"""A frozen worker daemon (SIGSTOP of its pid only, as a GC pause or a debugger would do) while its
tasks run a 10 s sleep that appends start and end lines to a file: the guardian's watchdog kills
them at its deadline, before the session can expire; the master re-runs them on another worker,
and every old attempt is dead before its re-run starts. The same with the whole process tree
frozen (daemon, guardian and tasks) and thawed, the guardian first or everything at once (tasks
first): the old attempts never write again. The thawed worker reports nothing about them."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Cluster

TASKS = ("t0", "t1", "t2")


def body(lines: Path) -> str:
    """Attempt 1 sleeps 10 s, a re-run 2 s (only its start matters here)."""
    stamp = f"$DAGKEEPER_TASK_NAME $DAGKEEPER_ATTEMPT ${{EPOCHREALTIME/[.,]/}}000 >> {lines}"
    return (
        f"echo start {stamp}; "
        'if [ "$DAGKEEPER_ATTEMPT" = 1 ]; then sleep 10; else sleep 2; fi; '
        f"echo end {stamp}"
    )


def read_lines(lines: Path) -> dict[tuple[str, str, int], int]:
    """(start|end, task, attempt) -> the line's wall-clock time in ns."""
    out = {}
    for line in lines.read_text().splitlines():
        what, name, attempt, ns = line.split()
        out[(what, name, int(attempt))] = int(ns)
    return out


def group_states(pgids: set[int]) -> dict[int, set[str]]:
    """The process states (R, S, T, Z...) of the members of each group, from one /proc scan."""
    out: dict[int, set[str]] = {g: set() for g in pgids}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) in out:
            out[int(fields[2])].add(fields[0].decode())
    return out


class Watcher(threading.Thread):
    """Looks at the old attempts' process groups every 10 ms, from outside the frozen tree: the
    last time one of a group's processes was not stopped (it could run) and the first time none
    was left (its unreaped zombie leader aside); both are upper bounds (after the scan)."""

    def __init__(self, pgids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pgids = set(pgids)
        self.ran_ns: dict[int, int] = {}
        self.dead_ns: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            states = group_states(self.pgids)
            seen = time.time_ns()
            for g, st in states.items():
                live = st - {"Z", "X"}
                if not live:
                    self.dead_ns.setdefault(g, seen)
                elif live - {"T", "t"}:
                    self.ran_ns[g] = seen
            time.sleep(0.01)


@dataclass
class Run:
    olds: dict[str, Any]  # task name -> the row of its attempt 1
    dead_ns: dict[int, int]  # pgid -> (see Watcher)
    ran_ns: dict[int, int]
    lines: dict[tuple[str, str, int], int]
    frozen_ns: int
    thawed_ns: int


def freeze_rerun_thaw(c: Cluster, tmp_path: Path, tree: bool, first: str) -> Run:
    """Three tasks start on w1, w1 (its tree) is frozen, w2 starts and the master re-runs them
    there; once every re-run has started, w1 is thawed (``first``) and the run must succeed."""
    lines = tmp_path / "lines"
    lines.touch()
    lines.chmod(0o666)
    c.master("m1")
    c.worker("w1")
    c.wait_registered(1, 1)
    iid = c.submit([{"name": n, "command": body(lines)} for n in TASKS])
    olds = {n: c.wait(lambda n=n: c.find_attempt(iid, n, attempt=1), 30, f"{n}#1") for n in TASKS}
    c.wait(lambda: all(("start", n, 1) in read_lines(lines) for n in TASKS), 10, "start lines")
    watcher = Watcher([r.pid for r in olds.values()])
    watcher.start()
    frozen_ns = time.time_ns()
    c.sigstop("w1", with_tasks=tree)
    c.worker("w2")  # meanwhile: the re-runs go there
    c.wait(
        lambda: all(("start", n, 2) in read_lines(lines) for n in TASKS),
        c.session_timeout_s + 20,
        "every re-run to start",
    )
    thawed_ns = time.time_ns()
    c.sigcont("w1", first=first)
    c.wait_success(iid, 60)
    c.wait_registered(1, 2)  # w1 again, with a new epoch
    c.wait(lambda: len(watcher.dead_ns) == len(TASKS), 10, "the old attempts' groups to go")
    watcher.done.set()
    watcher.join()
    seen = read_lines(lines)
    for n, old in olds.items():
        dead, ran = watcher.dead_ns[old.pid], watcher.ran_ns.get(old.pid, 0)
        print(
            f"\n{n}: freeze -> attempt 1 dead {(dead - frozen_ns) / 1e9:.3f}s, attempt 2 started"
            f" {(seen['start', n, 2] - frozen_ns) / 1e9:.3f}s, thaw at"
            f" {(thawed_ns - frozen_ns) / 1e9:.3f}s; last runnable"
            f" {(ran - frozen_ns) / 1e9:.3f}s"
        )
        assert ("end", n, 1) not in seen  # killed, never finished its sleep
        rows = c.attempts(iid, n)
        assert [(r.attempt, r.state, r.host) for r in rows] == [
            (1, "NEED_FAULT_TOLERANCE", "w1"),
            (2, "SUCCESS", "w2"),
        ], rows
    check_thawed_worker_said_nothing_stale(c, iid, olds)
    c.assert_invariants()
    return Run(olds, watcher.dead_ns, watcher.ran_ns, seen, frozen_ns, thawed_ns)


def check_thawed_worker_said_nothing_stale(c: Cluster, iid: int, olds: dict[str, Any]) -> None:
    """No report about a killed attempt: its row keeps the failover's state and no exit code,
    w1's log has no report, stale or not, about it, and its task log says the watchdog ended it."""
    log = c.procs["w1"].log_path.read_text()
    for line in log.splitlines():
        if any(w in line for w in ("watchdog", "no beat", "session lost", "SIGCONT", "SIGSTOP")):
            print("  w1:", line[-230:])
    assert "no beat from the worker for" in log, log[-3000:]  # the guardian's line
    assert "did not run for" in log and "past its watchdog deadline" in log, log[-3000:]
    for old in olds.values():
        row = c.rows(
            "SELECT state, exit_code, log_path FROM task_instance WHERE id = :i", i=old.id
        )[0]
        assert (row.state, row.exit_code) == ("NEED_FAULT_TOLERANCE", None)
        for line in log.splitlines():
            if f"task {old.id} " in line or f"task {old.id}:" in line:
                assert "discarded" not in line and "FAILURE" not in line, line
        task_log = c.wait(lambda row=row: Path(row.log_path).read_text(), 10, "its task log")
        c.wait(
            lambda row=row: "killed by the watchdog" in Path(row.log_path).read_text(),
            10,
            f"the watchdog's line in {row.log_path}: {task_log}",
        )


def test_frozen_daemon_tasks_die_before_their_reruns(proc_cluster: Cluster, tmp_path: Path) -> None:
    c = proc_cluster
    r = freeze_rerun_thaw(c, tmp_path, tree=False, first="daemon")
    deadline_s = c.session_timeout_s / 4  # the watchdog's default
    for n, old in r.olds.items():
        dead = r.dead_ns[old.pid]
        assert dead < r.lines["start", n, 2], n
        # the deadline, the guardian's 0.1 s check, the kill and the 10 ms sampling
        assert dead - r.frozen_ns < (deadline_s + 0.6) * 1e9 * c.scale, n


def test_frozen_tree_guardian_thawed_first(proc_cluster: Cluster, tmp_path: Path) -> None:
    """The guardian, continued first, kills the still-stopped tasks: they never run again."""
    r = freeze_rerun_thaw(proc_cluster, tmp_path, tree=True, first="guardian")
    for n, old in r.olds.items():
        # never runnable after the freeze (a sample may precede the stop by 10 ms)
        assert r.ran_ns.get(old.pid, 0) < r.frozen_ns + 0.2e9, n
        assert r.thawed_ns < r.dead_ns[old.pid], n


def test_frozen_tree_thawed_tasks_first(proc_cluster: Cluster, tmp_path: Path) -> None:
    """Every task continued before the guardian and the daemon: the kill is their first act on
    waking (each sees the silence on the same stamps), long before a 10 s sleep can end."""
    c = proc_cluster
    r = freeze_rerun_thaw(c, tmp_path, tree=True, first="tasks")
    for n, old in r.olds.items():
        assert r.dead_ns[old.pid] - r.thawed_ns < 1.0e9 * c.scale, n
