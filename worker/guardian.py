"""The guardian: one tiny helper process per worker that kills the worker's task process groups
at once when the worker dies (kill -9, OOM killer, a crash) or stops beating (frozen: SIGSTOP, a
long GC pause, a debugger), before its ZooKeeper session can expire and the tasks run elsewhere.

Design. Every task runs in its own session and process group (pgid = pid of its leader), so the
kernel does not take it down with the worker. At start the worker spawns this module as a script
(``python -I -S guardian.py``, stdlib only, in its own session so that a signal to the worker's
process group does not reach it) with a pipe on its stdin; the worker alone holds the write end
(not inherited by tasks: every spawn closes other descriptors). For each task it writes
``+ <pgid> <task instance id>`` after the spawn and ``- <pgid>`` once the attempt is over.

Death. When the worker process dies, the kernel closes the write end, the guardian reads
end-of-file and SIGTERMs, then after a short grace SIGKILLs, every group still registered — but
only a group that still holds a process whose environment carries
``DAGKEEPER_TASK_INSTANCE_ID=<id>`` (the marker every task inherits), so a pgid reused by an
unrelated process is never touched. Unlike prctl(PR_SET_PDEATHSIG) this reacts to the death of
the process (not of a thread) and reaches the whole group. A graceful stop writes ``clear`` and
closes the pipe, and the guardian just exits. The worker's start-up sweep (``worker.orphans``)
covers what the guardian cannot: a guardian killed together with the worker, a host reboot race.

Freeze (the watchdog, as Patroni's for a frozen leader). A thread of the worker writes
``b <stamp>``, its CLOCK_MONOTONIC time, every ``beat_period`` (a quarter of the deadline, at
most 0.25 s); SIGSTOP or a GC pause stops it with the rest of the daemon. ``Watch`` is the rule:
a lapse is a silence longer than the deadline, seen either on the guardian's own clock (the worker
is frozen, the guardian is not) or between two stamps in a row (both were frozen and the worker
was continued first: its fresh beat carries the gap, so it cannot pass for a live worker). On a
lapse the guardian SIGKILLs every registered group at once (a stopped process dies too), and
says so on stderr (the worker's log). The worker's side (``worker.guardian_client``) applies the
same rule to the same stamps, so it kills the same groups itself when it is continued first, and
knows that an attempt the watchdog ended is no failure of the task. The deadline
(``worker.watchdog_deadline_s``) is validated against the session timeout (``core.settings``)
so that the kill comes before the session can expire. A thaw that continues the tasks before
both processes is the one order no user-space watchdog can win (README, Fault tolerance)."""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

MARKER = "DAGKEEPER_TASK_INSTANCE_ID"
BEAT_MAX_S = 0.25  # the worker beats at least this often
CHECK_MAX_S = 0.1  # the guardian looks at its clock at least this often


def beat_period(deadline_s: float) -> float:
    return min(BEAT_MAX_S, deadline_s / 4)


def check_period(deadline_s: float) -> float:
    return min(CHECK_MAX_S, deadline_s / 10)


# the watchdog's rule, pure (both sides keep one ``Watch``; the clock is passed in)


@dataclass(frozen=True)
class Lapse:
    """No beat for ``silence_s`` (> the deadline): ``groups`` (pgid -> task instance id), every
    group registered then and not killed by an earlier lapse, are to be killed."""

    silence_s: float
    groups: dict[int, int]


