"""The guardian as a real process (no servers): it SIGKILLs a registered task group once the beats
stop, a stopped task included; it kills nothing when only the guardian itself was stopped; after
a freeze of both it kills on waking whichever of the two was continued first; and the worker's
side (``worker.guardian_client.Guardian``) knows which attempts the watchdog killed, kills them
itself when the guardian cannot, and replaces a guardian that stopped reading."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from worker import guardian as script
from worker.guardian_client import Guardian

DEADLINE_S = 0.5
StartTask = Callable[[int], subprocess.Popen[bytes]]
log = logging.getLogger("test.guardian")


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def tasks(tmp_path: Path) -> Iterator[StartTask]:
    """Start a task: a process group whose bash leader appends a tick to a file every 50 ms and
    carries the attempt's marker; every one left is SIGKILLed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(ti_id: int) -> subprocess.Popen[bytes]:
        ticks = tmp_path / f"ticks-{ti_id}"
        p = subprocess.Popen(
            ["bash", "-c", f"while :; do echo x >> {ticks}; sleep 0.05; done"],
            env={"PATH": os.environ["PATH"], script.MARKER: str(ti_id)},
            start_new_session=True,
        )
        started.append(p)
        wait_for(lambda: ticks.exists(), 5, "the task's first tick")
        return p

    yield start
    for p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


class Pipe:
    """The worker's end of a guardian process started by the test, which writes the beats."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", script.__file__, "w-test", "0.2", str(DEADLINE_S)],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stdin is not None
        self.stdin = self.proc.stdin

    def send(self, line: str) -> None:
        self.stdin.write(line.encode())
        self.stdin.flush()

    def beat(self, at: float | None = None) -> None:
        self.send(f"b {time.monotonic() if at is None else at:.6f}\n")

    def beat_for(self, seconds: float) -> float:
        """Beat every 50 ms for ``seconds``; the stamp of the last beat."""
        end = time.monotonic() + seconds
        while True:
            last = time.monotonic()
            self.beat(last)
            if last >= end:
                return last
            time.sleep(0.05)

    def close(self) -> str:
        """End it gracefully; its stderr."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.send("clear\n")
        self.stdin.close()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read().decode()
        assert self.proc.wait(timeout=10) == 0
        return err


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    if p.proc.poll() is None:
        p.proc.kill()
        p.proc.wait()


def test_no_beat_for_the_deadline_kills_the_group(
    pipe: Pipe, tasks: StartTask, tmp_path: Path
) -> None:
    task, spared = tasks(7), tasks(8)
    pipe.send(f"+ {task.pid} 7\n+ {spared.pid} 8\n- {spared.pid}\n")
    last = pipe.beat_for(0.6)  # beats keep it alive past the deadline
    assert task.poll() is None
    task.wait(timeout=5)
    took = time.monotonic() - last
    print(f"\nlast beat -> task killed in {took:.3f}s (deadline {DEADLINE_S}s)")
    assert task.returncode == -signal.SIGKILL
    assert DEADLINE_S <= took < DEADLINE_S + 1.0  # its 50 ms check; a busy host
    assert spared.poll() is None  # forgotten before the silence
    err = pipe.close()
    assert "ERROR guardian of worker w-test: no beat from the worker for" in err, err
    assert f"killed task process groups [{task.pid}] (task instances [7]) with SIGKILL" in err, err


def test_a_stopped_task_dies_without_running_again(
    pipe: Pipe, tasks: StartTask, tmp_path: Path
) -> None:
    task = tasks(7)
    pipe.send(f"+ {task.pid} 7\n")
    pipe.beat_for(0.2)
    os.killpg(task.pid, signal.SIGSTOP)  # the worker and its tasks are frozen, the guardian not
    time.sleep(0.1)
    size = (tmp_path / "ticks-7").stat().st_size
    task.wait(timeout=5)
    assert task.returncode == -signal.SIGKILL
    assert (tmp_path / "ticks-7").stat().st_size == size
    pipe.close()


def test_only_the_guardian_stopped_kills_nothing(pipe: Pipe, tasks: StartTask) -> None:
    task = tasks(7)
    pipe.send(f"+ {task.pid} 7\n")
    pipe.beat_for(0.2)
    os.kill(pipe.proc.pid, signal.SIGSTOP)
    pipe.beat_for(2 * DEADLINE_S)  # the worker goes on beating into the pipe
    os.kill(pipe.proc.pid, signal.SIGCONT)
    pipe.beat_for(0.3)
    assert task.poll() is None
    assert "no beat" not in pipe.close()


