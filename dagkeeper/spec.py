"""Workflow specs as plain data: the server's defaults (so that an unchanged definition is
recognised and ``submit()`` is a no-op), the canonical form two specs are compared in, and
reading definitions from JSON, YAML or SDK Python files."""

from __future__ import annotations

import json
import runpy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagkeeper.errors import DefinitionError

if TYPE_CHECKING:
    from dagkeeper.workflow import Workflow

# What the server fills in when a field is absent (a unit test holds these to the server's).
WORKFLOW_DEFAULTS: dict[str, Any] = {
    "description": "",
    "priority": "MEDIUM",
    "timezone": "UTC",
    "params": {},
    "execution_type": "PARALLEL",
    "timeout_s": None,
    "timeout_strategy": "FAILED",
    "alert_group": None,
    "warning_type": None,
}
TASK_DEFAULTS: dict[str, Any] = {
    "type": "SHELL",
    "description": "",
    "depends_on": [],
    "priority": "MEDIUM",
    "retries": 0,
    "retry_interval_s": 0,
    "retry_backoff": False,
    "retry_max_delay_s": None,
    "timeout_s": None,
    "timeout_strategy": "FAILED",
    "trigger_rule": "all_success",
    "task_group": None,
    "worker_group": "default",
    "params": {},
    "command": None,
}
# fields of a GET /workflows/{id} answer that are not part of the spec
READ_ONLY = frozenset(
    {"id", "version", "latest_version", "created_at", "updated_at", "version_created_at",
     "release_state", "project"}
)  # fmt: skip


def _strip(d: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if v is None or (k in defaults and v == defaults[k]):
            continue
        out[k] = v
    return out


def canonical(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec without read-only fields, absent-equals-default values and ordering that does
    not matter (task order, depends_on order), so equal definitions compare equal."""
    top = _strip({k: v for k, v in spec.items() if k not in READ_ONLY}, WORKFLOW_DEFAULTS)
    tasks = {}
    for t in spec.get("tasks") or []:
        task = dict(t)
        if isinstance(task.get("type"), str):
            task["type"] = task["type"].upper()
        if isinstance(task.get("depends_on"), list):
            task["depends_on"] = sorted(task["depends_on"])
        tasks[str(task.get("name"))] = _strip(task, TASK_DEFAULTS)
    top["tasks"] = tasks
    return top


def same_definition(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return canonical(a) == canonical(b)


def body_of(detail: Mapping[str, Any]) -> dict[str, Any]:
    """A GET answer as a spec (what PUT or POST takes)."""
    return {k: v for k, v in detail.items() if k not in READ_ONLY}


# -- files ------------------------------------------------------------------------------------


def load_file(path: str | Path) -> list[dict[str, Any] | Workflow]:
    """The definitions in a file: ``.json``/``.yaml``/``.yml`` hold one spec, a list of specs or
    ``{"workflows": [...]}``; a ``.py`` file is run and every top-level ``Workflow`` it makes
    is taken."""
    p = Path(path)
    if not p.is_file():
        raise DefinitionError(f"{p}: no such file")
    if p.suffix == ".py":
        return list(_run_python(p))
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # JSON and YAML parse errors: one line naming the file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DefinitionError(f"{p}: cannot parse: {first}") from None
    if isinstance(data, Mapping) and isinstance(data.get("workflows"), list):
        data = data["workflows"]
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(i, Mapping) for i in items):
        raise DefinitionError(f"{p}: expected a workflow spec object or a list of them")
    return [dict(i) for i in items]


def _run_python(p: Path) -> list[Workflow]:
    from dagkeeper import workflow

    before = len(workflow.DEFINED)
    runpy.run_path(str(p), run_name="__dagkeeper_apply__")
    found = [w for w in workflow.DEFINED[before:] if w.parent is None]
    if not found:
        raise DefinitionError(f"{p}: the file defines no Workflow")
    return found
