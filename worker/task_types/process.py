"""Process groups of running attempts: signal, probe and kill a group, a shell-style exit code, and
the pump that copies an attempt's output pipe to its log in whole lines."""

from __future__ import annotations

import math
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from typing import IO

from worker.task_types.collect import OutputCollector

READ_CHUNK = 65536
IDLE_POLL_S = 0.5  # the pump's tick while a task is silent (timeouts, kill escalation)
LINGER_S = 0.5  # after the leader exits, how long descendants may keep the output pipe open


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False if no process is left in it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # the group id was reused by somebody else's process
        return False


def group_alive(pgid: int) -> bool:
    """True while some process (other than a zombie we cannot see) is in the group."""
    return signal_group(pgid, 0)


def kill_process_group(proc: subprocess.Popen[bytes], grace_s: float) -> int | None:
    """SIGTERM the group, wait up to ``grace_s`` for the leader, then SIGKILL the group. Blocks;
    returns the leader's return code (None if it could not be reaped)."""
    signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    signal_group(proc.pid, signal.SIGKILL)
    try:
        return proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        return None


def exit_code_of(returncode: int) -> int:
    """A shell-style exit code: a death by signal N becomes 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def pump_output(
    proc: subprocess.Popen[bytes],
    sink: IO[bytes],
    collector: OutputCollector,
    tick: Callable[[float], float | None],
) -> None:
    """Copy the output pipe of ``proc`` to ``sink`` in whole lines until end of output and the
    leader's exit; returns with ``proc.returncode`` set. ``tick(now)`` runs at every wake-up
    (at least every IDLE_POLL_S) and returns when it wants to run next, or None. Descendants that
    keep the pipe open after the leader exited get LINGER_S, then are left alone."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    eof = False
    leader_gone: float | None = None
    try:
        while True:
            now = time.monotonic()
            wait_s = IDLE_POLL_S
            due = tick(now)
            if due is not None:
                wait_s = min(wait_s, max(0.0, due - now))
            if eof:
                try:
                    proc.wait(timeout=wait_s)
                    return
                except subprocess.TimeoutExpired:
                    continue
            if poller.poll(math.ceil(wait_s * 1000)):
                data = os.read(fd, READ_CHUNK)
                if not data:
                    eof = True
                    poller.unregister(fd)
                    continue
                lines = collector.feed(data)
                if lines:
                    sink.write(lines)
            if proc.poll() is not None:
                if leader_gone is None:
                    leader_gone = now
                elif now - leader_gone >= LINGER_S:
                    return
    finally:
        tail = collector.flush()
        if tail:
            sink.write(tail + b"\n")
        proc.stdout.close()
