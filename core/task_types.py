"""Which task types exist and how each one's type-specific fields are checked: a registry of pure
spec validators (built-in executed types, logical types run by the master, and third-party types
found through the ``dagkeeper.task_types`` entry points). Imports nothing from worker/ or master/."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from core import dependent, fanout

log = logging.getLogger(__name__)

# Entry-point groups: a worker TaskType class per type name, and (optionally) a spec validator.
ENTRY_POINT_GROUP = "dagkeeper.task_types"
VALIDATOR_GROUP = "dagkeeper.task_type_validators"

EXECUTED_TYPES = frozenset({"SHELL", "PYTHON", "SQL", "PROCEDURE", "HTTP", "SPARK"})
# Run by the master, never queued for a worker; their validators are registered by their owners.
LOGICAL_TYPES = frozenset({"SUB_PROCESS", "DEPENDENT", "CONDITIONS", "SWITCH", "FANOUT"})

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
PARAM_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
CODE_RE = re.compile(r"^[1-5](\d\d|xx)$")
DEPLOY_MODES = frozenset({"client", "cluster"})

# A validator gets the task's fields (common and type-specific) and returns (field, problem) pairs.
FieldProblem = tuple[str, str]
Validator = Callable[[Mapping[str, Any]], Iterable[FieldProblem]]

_validators: dict[str, Validator] = {}
_plugin_types: set[str] = set()
_plugins_loaded = False
_lock = threading.Lock()


@dataclass(frozen=True)
class Field:
    """One type-specific field: its name, expected kind and whether it must be present."""

    name: str
    kind: str  # text, str, int, number, bool, str_list, str_map, map, json
    required: bool = False


def check_fields(task: Mapping[str, Any], fields: Iterable[Field]) -> list[FieldProblem]:
    """Presence and JSON kind of each field (None counts as absent)."""
    out: list[FieldProblem] = []
    for f in fields:
        v = task.get(f.name)
        if v is None:
            if f.required:
                out.append((f.name, "is required"))
            continue
        problem = _kind_problem(f.kind, v)
        if problem:
            out.append((f.name, problem))
    return out


def _kind_problem(kind: str, v: Any) -> str | None:
    if kind == "text":
        return None if isinstance(v, str) and v.strip() else "must be a non-empty string"
    if kind == "str":
        return None if isinstance(v, str) else "must be a string"
    if kind == "bool":
        return None if isinstance(v, bool) else "must be true or false"
    if kind == "int":
        ok = isinstance(v, int) and not isinstance(v, bool) and v > 0
        return None if ok else "must be a positive integer"
    if kind == "number":
        ok = isinstance(v, int | float) and not isinstance(v, bool) and v > 0
        return None if ok else "must be a positive number"
    if kind == "str_list":
        ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
        return None if ok else "must be a list of strings"
    if kind == "str_map":
        ok = isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
        return None if ok else "must be an object of strings"
    if kind == "map":
        return None if isinstance(v, dict) else "must be an object"
    return None  # json: anything


# built-in validators


def _shell(t: Mapping[str, Any]) -> list[FieldProblem]:
    return check_fields(t, [Field("command", "text", True)])


def _python(t: Mapping[str, Any]) -> list[FieldProblem]:
    return check_fields(t, [Field("script", "text", True), Field("interpreter", "text")])


def _datasource_fields(t: Mapping[str, Any]) -> list[FieldProblem]:
    return check_fields(t, [Field("datasource", "text", True)])


def _sql(t: Mapping[str, Any]) -> list[FieldProblem]:
    out = _datasource_fields(t) + check_fields(
        t,
        [
            Field("sql", "text", True),
            Field("pre_statements", "str_list"),
            Field("post_statements", "str_list"),
            Field("query", "bool"),
            Field("max_rows", "int"),
            Field("output_first_row", "bool"),
        ],
    )
    return out


def _procedure(t: Mapping[str, Any]) -> list[FieldProblem]:
    out = _datasource_fields(t) + check_fields(
        t, [Field("procedure", "text", True), Field("in_params", "map")]
    )
    proc = t.get("procedure")
    if isinstance(proc, str) and proc.strip() and not IDENT_RE.match(proc):
        out.append(("procedure", "must be a name or schema.name (letters, digits, _ and $)"))
    names = list(t.get("in_params") or {}) if isinstance(t.get("in_params"), dict) else []
    outs = t.get("out_params")
    if outs is not None:
        if isinstance(outs, list) and all(isinstance(x, str) for x in outs):
            names += outs
        elif isinstance(outs, dict) and all(isinstance(x, str) for x in outs.values()):
            names += list(outs)
            for n, typ in outs.items():
                if not re.match(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\d+(,\s*\d+)?\))?$", typ):
                    out.append((f"out_params.{n}", f"unsupported SQL type {typ!r}"))
        else:
            out.append(("out_params", "must be a list of names or an object name -> SQL type"))
    for n in names:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", n):
            out.append(("in_params/out_params", f"invalid parameter name {n!r}"))
    return out


def _http(t: Mapping[str, Any]) -> list[FieldProblem]:
    out = check_fields(
        t,
        [
            Field("url", "text", True),
            Field("method", "str"),
            Field("headers", "str_map"),
            Field("body", "json"),
            Field("timeout", "number"),
            Field("expect_body_contains", "str"),
            Field("follow_redirects", "bool"),
        ],
    )
    url = t.get("url")
    if isinstance(url, str) and not re.match(r"^(https?://|\$\{)", url):
        out.append(("url", "must start with http:// or https://"))
    method = t.get("method")
    if isinstance(method, str) and method.upper() not in HTTP_METHODS:
        out.append(("method", f"must be one of {', '.join(sorted(HTTP_METHODS))}"))
    codes = t.get("success_codes")
    if codes is not None and not (
        isinstance(codes, list)
        and codes
        and all(
            (isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599)
            or (isinstance(c, str) and CODE_RE.match(c))
            for c in codes
        )
    ):
        out.append(("success_codes", "must be a non-empty list of status codes (200) or classes"))
    return out


def _spark(t: Mapping[str, Any]) -> list[FieldProblem]:
    out = check_fields(
        t,
        [
            Field("app", "text", True),
            Field("main_class", "text"),
            Field("master", "text"),
            Field("deploy_mode", "str"),
            Field("args", "str_list"),
            Field("conf", "str_map"),
            Field("app_name", "text"),
            Field("driver_memory", "text"),
            Field("executor_memory", "text"),
            Field("driver_cores", "int"),
            Field("executor_cores", "int"),
            Field("num_executors", "int"),
            Field("py_files", "str_list"),
            Field("jars", "str_list"),
            Field("files", "str_list"),
            Field("spark_submit", "text"),
        ],
    )
    if isinstance(t.get("deploy_mode"), str) and t["deploy_mode"] not in DEPLOY_MODES:
        out.append(("deploy_mode", "must be client or cluster"))
    app = t.get("app")
    if isinstance(app, str) and app.endswith(".jar") and t.get("main_class") is None:
        out.append(("main_class", "is required for a jar application"))
    return out


def _sub_process(t: Mapping[str, Any]) -> list[FieldProblem]:
    """SUB_PROCESS (run by the master, master/sub_process.py): the child workflow's id."""
    return check_fields(t, [Field("workflow_id", "int", True)])


