"""The one task-type registry: each type's name, where it runs (a worker process, a driver on the
owning master, or inline in the master's planning), its field validator and its implementation
("module:attr", imported by the worker or the master on first use). Third-party types come from
the ``dagkeeper.task_types`` entry points. Adding a built-in type: one line in ``BUILTIN`` plus its
own module."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from core import branching, dependent, fanout
from core import task_fields as f
from core.task_fields import FieldProblem, Validator

log = logging.getLogger(__name__)

# Entry-point groups: a worker TaskType class per type name, and (optionally) a spec validator.
ENTRY_POINT_GROUP = "dagkeeper.task_types"
VALIDATOR_GROUP = "dagkeeper.task_type_validators"

__all__ = ["FieldProblem", "RunsOn", "TaskTypeDef", "Validator"]


class RunsOn(StrEnum):
    WORKER = "worker"  # a worker runs it as a process group (worker/task_types/)
    MASTER = "master"  # a driver on the owning master runs it (master/logical.py)
    INLINE = "inline"  # the master's planning decides it the moment it is ready (branching)


@dataclass(frozen=True)
class TaskTypeDef:
    name: str
    runs_on: RunsOn
    validator: Validator | None = None
    # "module:attr": the worker's TaskType class (WORKER) or the master's driver (MASTER)
    impl: str | None = None


def _def(name: str, runs_on: RunsOn, validator: Validator | None, impl: str | None) -> TaskTypeDef:
    return TaskTypeDef(name, runs_on, validator, impl)


W, M, INL = RunsOn.WORKER, RunsOn.MASTER, RunsOn.INLINE
BUILTIN: dict[str, TaskTypeDef] = {
    d.name: d
    for d in (
        _def("SHELL", W, f.validate_shell, "worker.task_types.shell:ShellTask"),
        _def("PYTHON", W, f.validate_python, "worker.task_types.python:PythonTask"),
        _def("SQL", W, f.validate_sql, "worker.task_types.sql:SqlTask"),
        _def("PROCEDURE", W, f.validate_procedure, "worker.task_types.sql:ProcedureTask"),
        _def("HTTP", W, f.validate_http, "worker.task_types.http:HttpTask"),
        _def("SPARK", W, f.validate_spark, "worker.task_types.spark:SparkTask"),
        _def("SUB_PROCESS", M, f.validate_sub_process, "master.sub_process:DRIVER"),
        _def(dependent.TYPE, M, dependent.validate, "master.dependent:DRIVER"),
        _def(fanout.FANOUT, M, fanout.validate, "master.fanout:DRIVER"),
        _def(branching.CONDITIONS, INL, branching.validate_conditions, None),
        _def(branching.SWITCH, INL, branching.validate_switch, None),
    )
}

_defs: dict[str, TaskTypeDef] = dict(BUILTIN)
_plugins_loaded = False
_lock = threading.Lock()


def define(
    name: str, runs_on: RunsOn, validator: Validator | None = None, impl: str | None = None
) -> TaskTypeDef:
    """Register (or replace) a type; plugins and tests use it. Returns the definition."""
    d = TaskTypeDef(name.upper(), runs_on, validator, impl)
    with _lock:
        _defs[d.name] = d
    return d


def forget(name: str) -> None:
    """Drop a non-built-in type (tests that installed a plugin clean up with it)."""
    key = name.upper()
    with _lock:
        if key in BUILTIN:
            _defs[key] = BUILTIN[key]
        else:
            _defs.pop(key, None)


def register_validator(type_name: str, validator: Validator) -> None:
    """Make ``validator`` check the fields of every task of ``type_name`` (a later call wins); an
    unknown name becomes a worker type."""
    key = type_name.upper()
    with _lock:
        cur = _defs.get(key) or TaskTypeDef(key, RunsOn.WORKER)
        _defs[key] = TaskTypeDef(key, cur.runs_on, validator, cur.impl)


def load_plugins(force: bool = False) -> frozenset[str]:
    """Discover third-party types (once per process unless ``force``): every entry point in
    ``dagkeeper.task_types`` becomes a worker type whose implementation is the entry point's
    target, and ``dagkeeper.task_type_validators`` entries register validators. Built-in names
    cannot be taken over. Returns the plugin type names."""
    global _plugins_loaded
    with _lock:
        if _plugins_loaded and not force:
            return frozenset(k for k, d in _defs.items() if k not in BUILTIN and d.impl)
        _plugins_loaded = True
        names: set[str] = set()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            key = ep.name.upper()
            if key in BUILTIN:
                continue
            cur = _defs.get(key)
            _defs[key] = TaskTypeDef(key, RunsOn.WORKER, cur.validator if cur else None, ep.value)
            names.add(key)
        validator_eps = list(entry_points(group=VALIDATOR_GROUP))
    for ep in validator_eps:
        try:
            fn = ep.load()
        except Exception:
            log.exception("task types: cannot load the validator %s = %s", ep.name, ep.value)
            continue
        if callable(fn):
            register_validator(ep.name, fn)
    if names:
        log.info("task types: plugins %s", ", ".join(sorted(names)))
    return frozenset(names)


def get(type_name: str) -> TaskTypeDef | None:
    load_plugins()
    with _lock:
        return _defs.get(type_name.upper())


def known_types() -> frozenset[str]:
    load_plugins()
    with _lock:
        return frozenset(_defs)


def types_on(runs_on: RunsOn) -> frozenset[str]:
    """Every known type that runs on ``runs_on``."""
    load_plugins()
    with _lock:
        return frozenset(k for k, d in _defs.items() if d.runs_on == runs_on)


def runs_on(type_name: str) -> RunsOn:
    """Where a type runs; an unknown type is a worker's (the worker fails it with the reason)."""
    d = get(type_name)
    return d.runs_on if d is not None else RunsOn.WORKER


def is_logical(type_name: str) -> bool:
    """Run by the master (a driver or inline), never queued for a worker."""
    return runs_on(type_name) != RunsOn.WORKER


def master_run_types() -> list[str]:
    """Types whose RUNNING attempts no worker holds (worker failover and the doctor skip them)."""
    return sorted(types_on(RunsOn.MASTER) | types_on(RunsOn.INLINE))


def load_impl(type_name: str) -> Any:
    """Import a type's implementation ("module:attr"); LookupError when it has none, ImportError
    or AttributeError when it cannot be loaded."""
    d = get(type_name)
    if d is None or not d.impl:
        raise LookupError(f"task type {type_name!r} has no implementation registered")
    module, _, attr = d.impl.partition(":")
    obj: Any = import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def validate_task(name: str, type_name: str, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Problems of one task's type-specific fields, each naming the task and the field."""
    d = get(type_name)
    if d is None:
        known = known_types()
        return [
            {
                "code": "unknown_type",
                "message": f"task '{name}': unsupported task type {type_name!r}"
                f" (supported: {', '.join(sorted(known))})",
                "tasks": [name],
            }
        ]
    if d.validator is None:
        return []
    try:
        found = list(d.validator(fields))
    except Exception as exc:  # a broken plugin validator must not become a 500
        log.exception("task types: validator of %s failed on task %r", d.name, name)
        found = [("task", f"the {d.name} validator failed: {type(exc).__name__}")]
    return [
        {
            "code": "missing_field" if msg == "is required" else "field",
            "message": f"task '{name}': {field}: {msg}",
            "tasks": [name],
            "field": field,
        }
        for field, msg in found
    ]
