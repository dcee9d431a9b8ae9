"""The guardian: one tiny helper process per worker that kills the worker's task process groups
within a moment of the worker's death, however it dies (kill -9, OOM killer, a crash).

Design. Every task runs in its own session and process group (pgid = pid of its leader), so the
kernel does not take it down with the worker. At start the worker spawns this module as a script
(``python -I -S guardian.py``, stdlib only, in its own session so that a signal to the worker's
process group does not reach it) with a pipe on its stdin; the worker alone holds the write end
(not inherited by tasks: every spawn closes other descriptors). For each task it writes
``+ <pgid> <task instance id>`` after the spawn and ``- <pgid>`` once the attempt is over. When
the worker process dies, the kernel closes the write end, the guardian reads end-of-file and
SIGTERMs, then after a short grace SIGKILLs, every group still registered — but only a group that
still holds a process whose environment carries ``DAGKEEPER_TASK_INSTANCE_ID=<id>`` (the marker
every task inherits), so a pgid reused by an unrelated process is never touched. Unlike
prctl(PR_SET_PDEATHSIG), which fires when the *thread* that spawned the child exits and only
signals one process, this reacts to the death of the process and reaches the whole group, and it
costs one process per worker instead of one per task. A graceful stop closes the pipe with nothing
registered, and the guardian just exits. The worker's start-up sweep (``worker.orphans``) covers
what the guardian cannot: a guardian killed together with the worker, or a host reboot race."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable

MARKER = "DAGKEEPER_TASK_INSTANCE_ID"


# /proc helpers (shared with the start-up sweep; stdlib only: this file also runs as a script)


def process_groups() -> dict[int, list[int]]:
    """pgid -> pids of every process we can see (from /proc/<pid>/stat)."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 3:
            out.setdefault(int(fields[2]), []).append(int(name))
    return out


def runs_attempt(pid: int, task_instance_id: int) -> bool:
    """True if process ``pid`` carries the marker of ``task_instance_id`` in its environment."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    return f"\0{MARKER}={task_instance_id}\0".encode() in b"\0" + env + b"\0"


def ours(groups: dict[int, int], table: dict[int, list[int]] | None = None) -> list[int]:
    """The pgids of ``groups`` (pgid -> task instance id) that still run a process we spawned."""
    table = process_groups() if table is None else table
    return [
        pgid
        for pgid, ti_id in groups.items()
        if any(runs_attempt(pid, ti_id) for pid in table.get(pgid, ()))
    ]


def kill_groups(pgids: Iterable[int], grace_s: float) -> None:
    """SIGTERM the groups, wait up to ``grace_s`` for them to empty, SIGKILL what is left."""
    pgids = list(pgids)
    for pgid in pgids:
        _signal(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_signal(p, 0) for p in pgids):
        time.sleep(0.02)
    for pgid in pgids:
        _signal(pgid, signal.SIGKILL)


def _signal(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# the worker's side


class Guardian:
    """Owns the guardian process and the pipe to it; thread-safe. A guardian that died is
    started again on the next call, with every group still registered."""

    def __init__(self, name: str, grace_s: float, log: logging.LoggerAdapter | logging.Logger):  # type: ignore[type-arg]
        self.name = name
        self.grace_s = grace_s
        self.log = log
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: dict[int, int] = {}
        self._closed = False

    def start(self) -> None:
        with self._lock:
            self._closed = False
            self._ensure()

    def watch(self, pgid: int, task_instance_id: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._groups[pgid] = task_instance_id
            self._send(f"+ {pgid} {task_instance_id}\n")

    def forget(self, pgid: int) -> None:
        with self._lock:
            if self._groups.pop(pgid, None) is not None:
                self._send(f"- {pgid}\n")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Graceful: the guardian exits without killing (whatever is still registered is left
        to the caller, which has killed or finished it)."""
        with self._lock:
            proc, self._proc = self._proc, None
            self._groups.clear()
            self._closed = True
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.write(b"clear\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _ensure(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        if proc is not None:
            self.log.error(
                "guardian pid %d exited (%s); starting a new one", proc.pid, proc.returncode
            )
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), self.name, str(self.grace_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        self._proc = proc
        self.log.info("guardian pid %d watches the task process groups", proc.pid)
        if self._groups:
            self._write(proc, "".join(f"+ {g} {t}\n" for g, t in self._groups.items()))
        return proc

    def _send(self, line: str) -> None:
        proc = self._ensure()
        if not self._write(proc, line):
            proc.wait()  # broken pipe: it is gone; start another with every group
            self._ensure()

    def _write(self, proc: subprocess.Popen[bytes], data: str) -> bool:
        try:
            assert proc.stdin is not None
            proc.stdin.write(data.encode())
            proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError) as exc:
            self.log.warning("guardian pid %d unreachable: %s", proc.pid, exc)
            return False


# the guardian process


def main(argv: list[str]) -> int:
    name, grace_s = argv[1], float(argv[2])
    groups: dict[int, int] = {}
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    for raw in sys.stdin.buffer:
        parts = raw.split()
        if parts == [b"clear"]:
            groups.clear()
        elif len(parts) == 3 and parts[0] == b"+":
            groups[int(parts[1])] = int(parts[2])
        elif len(parts) == 2 and parts[0] == b"-":
            groups.pop(int(parts[1]), None)
    if not groups:
        return 0
    pgids = ours(groups)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(
        f"{stamp} WARNING guardian of worker {name}: the worker is gone; killing task process"
        f" groups {sorted(pgids)} (of {sorted(groups)} registered)\n"
    )
    sys.stderr.flush()
    kill_groups(pgids, grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
