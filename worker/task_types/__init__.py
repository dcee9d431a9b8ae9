"""The worker's task-type interface (prepare, spawn, terminate/kill a process group), the worker
context plugins may read, and the lookup of a type's implementation through the one registry in
``core.task_types`` (built-in types and ``dagkeeper.task_types`` entry points)."""

from __future__ import annotations

import signal
import subprocess
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from core import task_types as registry
from core.errors import UnknownTaskType
from worker.task_types.collect import (
    MAX_LINE,
    MAX_OUTPUT_KEYS,
    MAX_OUTPUT_VALUE,
    SET_VALUE_MARK,
    OutputCollector,
    parse_set_values,
)
from worker.task_types.process import (
    IDLE_POLL_S,
    LINGER_S,
    READ_CHUNK,
    exit_code_of,
    group_alive,
    kill_process_group,
    pump_output,
    signal_group,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from core.settings import Settings

__all__ = [
    "IDLE_POLL_S",
    "LINGER_S",
    "MAX_LINE",
    "MAX_OUTPUT_KEYS",
    "MAX_OUTPUT_VALUE",
    "READ_CHUNK",
    "SET_VALUE_MARK",
    "OutputCollector",
    "TaskType",
    "UnknownTaskType",
    "WorkerContext",
    "configure",
    "current_context",
    "exit_code_of",
    "get_task_type",
    "group_alive",
    "kill_process_group",
    "parse_set_values",
    "pump_output",
    "register",
    "signal_group",
    "supported_types",
    "worker_context",
]

_registry: dict[str, type[TaskType]] = {}  # classes loaded (or registered by a decorator)
_instances: dict[str, TaskType] = {}
_registry_lock = threading.Lock()


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
    (e.g. to read a datasource). Set once per worker process by ``configure``; ``memo`` is the
    place for what a type caches for this context's life (a new ``configure`` starts it empty)."""

    settings: Settings
    engine: Engine | None = None
    memo: dict[Any, Any] = field(default_factory=dict)


_context: WorkerContext | None = None


def configure(settings: Settings, engine: Engine | None = None) -> None:
    """Called at worker start: remember the context and discover the plugin types."""
    global _context
    _context = WorkerContext(settings, engine)
    registry.load_plugins(force=True)


def worker_context() -> WorkerContext:
    if _context is None:
        raise RuntimeError("the task types were not configured with the worker's settings")
    return _context


def current_context() -> WorkerContext | None:
    return _context


def register(cls: type[TaskType]) -> type[TaskType]:
    """Class decorator: make ``cls`` the worker implementation of ``cls.name`` in this process."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no task type name")
    with _registry_lock:
        _registry[cls.name.upper()] = cls
        _instances.pop(cls.name.upper(), None)
    return cls


def forget(name: str) -> None:
    """Drop a loaded implementation (tests that installed a plugin clean up with it)."""
    with _registry_lock:
        _registry.pop(name.upper(), None)
        _instances.pop(name.upper(), None)


def _load(key: str, name: str) -> None:
    """Import the registered implementation of a worker type."""
    d = registry.get(key)
    if d is None or not d.impl:
        registry.load_plugins(force=True)  # installed since the last look?
        d = registry.get(key)
    if d is None or d.runs_on != registry.RunsOn.WORKER or not d.impl:
        raise UnknownTaskType(f"no worker plugin for task type {name!r}")
    try:
        obj = registry.load_impl(key)
    except (ImportError, AttributeError) as exc:
        raise UnknownTaskType(f"cannot load the plugin of task type {name!r}: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, TaskType)):
        raise UnknownTaskType(f"task type {key} = {d.impl} is not a TaskType class")
    with _registry_lock:
        _registry.setdefault(key, obj)


def get_task_type(name: str) -> TaskType:
    """The (shared, stateless) implementation instance for a task type name."""
    key = name.upper()
    with _registry_lock:
        inst = _instances.get(key)
        if inst is not None:
            return inst
        loaded = key in _registry
    if not loaded:
        _load(key, name)
    with _registry_lock:
        cls = _registry[key]
        return _instances.setdefault(key, cls())


def supported_types() -> frozenset[str]:
    """Every type a worker can run: the registry's worker types and any registered class."""
    with _registry_lock:
        extra = frozenset(_registry)
    return registry.types_on(registry.RunsOn.WORKER) | extra
