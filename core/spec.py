"""The workflow spec (what a user submits): parsing, defaults and full validation with messages
that name the offending tasks and fields. Shared by the API (on write, ``strict``: unknown task
fields refused too) and the master (on run). Value rules come from ``core.validation``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, WithJsonSchema, field_validator

from core import branching, dag, states, task_types
from core.errors import ValidationError
from core.states import ExecutionType
from core.task_fields import DURATION_FIELDS, TYPE_FIELDS
from core.validation import (
    GROUP_PATTERN,
    MAX_SECONDS,
    Name,
    ParamMap,
    PriorityName,
    Seconds,
    oversized_params,
    unknown_field_message,
)

# the execution type's JSON schema stays an inline string enum (as the API documented it)
_INLINE_ENUM = WithJsonSchema(
    {"enum": [e.value for e in ExecutionType], "title": "Execution Type", "type": "string"}
)


class TaskSpec(BaseModel):
    """Common fields of every task; type-specific fields sit beside them."""

    model_config = ConfigDict(extra="allow")

    name: Name
    type: str = Field(default="SHELL", max_length=100)
    description: str = ""
    depends_on: list[str] = []
    priority: PriorityName = "MEDIUM"
    retries: int = Field(default=0, ge=0, le=100)
    retry_interval_s: Seconds = Field(default=0, ge=0)
    # exponential backoff: the n-th retry waits retry_interval_s * 2**(n-1), at most retry_max_delay_s
    retry_backoff: bool = False
    retry_max_delay_s: Seconds | None = Field(default=None, gt=0)
    timeout_s: Seconds | None = Field(default=None, gt=0)
    timeout_strategy: Literal["FAILED", "WARN", "WARN_FAILED"] = "FAILED"
    trigger_rule: Literal[
        "all_success", "all_done", "all_failed", "one_success", "one_failed", "none_failed"
    ] = "all_success"
    task_group: str | None = Field(default=None, pattern=GROUP_PATTERN)
    worker_group: str = Field(default="default", pattern=GROUP_PATTERN)
    params: ParamMap = {}
    command: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _upper_type(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str = ""
    priority: PriorityName = "MEDIUM"
    timezone: str = Field(default="UTC", max_length=64)
    params: ParamMap = {}
    # how a new run treats running ones: run beside them, wait, be discarded, or wait by priority
    execution_type: Annotated[ExecutionType, _INLINE_ENUM] = ExecutionType.PARALLEL
    timeout_s: Seconds | None = Field(default=None, gt=0)
    timeout_strategy: Literal["FAILED", "WARN", "WARN_FAILED"] = "FAILED"
    # alerts (master/alerting.py): the group mailed at a run's end, and for which ends (default:
    # FAILURE when a group is named); timeouts of its tasks go to the same group
    alert_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")
    warning_type: states.WarningType | None = None
    tasks: list[TaskSpec]

    @field_validator("execution_type", "timeout_strategy", "warning_type", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    _by_name: dict[str, TaskSpec] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._by_name = {t.name: t for t in self.tasks}

    def tasks_by_name(self) -> dict[str, TaskSpec]:
        """The name -> task map (one private-attribute read; hot loops keep it in a local)."""
        return self._by_name

    def task(self, name: str) -> TaskSpec:
        """The task named ``name`` (a dict lookup: decisions call this per task per step)."""
        return self._by_name[name]

    def to_dag(self) -> dag.Dag:
        return dag.Dag.build({t.name: t.depends_on for t in self.tasks})


def _pydantic_problems(exc: pydantic.ValidationError, raw: Any) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        tasks: list[str] = []
        if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
            try:
                name = raw["tasks"][loc[1]].get("name")
            except (KeyError, IndexError, TypeError, AttributeError):
                name = None
            label = f"task '{name}'" if name else f"task #{loc[1] + 1}"
            if name:
                tasks.append(str(name))
            field = ".".join(str(p) for p in loc[2:]) or "task"
            msg = f"{label}: {field}: {_message(err, TaskSpec)}"
        else:
            msg = f"{'.'.join(str(p) for p in loc) or 'spec'}: {_message(err, WorkflowSpec)}"
        out.append({"code": "field", "message": msg, "tasks": tasks, "field": loc})
    return out


def _message(err: Any, model: type[BaseModel]) -> str:
    if err.get("type") == "extra_forbidden" and err.get("loc"):
        return unknown_field_message(str(err["loc"][-1]), model.model_fields)
    return str(err["msg"]).removeprefix("Value error, ")


def _field_problems(spec: WorkflowSpec, strict: bool) -> list[dict[str, Any]]:
    """Durations inside type-specific fields, and (``strict``) fields no task of its type has."""
    out: list[dict[str, Any]] = []
    for i, t in enumerate(spec.tasks):
        extra = t.model_extra or {}
        for key in sorted(DURATION_FIELDS & set(extra)):
            v = extra[key]
            if isinstance(v, int | float) and not isinstance(v, bool) and v > MAX_SECONDS:
                out.append(_task_problem(t.name, i, key, f"must be at most {MAX_SECONDS} seconds"))
        known = TYPE_FIELDS.get(t.type)
        if not strict or known is None:
            continue
        allowed = set(TaskSpec.model_fields) | known
        for key in sorted(set(extra) - allowed):
            out.append(_task_problem(t.name, i, key, unknown_field_message(key, allowed)))
    return out


def _task_problem(task: str, index: int, field: str, message: str) -> dict[str, Any]:
    return {
        "code": "field",
        "message": f"task '{task}': {field}: {message}",
        "tasks": [task],
        "field": ["tasks", index, field],
    }


def _param_size_problems(spec: WorkflowSpec, limit: int) -> list[dict[str, Any]]:
    out = [
        {
            "code": "too_long",
            "field": ["params", k],
            "tasks": [],
            "message": f"params.{k}: the value is longer than {limit} bytes",
        }
        for k in oversized_params(spec.params, limit)
    ]
    for i, t in enumerate(spec.tasks):
        for k in oversized_params(t.params, limit):
            out.append(_task_problem(t.name, i, f"params.{k}", f"longer than {limit} bytes"))
    return out


def parse_workflow_spec(
    raw: Any, *, strict: bool = False, max_param_bytes: int | None = None
) -> WorkflowSpec:
    """Parse and fully validate a workflow spec; raise ValidationError naming every problem.
    ``strict`` (the API, on write) also refuses task fields that no task of its type has, and
    ``max_param_bytes`` a parameter value longer than that."""
    if not isinstance(raw, dict):
        raise ValidationError("a workflow spec must be a JSON object")
    try:
        spec = WorkflowSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        found = _pydantic_problems(exc, raw)
        raise ValidationError("; ".join(p["message"] for p in found), found) from None
    problems: list[dict[str, Any]] = [
        p.as_dict() for p in dag.validate([(t.name, t.depends_on) for t in spec.tasks])
    ]
    problems.extend(_field_problems(spec, strict))
    if max_param_bytes is not None:
        problems.extend(_param_size_problems(spec, max_param_bytes))
    for t in spec.tasks:
        problems.extend(task_types.validate_task(t.name, t.type, t.model_dump()))
    if not problems:
        downstream = spec.to_dag().downstream
        problems.extend(branching.check_branches([t.model_dump() for t in spec.tasks], downstream))
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(spec.timezone)
    except (ValueError, KeyError, OSError):
        problems.append(
            {"code": "timezone", "message": f"unknown time zone {spec.timezone!r}", "tasks": []}
        )
    if problems:
        raise ValidationError("; ".join(str(p["message"]) for p in problems), problems)
    return spec
