"""The log shipper: one thread that copies the logs of the attempts running on this worker into
PostgreSQL (``task_log_chunk``) as they grow, one INSERT per batch for every attempt; ``flush``
ships an attempt's last bytes before its finish is reported.

It reads the files the tasks write, so memory stays bounded (at most ``BATCH_BYTES`` per batch)
and an empty log costs no statement."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text

from core.settings import LogSettings
from core.tasklogs import cut_chunks
from worker import WorkerLog, observe

BATCH_BYTES = 4 << 20  # most log bytes read into one INSERT
MAX_FAILURES = 20  # batches an ended attempt may fail before its rest is given up
RETRY_S = 1.0  # pause after a failed INSERT

_INSERT = text(
    "INSERT INTO task_log_chunk (task_instance_id, seq, first_line, line_count, data)"
    " SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:seqs AS integer[]),"
    " CAST(:firsts AS bigint[]), CAST(:counts AS integer[]), CAST(:datas AS bytea[]))"
    " ON CONFLICT DO NOTHING"
)


@dataclass(eq=False)
class _Tail:
    """What has been shipped of one attempt's log file."""

    ti_id: int
    path: Path
    offset: int = 0  # bytes of the file shipped
    seq: int = 0
    lines: int = 0
    fh: IO[bytes] | None = None
    ending: bool = False  # the attempt is over: ship everything, then forget it
    capped: bool = False  # ship_max_bytes reached: nothing more is shipped
    failures: int = 0
    waiters: list[threading.Event] = field(default_factory=list)