@pytest.mark.parametrize("first", ["worker", "guardian"])
def test_both_frozen_the_first_one_continued_kills(
    pipe: Pipe, tasks: StartTask, first: str
) -> None:
    """A freeze of the whole tree: the worker (its beats), the guardian and the task stop; the
    worker continued first beats at once, and that beat must not pass for a live worker."""
    task = tasks(7)
    pipe.send(f"+ {task.pid} 7\n")
    pipe.beat_for(0.2)
    os.kill(pipe.proc.pid, signal.SIGSTOP)
    os.killpg(task.pid, signal.SIGSTOP)
    time.sleep(DEADLINE_S + 0.4)
    if first == "worker":
        pipe.beat()  # the worker's first beat after the thaw reaches the pipe first
    thawed = time.monotonic()
    os.kill(pipe.proc.pid, signal.SIGCONT)
    task.wait(timeout=5)  # killed while still stopped: the test never continues it
    print(f"\n{first} first: guardian continued -> task dead in {time.monotonic() - thawed:.3f}s")
    assert task.returncode == -signal.SIGKILL
    err = pipe.close()
    assert "(and so was this guardian)" in err and "with SIGKILL" in err, err


def test_worker_side_knows_what_the_watchdog_killed(tasks: StartTask) -> None:
    g = Guardian("w-test", 0.2, log, DEADLINE_S)
    g.start()
    try:
        task, other = tasks(7), tasks(8)
        g.watch(task.pid, 7)
        g.watch(other.pid, 8)
        time.sleep(0.6)  # beats from the thread: alive
        assert task.poll() is None and g.take_lapses() == []
        g.forget(other.pid)
        os.killpg(other.pid, signal.SIGKILL)  # ended before, whatever the reason
        other.wait()
        g._stop_beating.set()  # the beat stops as a frozen daemon's would
        task.wait(timeout=5)  # the guardian process kills it
        why = g.lapse_of(task.pid, task.returncode)
        assert why is not None and "killed by the watchdog" in why, why
        assert g.lapse_of(other.pid, other.returncode) is None  # not registered at the lapse
        (lapse,) = g.take_lapses()
        assert lapse.groups == {task.pid: 7} and lapse.silence_s > DEADLINE_S
    finally:
        g.close()


def test_worker_side_kills_itself_when_the_guardian_cannot(tasks: StartTask) -> None:
    g = Guardian("w-test", 0.2, log, DEADLINE_S)
    woken: list[bool] = []
    g.on_lapse = lambda: woken.append(True)
    g.start()
    try:
        task = tasks(7)
        g.watch(task.pid, 7)
        time.sleep(0.3)
        assert g.pid is not None
        os.kill(g.pid, signal.SIGSTOP)  # the guardian is frozen; so, for a while, is the beat
        g._stop_beating.set()
        time.sleep(DEADLINE_S + 0.3)
        assert task.poll() is None  # nobody has acted yet
        g.beat()  # the worker is continued first: its beat sees the silence and kills
        task.wait(timeout=2)
        assert task.returncode == -signal.SIGKILL and woken == [True]
        assert g.lapse_of(task.pid, task.returncode) is not None
        os.kill(g.pid, signal.SIGCONT)
    finally:
        g.close()


def test_a_guardian_that_stopped_reading_is_replaced(tasks: StartTask) -> None:
    g = Guardian("w-test", 0.2, log, DEADLINE_S)
    g.start()
    try:
        task = tasks(7)
        g.watch(task.pid, 7)
        old = g.pid
        assert old is not None
        os.kill(old, signal.SIGSTOP)
        # the pipe fills (64 KiB) with beats; the write that finds it full replaces the guardian
        for _ in range(100_000):
            g.beat()
            if g.pid != old:
                break
        assert g.pid != old
        wait_for(lambda: not os.path.exists(f"/proc/{old}"), 5, "the old guardian reaped")
        assert task.poll() is None  # killing the stuck guardian kills no task
        g._stop_beating.set()  # the new one got every registered group: it kills on a silence
        task.wait(timeout=5)
        assert task.returncode == -signal.SIGKILL
    finally:
        g.close()


def test_graceful_close_kills_nothing(tasks: StartTask) -> None:
    g = Guardian("w-test", 0.2, log, DEADLINE_S)
    g.start()
    task = tasks(7)
    g.watch(task.pid, 7)
    time.sleep(0.3)
    proc = g._proc
    g.close()  # the caller has finished or killed what is registered: here it is left alone
    assert proc is not None and proc.returncode == 0
    time.sleep(DEADLINE_S + 0.2)
    assert task.poll() is None
