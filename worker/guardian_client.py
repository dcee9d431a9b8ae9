"""The worker's side of its guardian (``worker.guardian``): the guardian process and the pipe to
it, the thread that beats on it, and the lapses (the daemon did not run for longer than the
watchdog deadline) with the attempts they killed.

A lapse is judged by the guardian's rule (``worker.guardian.Watch``) on the worker's own stamps,
so both sides agree on it and on the groups it condemned whichever of them is continued first;
the worker SIGKILLs those groups as well the moment it notices (a beat, or a runner thread
asking ``lapse_of`` after its task ended), and hands each lapse to the loop (``take_lapses``)."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from worker import guardian as script
from worker.guardian import Lapse, Watch, beat_period, kill_lapsed


class Guardian:
    """Owns the guardian process, the pipe to it and the beating thread; thread-safe. A guardian
    that died, or stopped reading (its pipe full), is replaced on the next write, with every
    group still registered. ``on_lapse`` (the loop's wake-up) is called after each lapse."""

    def __init__(
        self,
        name: str,
        grace_s: float,
        log: logging.LoggerAdapter | logging.Logger,  # type: ignore[type-arg]
        deadline_s: float,
    ) -> None:
        self.name = name
        self.grace_s = grace_s
        self.deadline_s = deadline_s
        self.log = log
        self.on_lapse: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._watch = Watch(deadline_s)
        self._lapses: queue.SimpleQueue[Lapse] = queue.SimpleQueue()
        self._closed = False
        self._stop_beating = threading.Event()
        self._beater: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            self._closed = False
            self._ensure()
        self._stop_beating = threading.Event()
        self._beater = threading.Thread(
            target=self._beat_loop, args=(self._stop_beating,), name=f"beat-{self.name}"
        )
        self._beater.daemon = True
        self._beater.start()

    def watch(self, pgid: int, task_instance_id: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._watch.watch(pgid, task_instance_id)
            self._send(f"+ {pgid} {task_instance_id}\n")

    def forget(self, pgid: int) -> None:
        with self._lock:
            if pgid in self._watch.groups:
                self._watch.forget(pgid)
                self._send(f"- {pgid}\n")

    def beat(self) -> None:
        """One beat (the beating thread); a lapse it reveals is acted on here too."""
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            lapse = self._watch.beat(now)
            self._send(f"b {now:.6f}\n")
        if lapse is not None:
            self._act(lapse)

    def lapse_of(self, pgid: int, returncode: int | None) -> str | None:
        """Why the attempt whose leader was ``pgid`` ended, if the watchdog killed it (SIGKILLed
        while registered during a lapse, whoever noticed the lapse first), else None."""
        with self._lock:
            lapse = self._watch.check(time.monotonic())
            silence = self._watch.killed.get(pgid)
        if lapse is not None:
            self._act(lapse)
        if silence is None or returncode != -signal.SIGKILL:
            return None
        return (
            f"killed by the watchdog: the worker daemon did not run for {silence:.1f}s (deadline"
            f" {self.deadline_s:g}s), so its ZooKeeper session may expire and the task run"
            " elsewhere; the attempt is handed to fault tolerance, not failed"
        )

    def take_lapses(self) -> list[Lapse]:
        """The lapses since the last call (the loop logs them and fences what it holds)."""
        out = []
        while True:
            try:
                out.append(self._lapses.get_nowait())
            except queue.Empty:
                return out

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Graceful: the guardian exits without killing (whatever is still registered is left
        to the caller, which has killed or finished it)."""
        with self._lock:
            proc, self._proc = self._proc, None
            self._watch.clear()
            self._closed = True
        self._stop_beating.set()
        if self._beater is not None:
            self._beater.join()
        if proc is None:
            return
        assert proc.stdin is not None
        if not self._write(proc, "clear\n", wait_s=1.0):
            proc.kill()  # not reading: end it without the end-of-file that kills
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _beat_loop(self, stop: threading.Event) -> None:
        period = beat_period(self.deadline_s)
        while not stop.wait(period):
            try:
                self.beat()
            except Exception:  # say so: a beat that stays away gets every task killed
                self.log.exception("guardian beat failed")

    def _act(self, lapse: Lapse) -> None:
        kill_lapsed(lapse)  # the guardian does the same: whichever of us runs first
        self._lapses.put(lapse)
        if self.on_lapse is not None:
            self.on_lapse()

    def _ensure(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        if proc is not None:
            self.log.error(
                "guardian pid %d exited (%s); starting a new one", proc.pid, proc.returncode
            )
        path = os.path.abspath(script.__file__)
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", path, self.name, str(self.grace_s), str(self.deadline_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        assert proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)  # a stuck guardian must not stop the worker
        self._proc = proc
        self.log.info(
            "guardian pid %d watches the task process groups (watchdog deadline %gs)",
            proc.pid,
            self.deadline_s,
        )
        # every group still registered, and the last beat: a new guardian is armed at once
        lines = [f"+ {g} {t}\n" for g, t in self._watch.groups.items()]
        if self._watch.last_beat is not None:
            lines.append(f"b {self._watch.last_beat:.6f}\n")
        if lines:
            self._write(proc, "".join(lines), wait_s=5.0)
        return proc

    def _send(self, line: str) -> None:
        proc = self._ensure()
        if not self._write(proc, line):
            if proc.poll() is None:  # alive but not reading: stopped, or stuck
                self.log.error("guardian pid %d reads nothing (pipe full); replacing it", proc.pid)
                proc.kill()
            proc.wait()
            self._ensure()

    def _write(self, proc: subprocess.Popen[bytes], data: str, wait_s: float = 0.0) -> bool:
        """All of ``data`` (a line is one atomic write), waiting up to ``wait_s`` for room."""
        assert proc.stdin is not None
        fd, view = proc.stdin.fileno(), memoryview(data.encode())
        deadline = time.monotonic() + wait_s
        try:
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return False
                    select.select([], [fd], [], 0.05)
            return True
        except OSError as exc:
            self.log.warning("guardian pid %d unreachable: %s", proc.pid, exc)
            return False