class LogShipper:
    """``track`` an attempt once it runs, ``flush`` (or ``end``) it once it is over."""

    def __init__(self, engine: Engine, settings: LogSettings, host: str, log: WorkerLog) -> None:
        self.engine = engine
        self.enabled = settings.ship
        self.interval_s = settings.ship_interval_s
        self.chunk_bytes = settings.ship_chunk_bytes
        self.max_bytes = settings.ship_max_bytes
        self.host = host
        self.log = log
        self._tails: dict[int, _Tail] = {}
        self._live: dict[int, Path] = {}  # attempts running here (read by the log server)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._loop, name="log-shipper", daemon=True)
        self.stats = {"batches": 0, "chunks": 0, "bytes": 0, "failures": 0}

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Ship what ended attempts left (up to ``timeout``), then stop."""
        deadline = time.monotonic() + timeout
        while self.enabled and self._thread.is_alive() and time.monotonic() < deadline:
            with self._lock:
                if not any(t.ending for t in self._tails.values()):
                    break
            self._wake.set()
            time.sleep(0.05)
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._conn is not None:
            self._conn.close()

    # called by the runner threads

    def track(self, ti_id: int, path: Path) -> None:
        with self._lock:
            self._live[ti_id] = path
            if self.enabled:
                self._tails[ti_id] = _Tail(ti_id, path)

    def path_of(self, ti_id: int) -> Path | None:
        """The log file of an attempt running here, else None."""
        return self._live.get(ti_id)

    def flush(self, ti_id: int, timeout: float) -> bool:
        """The attempt is over: ship the rest of its log now (with whatever else is due, one
        INSERT); False if that did not happen within ``timeout``."""
        done = threading.Event()
        with self._lock:
            self._live.pop(ti_id, None)
            tail = self._tails.get(ti_id)
            if tail is None:
                return True
            tail.ending = True
            if tail.capped or _size(tail) <= tail.offset:  # nothing new: no statement
                self._forget(tail)
                return True
            tail.waiters.append(done)
        self._wake.set()
        return done.wait(timeout)

    def end(self, ti_id: int) -> None:
        """The attempt is over without a report (abandoned, put back): ship the rest later."""
        with self._lock:
            self._live.pop(ti_id, None)
            tail = self._tails.get(ti_id)
            if tail is None:
                return
            tail.ending = True
            if tail.capped or _size(tail) <= tail.offset:
                self._forget(tail)
                return
        self._wake.set()

    def _forget(self, tail: _Tail) -> None:
        self._tails.pop(tail.ti_id, None)
        if tail.fh is not None:
            tail.fh.close()
            tail.fh = None
        for ev in tail.waiters:
            ev.set()
        tail.waiters.clear()

    # the shipper thread

    def _loop(self) -> None:
        next_periodic = time.monotonic() + self.interval_s
        while not self._closing.is_set():
            self._wake.wait(max(0.0, next_periodic - time.monotonic()))
            self._wake.clear()
            now = time.monotonic()
            periodic = now >= next_periodic
            if periodic:
                next_periodic = now + self.interval_s
            try:
                more = self.run_once(everything=periodic)
            except Exception:
                self.log.exception("log shipper: unexpected error")
                more = False
                self._closing.wait(RETRY_S)
            if more:
                self._wake.set()

    def run_once(self, everything: bool = True) -> bool:
        """One batch: new bytes of ended attempts (and, if ``everything``, of running ones) in
        one INSERT. True if bytes were left for another batch at once."""
        with self._lock:
            tails = [t for t in self._tails.values() if everything or t.ending]
        rows: list[tuple[_Tail, int, int, int, bytes]] = []
        advance: dict[_Tail, tuple[int, int, int]] = {}  # tail -> (offset, seq, lines) after
        budget, more = BATCH_BYTES, False
        for tail in sorted(tails, key=lambda t: not t.ending):  # ended attempts first
            if budget <= 0:
                more = True
                break
            got = self._read(tail, budget)
            if got is None:
                continue
            data, at_eof = got
            final = tail.ending and at_eof
            offset, seq, lines = tail.offset, tail.seq, tail.lines
            for piece in cut_chunks(data, self.chunk_bytes, final):
                if self.max_bytes and offset + len(piece) > self.max_bytes:
                    piece = self._cap_note(tail, offset)
                    rows.append((tail, seq, lines, piece.count(b"\n"), piece))
                    seq += 1
                    offset = -1  # capped
                    break
                rows.append((tail, seq, lines, piece.count(b"\n"), piece))
                offset, seq, lines = offset + len(piece), seq + 1, lines + piece.count(b"\n")
            advance[tail] = (offset, seq, lines)
            budget -= len(data)
            more = more or (offset >= 0 and not at_eof)
        if rows and not self._insert(rows):
            for tail in advance:
                tail.failures += 1
                if tail.ending and tail.failures >= MAX_FAILURES:
                    self.log.error(
                        "task %d: giving up shipping the rest of its log (%s)",
                        tail.ti_id,
                        tail.path,
                    )
                    with self._lock:
                        self._forget(tail)
            self._closing.wait(RETRY_S)
            return False
        with self._lock:
            for tail, (offset, seq, lines) in advance.items():
                tail.seq, tail.lines, tail.failures = seq, lines, 0
                if offset < 0:
                    tail.capped = True
                else:
                    tail.offset = offset
                if tail.ending and (tail.capped or _size(tail) <= tail.offset):
                    self._forget(tail)
        return more

    def _read(self, tail: _Tail, budget: int) -> tuple[bytes, bool] | None:
        """New bytes of the file (at most ``budget``) and whether they reach its end."""
        if tail.capped:
            return None
        size = _size(tail)
        if size <= tail.offset:
            return None
        try:
            if tail.fh is None:
                tail.fh = open(tail.path, "rb")  # noqa: SIM115 - kept open while it runs
            want = min(size - tail.offset, budget)
            data = os.pread(tail.fh.fileno(), want, tail.offset)
        except OSError as exc:
            self.log.warning("task %d: cannot read its log %s: %s", tail.ti_id, tail.path, exc)
            with self._lock:
                if tail.ending:
                    self._forget(tail)
            return None
        return data, tail.offset + len(data) >= size

    def _cap_note(self, tail: _Tail, offset: int) -> bytes:
        self.log.warning(
            "task %d: log passed %d bytes; the rest stays in %s", tail.ti_id, offset, tail.path
        )
        return (
            f"[dagkeeper] log cut here after {offset} bytes (logs.ship_max_bytes); the whole log"
            f" is {tail.path} on {self.host}\n"
        ).encode()

    def _insert(self, rows: list[tuple[_Tail, int, int, int, bytes]]) -> bool:
        params = {
            "ids": [t.ti_id for t, *_ in rows],
            "seqs": [r[1] for r in rows],
            "firsts": [r[2] for r in rows],
            "counts": [r[3] for r in rows],
            "datas": [r[4] for r in rows],
        }
        try:
            if self._conn is None:
                self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._conn.execute(_INSERT, params)
        except Exception as exc:
            self.stats["failures"] += 1
            self.log.warning("log shipper: INSERT of %d chunks failed: %s", len(rows), exc)
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:
                    self.log.debug("closing a failed connection", exc_info=True)
                self._conn = None
            return False
        self.stats["batches"] += 1
        self.stats["chunks"] += len(rows)
        self.stats["bytes"] += sum(len(r[4]) for r in rows)
        observe.shipped((t.ti_id for t, *_ in rows), sum(len(r[4]) for r in rows))
        return True


def _size(tail: _Tail) -> int:
    try:
        return os.fstat(tail.fh.fileno()).st_size if tail.fh else os.stat(tail.path).st_size
    except OSError:
        return tail.offset
