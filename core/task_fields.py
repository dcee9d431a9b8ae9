"""Type-specific field checks: the ``Field`` kinds, ``check_fields`` and the validators of the
built-in types (pure; the registry in ``core.task_types`` maps each type to its validator)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
PARAM_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
CODE_RE = re.compile(r"^[1-5](\d\d|xx)$")
DEPLOY_MODES = frozenset({"client", "cluster"})

# A validator gets the task's fields (common and type-specific) and returns (field, problem) pairs.
FieldProblem = tuple[str, str]
Validator = Callable[[Mapping[str, Any]], Iterable[FieldProblem]]


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


def validate_shell(t: Mapping[str, Any]) -> list[FieldProblem]:
    return check_fields(t, [Field("command", "text", True)])


def validate_python(t: Mapping[str, Any]) -> list[FieldProblem]:
    return check_fields(t, [Field("script", "text", True), Field("interpreter", "text")])


def _datasource_fields(t: Mapping[str, Any]) -> list[FieldProblem]:
    return check_fields(t, [Field("datasource", "text", True)])


def validate_sql(t: Mapping[str, Any]) -> list[FieldProblem]:
    out = _datasource_fields(t) + check_fields(
        t,
        [
            Field("sql", "text", True),
            Field("pre_statements", "str_list"),
            Field("post_statements", "str_list"),
            Field("query", "bool"),
            Field("max_rows", "int"),
            Field("output_first_row", "bool"),
            # the seed's send_email: the first display_rows result rows mailed as a table
            Field("send_email", "bool"),
            Field("display_rows", "int"),
            Field("email_title", "text"),
            Field("alert_group", "text"),
        ],
    )
    return out


def validate_procedure(t: Mapping[str, Any]) -> list[FieldProblem]:
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


def validate_http(t: Mapping[str, Any]) -> list[FieldProblem]:
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


def validate_spark(t: Mapping[str, Any]) -> list[FieldProblem]:
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


def validate_sub_process(t: Mapping[str, Any]) -> list[FieldProblem]:
    """SUB_PROCESS (run by the master, master/sub_process.py): the child workflow's id."""
    return check_fields(t, [Field("workflow_id", "int", True)])


# The type-specific fields of each built-in type: a task field outside the common ones and its
# type's is refused (with a suggestion) when a workflow is written. Plugin types declare none,
# so their fields are theirs to check.
TYPE_FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(fields.split())
    for name, fields in {
        "SHELL": "command run_as",
        "PYTHON": "script interpreter",
        "SQL": "datasource sql pre_statements post_statements query max_rows output_first_row"
        " send_email display_rows email_title alert_group",
        "PROCEDURE": "datasource procedure in_params out_params arg_order",
        "HTTP": "url method headers body timeout success_codes expect_body_contains"
        " follow_redirects",
        "SPARK": "app main_class master deploy_mode args conf app_name driver_memory"
        " executor_memory driver_cores executor_cores num_executors queue py_files jars files"
        " spark_submit",
        "SUB_PROCESS": "workflow_id",
        "DEPENDENT": "dependencies check_interval_s dependence_timeout_s",
        "FANOUT": "command script targets target_params per_target_timeout_s fail_fast",
        "CONDITIONS": "on_success on_failure",
        "SWITCH": "cases default",
    }.items()
}
# Type-specific fields that name a duration in seconds (bounded like the common timeouts)
DURATION_FIELDS = frozenset(
    {"timeout", "per_target_timeout_s", "check_interval_s", "dependence_timeout_s"}
)
# Types whose ``datasource`` names a row of /datasources
DATASOURCE_TYPES = frozenset({"SQL", "PROCEDURE"})
