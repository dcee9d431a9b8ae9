"""The task-type plugin interface (prepare, spawn, terminate/kill a process group), the registry of
types (built-in and ``dagkeeper.task_types`` entry points), the worker context plugins may read,
and the output protocol every type shares: ``${setValue(key=value)}`` lines in the output."""

from __future__ import annotations

import importlib
import math
import os
import re
import select
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from core.task_types import ENTRY_POINT_GROUP

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from core.settings import Settings

# Built-in types, imported on first use: type name -> "module:Class".
_BUILTIN: dict[str, str] = {
    "SHELL": "worker.task_types.shell:ShellTask",
    "PYTHON": "worker.task_types.python:PythonTask",
    "HTTP": "worker.task_types.http:HttpTask",
    "SQL": "worker.task_types.sql:SqlTask",
    "PROCEDURE": "worker.task_types.sql:ProcedureTask",
    "SPARK": "worker.task_types.spark:SparkTask",
}
_registry: dict[str, type[TaskType]] = {}
_instances: dict[str, TaskType] = {}
_registry_lock = threading.Lock()
_plugins: dict[str, str] = {}  # entry-point type name -> "module:attr", loaded on first use
_discovered = False

SET_VALUE_MARK = b"${setValue("
_SET_VALUE_RE = re.compile(r"\$\{setValue\(\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*=(.*?)\)\}")
MAX_OUTPUT_KEYS = 1000
MAX_OUTPUT_VALUE = 65536
MAX_LINE = 1 << 20  # a longer line without a newline is written out in pieces
READ_CHUNK = 65536
IDLE_POLL_S = 0.5  # the pump's tick while a task is silent (timeouts, kill escalation)
LINGER_S = 0.5  # after the leader exits, how long descendants may keep the output pipe open


class UnknownTaskType(LookupError):
    """No plugin is registered for a task type."""


class TaskType(ABC):
    """One kind of task a worker runs as a local process in its own process group.

    ``prepare`` turns the attempt's resolved spec into an argv (it may write files into
    ``workdir`` and add variables to ``env``); ``spawn`` starts it with stdout+stderr on one pipe;
    ``terminate``/``kill`` signal the whole process group. Plugins usually override only
    ``prepare``."""

    name: ClassVar[str] = ""

    @abstractmethod
    def prepare(self, spec: Mapping[str, Any], env: dict[str, str], workdir: Path) -> list[str]:
        """Return the argv of the attempt; raise ValueError when the spec cannot run."""

    def spawn(self, argv: list[str], env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session and process group: killpg reaches all
            close_fds=True,
        )

    def terminate(self, proc: subprocess.Popen[bytes]) -> bool:
        """Ask the attempt to stop (SIGTERM to its process group)."""
        return signal_group(proc.pid, signal.SIGTERM)

    def kill(self, proc: subprocess.Popen[bytes]) -> bool:
        """Stop it for sure (SIGKILL to its process group)."""
        return signal_group(proc.pid, signal.SIGKILL)

    def output_collector(self) -> OutputCollector:
        """What reads the attempt's output for its outputs (a type may record more, e.g. SPARK
        its application id)."""
        return OutputCollector()


@dataclass(frozen=True)
class WorkerContext:
    """What a type may need beyond its spec: the worker's settings and its PostgreSQL engine
    (e.g. to read a datasource). Set once per worker process by ``configure``."""

    settings: Settings
    engine: Engine | None = None


_context: WorkerContext | None = None


def configure(settings: Settings, engine: Engine | None = None) -> None:
    """Called at worker start: remember the context and discover the plugin types."""
    global _context
    _context = WorkerContext(settings, engine)
    discover(force=True)


def worker_context() -> WorkerContext:
    if _context is None:
        raise RuntimeError("the task types were not configured with the worker's settings")
    return _context


def current_context() -> WorkerContext | None:
    return _context


def discover(force: bool = False) -> frozenset[str]:
    """Find the ``dagkeeper.task_types`` entry points (type name -> TaskType class); they are
    imported on first use. Built-in names cannot be taken over by a plugin."""
    global _discovered
    with _registry_lock:
        if _discovered and not force:
            return frozenset(_plugins)
        _discovered = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            key = ep.name.upper()
            if key in _BUILTIN:
                continue
            _plugins[key] = ep.value
        return frozenset(_plugins)


def _load_plugin(key: str) -> None:
    target = _plugins[key]
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, TaskType)):
        raise UnknownTaskType(f"entry point {key} = {target} is not a TaskType class")
    with _registry_lock:
        if key not in _registry:
            _registry[key] = obj
            _instances.pop(key, None)


def register(cls: type[TaskType]) -> type[TaskType]:
    """Class decorator: make ``cls`` the plugin for ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no task type name")
    with _registry_lock:
        _registry[cls.name.upper()] = cls
        _instances.pop(cls.name.upper(), None)
    return cls


def get_task_type(name: str) -> TaskType:
    """The (shared, stateless) plugin instance for a task type name."""
    key = name.upper()
    with _registry_lock:
        inst = _instances.get(key)
        if inst is not None:
            return inst
    if key not in _registry and key in _BUILTIN:
        module, _, _attr = _BUILTIN[key].partition(":")
        importlib.import_module(module)  # registers itself
    if key not in _registry and key not in _BUILTIN:
        if key not in discover():
            discover(force=True)  # installed since the last look?
        if key in _plugins:
            try:
                _load_plugin(key)
            except (ImportError, AttributeError) as exc:
                raise UnknownTaskType(
                    f"cannot load the plugin of task type {name!r}: {exc}"
                ) from exc
    with _registry_lock:
        cls = _registry.get(key)
        if cls is None:
            raise UnknownTaskType(f"no worker plugin for task type {name!r}")
        inst = _instances.setdefault(key, cls())
    return inst


def supported_types() -> frozenset[str]:
    return frozenset(_BUILTIN) | frozenset(_registry) | discover()


# process groups


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


# output protocol


def parse_set_values(line: str) -> dict[str, str]:
    """Every ``${setValue(key=value)}`` on one line; a later key wins."""
    return {m.group(1): m.group(2).strip() for m in _SET_VALUE_RE.finditer(line)}


class OutputCollector:
    """Splits a byte stream into lines and collects the ``setValue`` outputs among them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.dropped = 0
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """Take a chunk; return the complete lines in it (to write to the log)."""
        data = self._tail + chunk
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        complete = data[:cut]
        if len(self._tail) > MAX_LINE:
            complete, self._tail = data, b""
        if SET_VALUE_MARK in complete:
            for line in complete.split(b"\n"):
                if SET_VALUE_MARK in line:
                    self._collect(line)
        return complete

    def flush(self) -> bytes:
        """At end of stream: the last line if it had no newline."""
        tail, self._tail = self._tail, b""
        if SET_VALUE_MARK in tail:
            self._collect(tail)
        return tail

    def _collect(self, line: bytes) -> None:
        for key, value in parse_set_values(line.decode("utf-8", "replace")).items():
            if len(value) > MAX_OUTPUT_VALUE or (
                key not in self.values and len(self.values) >= MAX_OUTPUT_KEYS
            ):
                self.dropped += 1
                continue
            self.values[key] = value