_BUILTIN_VALIDATORS: dict[str, Validator] = {
    "SUB_PROCESS": _sub_process,
    "SHELL": _shell,
    "PYTHON": _python,
    "SQL": _sql,
    "PROCEDURE": _procedure,
    "HTTP": _http,
    "SPARK": _spark,
    dependent.TYPE: dependent.validate,  # logical: run by the master (master/dependent.py)
    fanout.FANOUT: fanout.validate,  # logical: one sub-execution per target (master/fanout.py)
}


# the registry


def register_validator(type_name: str, validator: Validator) -> None:
    """Make ``validator`` check the fields of every task of ``type_name`` (a later call wins)."""
    with _lock:
        _validators[type_name.upper()] = validator


def load_plugins(force: bool = False) -> frozenset[str]:
    """Discover third-party types (once per process unless ``force``): every entry point name in
    ``dagkeeper.task_types`` becomes a known type, and ``dagkeeper.task_type_validators``
    entries register their validators. Returns the plugin type names."""
    global _plugins_loaded
    with _lock:
        if _plugins_loaded and not force:
            return frozenset(_plugin_types)
        _plugins_loaded = True
        names = {ep.name.upper() for ep in entry_points(group=ENTRY_POINT_GROUP)}
        _plugin_types.update(names)
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


def known_types() -> frozenset[str]:
    load_plugins()
    with _lock:
        return EXECUTED_TYPES | LOGICAL_TYPES | frozenset(_plugin_types) | frozenset(_validators)


def is_logical(type_name: str) -> bool:
    return type_name.upper() in LOGICAL_TYPES


def validate_task(name: str, type_name: str, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Problems of one task's type-specific fields, each naming the task and the field."""
    key = type_name.upper()
    known = known_types()
    if key not in known:
        return [
            {
                "code": "unknown_type",
                "message": f"task '{name}': unsupported task type {type_name!r}"
                f" (supported: {', '.join(sorted(known))})",
                "tasks": [name],
            }
        ]
    with _lock:
        fn = _validators.get(key) or _BUILTIN_VALIDATORS.get(key)
    if fn is None:
        return []
    try:
        found = list(fn(fields))
    except Exception as exc:  # a broken plugin validator must not become a 500
        log.exception("task types: validator of %s failed on task %r", key, name)
        found = [("task", f"the {key} validator failed: {type(exc).__name__}")]
    return [
        {
            "code": "missing_field" if msg == "is required" else "field",
            "message": f"task '{name}': {field}: {msg}",
            "tasks": [name],
            "field": field,
        }
        for field, msg in found
    ]