class Watch:
    """The registered groups, the newest beat and the groups a lapse condemned (``killed``: pgid
    -> the silence, until the group is forgotten). Armed by the first beat."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.groups: dict[int, int] = {}
        self.killed: dict[int, float] = {}
        self.last_beat: float | None = None
        self._reported: float | None = None  # the beat whose silence was reported

    def watch(self, pgid: int, task_instance_id: int) -> None:
        self.groups[pgid] = task_instance_id
        self.killed.pop(pgid, None)

    def forget(self, pgid: int) -> None:
        self.groups.pop(pgid, None)
        self.killed.pop(pgid, None)

    def clear(self) -> None:
        """A graceful stop: nothing registered, and disarmed."""
        self.groups.clear()
        self.killed.clear()
        self.last_beat = self._reported = None

    def beat(self, stamp: float) -> Lapse | None:
        """A beat stamped ``stamp``; the lapse it reveals (the silence before it), if any."""
        lapse = self.check(stamp)
        self.last_beat = stamp if self.last_beat is None else max(self.last_beat, stamp)
        return lapse

    def check(self, now: float) -> Lapse | None:
        """The lapse at ``now``: once per silence, then again only for groups registered since."""
        if self.last_beat is None or now - self.last_beat <= self.deadline_s:
            return None
        silence = now - self.last_beat
        fresh = {g: t for g, t in self.groups.items() if g not in self.killed}
        if self._reported == self.last_beat and not fresh:
            return None
        self._reported = self.last_beat
        for pgid in fresh:
            self.killed[pgid] = silence
        return Lapse(silence, fresh)

    def apply(self, line: bytes) -> Lapse | None:
        """One line of the pipe's protocol (the guardian's side)."""
        parts = line.split()
        if parts == [b"clear"]:
            self.clear()
        elif len(parts) == 2 and parts[0] == b"b":
            return self.beat(float(parts[1]))
        elif len(parts) == 3 and parts[0] == b"+":
            self.watch(int(parts[1]), int(parts[2]))
        elif len(parts) == 2 and parts[0] == b"-":
            self.forget(int(parts[1]))
        return None


# /proc helpers (shared with the start-up sweep)


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


def ours_now(groups: dict[int, int]) -> list[int]:
    """``ours`` fast: a live leader of its own group with the marker settles a group in two small
    reads; /proc is scanned only for groups whose leader is gone (or a zombie)."""
    found, unsure = [], {}
    for pgid, ti_id in groups.items():
        try:
            with open(f"/proc/{pgid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            leads = fields[0] != b"Z" and int(fields[2]) == pgid
        except (OSError, IndexError, ValueError):
            leads = False
        if leads and runs_attempt(pgid, ti_id):
            found.append(pgid)
        elif not leads:
            unsure[pgid] = ti_id
    return found + (ours(unsure) if unsure else [])


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


def kill_lapsed(lapse: Lapse) -> list[int]:
    """SIGKILL, no grace, the groups of a lapse that still run our processes; their pgids."""
    pgids = ours_now(lapse.groups)
    for pgid in pgids:
        _signal(pgid, signal.SIGKILL)
    return pgids


def _signal(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# the guardian process


def serve(fd: int, name: str, grace_s: float, deadline_s: float) -> int:
    """Read the pipe until end-of-file, acting on every lapse; then kill what is registered."""
    watch = Watch(deadline_s)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    timeout_ms = max(1, round(check_period(deadline_s) * 1000))
    buf, eof, woke = b"", False, time.monotonic()
    while not eof:
        poller.poll(timeout_ms)
        # the clock before reading: every beat stamped before it is in the pipe by now
        now = time.monotonic()
        stopped, woke = now - woke > deadline_s, now  # this process was stopped as well
        while not eof and poller.poll(0):
            chunk = os.read(fd, 65536)
            eof = not chunk
            buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            _killed(name, watch, watch.apply(line), stopped)
        if not eof:
            _killed(name, watch, watch.check(now), stopped)
    groups = {g: t for g, t in watch.groups.items() if g not in watch.killed}
    if not groups:
        return 0
    pgids = ours(groups)
    _say(
        f"WARNING guardian of worker {name}: the worker is gone; killing task process groups"
        f" {sorted(pgids)} (of {sorted(groups)} registered)"
    )
    kill_groups(pgids, grace_s)
    return 0


def _killed(name: str, watch: Watch, lapse: Lapse | None, stopped: bool) -> None:
    if lapse is None:
        return
    pgids = kill_lapsed(lapse)  # first, then say so
    tasks = sorted(lapse.groups[g] for g in pgids)
    what = (
        f"killed task process groups {sorted(pgids)} (task instances {tasks}) with SIGKILL"
        if pgids
        else "no task to kill"
    )
    also = " (and so was this guardian)" if stopped else ""
    _say(
        f"ERROR guardian of worker {name}: no beat from the worker for {lapse.silence_s:.2f}s"
        f" (watchdog deadline {watch.deadline_s:g}s): it is frozen or stalled{also}; {what},"
        " so that they cannot run on beside their re-runs elsewhere"
    )


def _say(message: str) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    sys.stderr.write(f"{stamp},{int(now * 1000) % 1000:03d} {message}\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    return serve(sys.stdin.fileno(), argv[1], float(argv[2]), float(argv[3]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
