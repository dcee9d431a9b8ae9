"""Pydantic request and response models of the REST API (instances and attempts: schemas_instances)
and their construction from DB rows. Times are ISO 8601 in UTC with an explicit offset; states and
priorities are upper-case names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from core import cron
from core.errors import ValidationError
from core.states import Priority
from core.validation import GROUP_PATTERN, Moment, ParamMap, PriorityName, oversized_params
from db.models import WorkflowDefinition, WorkflowVersion


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


Timestamp = Annotated[datetime, PlainSerializer(_iso, return_type=str, when_used="json")]


MAX_ID = 2**63 - 1
# path and query parameters shared by the routers
DbId = Annotated[int, Path(ge=1, le=MAX_ID, description="a database id")]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="rows to skip")]


def priority_name(value: int | str | None) -> str:
    if value is None:
        return Priority.MEDIUM.name
    try:
        return Priority.parse(value).name
    except (KeyError, ValueError):
        return str(value)


def _upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else v


# -- errors -------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 422)
}


# -- workflows ----------------------------------------------------------------------------------


class WorkflowSummary(BaseModel):
    id: int
    name: str
    project: str = "default"
    description: str
    version: int
    release_state: str = "ONLINE"
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def from_row(cls, d: WorkflowDefinition) -> WorkflowSummary:
        return cls(
            id=d.id,
            name=d.name,
            project=d.project,
            release_state=d.release_state,
            description=d.description,
            version=d.latest_version,
            created_at=d.created_at,
            updated_at=d.updated_at,
        )


class WorkflowDetail(BaseModel):
    """One version's spec beside the workflow's id and version numbers; PUT accepts it back."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    project: str = "default"
    version: int
    latest_version: int
    description: str = ""
    priority: str = "MEDIUM"
    timezone: str = "UTC"
    params: dict[str, str] = {}
    tasks: list[dict[str, Any]] = []
    version_created_at: Timestamp
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def from_rows(cls, d: WorkflowDefinition, v: WorkflowVersion) -> WorkflowDetail:
        spec = dict(v.spec)
        return cls(
            **spec,
            id=d.id,
            project=d.project,
            version=v.version,
            latest_version=d.latest_version,
            version_created_at=v.created_at,
            created_at=d.created_at,
            updated_at=d.updated_at,
        )


class VersionSummary(BaseModel):
    workflow_id: int
    version: int
    name: str
    description: str
    tasks: int
    created_at: Timestamp

    @classmethod
    def from_row(cls, v: WorkflowVersion) -> VersionSummary:
        return cls(
            workflow_id=v.workflow_id,
            version=v.version,
            name=str(v.spec.get("name", "")),
            description=str(v.spec.get("description", "")),
            tasks=len(v.spec.get("tasks", [])),
            created_at=v.created_at,
        )


class WorkflowPage(BaseModel):
    items: list[WorkflowSummary]
    total: int


class VersionPage(BaseModel):
    items: list[VersionSummary]
    total: int


# -- runs ---------------------------------------------------------------------------------------


def _scheduled(value: datetime, prefix: str = "") -> None:
    """A date a run is scheduled for: inside the range cron searches (1970 .. 9998)."""
    utc = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not cron.EARLIEST <= utc <= cron.LATEST:
        raise ValueError(
            f"{prefix}{value.isoformat()} is outside 1970-01-01 .. {cron.LAST_YEAR}-01-01"
        )


class BackfillRequest(BaseModel):
    """Dates by ``start``/``end`` (the schedule's fire times in the range) or by ``dates``,
    never both; each date an ISO 8601 date-time within 1970 .. 9998, none twice."""

    model_config = ConfigDict(extra="forbid")

    start: Moment | None = None
    end: Moment | None = None
    dates: list[Moment] | None = Field(default=None, max_length=10000)
    mode: Literal["SERIAL", "PARALLEL"] = "SERIAL"
    parallelism: int = Field(default=1, ge=1, le=1000)
    order: Literal["ASC", "DESC"] = "ASC"

    _upper_mode = field_validator("mode", "order", mode="before")(_upper)

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, v: datetime | None) -> datetime | None:
        if v is not None:
            _scheduled(v)
        return v

    @field_validator("dates")
    @classmethod
    def _distinct_dates(cls, v: list[datetime] | None) -> list[datetime] | None:
        if v is None:
            return v
        seen: dict[datetime, int] = {}
        for i, d in enumerate(v):
            _scheduled(d, f"dates[{i}]: ")
            key = d.astimezone(UTC) if d.tzinfo is not None else d
            if key in seen:
                raise ValueError(
                    f"dates[{i}] ({d.isoformat()}) is the same time as dates[{seen[key]}];"
                    " give each date once"
                )
            seen[key] = i
        return v

    @model_validator(mode="after")
    def _one_way(self) -> BackfillRequest:
        if self.dates is not None and (self.start is not None or self.end is not None):
            raise ValueError("give either dates or start and end, not both")
        return self


class RunRequest(BaseModel):
    """Body of POST /workflows/{id}/runs; every field is optional, unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    # the one parameter rule (core.validation.param_map): strings, numbers, booleans, as text
    params: ParamMap = {}
    priority: PriorityName | None = None
    worker_group: str | None = Field(default=None, pattern=GROUP_PATTERN)
    failure_strategy: Literal["CONTINUE", "END"] | None = None
    start_nodes: list[str] | None = None
    depend_mode: Literal["TASK_ONLY", "TASK_PRE", "TASK_POST"] | None = None
    dry_run: bool = False
    backfill: BackfillRequest | None = None

    _upper_enums = field_validator("failure_strategy", "depend_mode", mode="before")(_upper)

    def string_params(self) -> dict[str, str]:
        return dict(self.params)

    def run_options(self) -> dict[str, Any]:
        """Everything but params and priority, as stored in workflow_instance.run_options."""
        return self.model_dump(mode="json", exclude={"params", "priority"}, exclude_none=True)


class RunAccepted(BaseModel):
    instance_id: int


def check_run_params(req: RunRequest, limit: int) -> None:
    """422 naming the run parameters whose value is longer than ``limit`` bytes."""
    names = oversized_params(req.params, limit)
    if names:
        found = [
            {
                "loc": ["body", "params", n],
                "message": f"longer than {limit} bytes",
                "type": "too_long",
            }
            for n in names
        ]
        raise ValidationError(
            "; ".join(f"params.{n}: the value is longer than {limit} bytes" for n in names), found
        )


# -- cluster and probes -------------------------------------------------------------------------


class Member(BaseModel):
    id: str
    epoch: int
    host: str | None = None
    pid: int | None = None
    groups: list[str] = []
    capacity: int | None = None
    load: int | None = None
    start_time: Any = None
    data: dict[str, Any] = {}


class ClusterOut(BaseModel):
    masters: list[Member]
    workers: list[Member]
    queues: dict[str, int]
    leases: int
    cron_leader: str | None
    # group -> {code, message}: why a group's queued attempts are not taken (core/waiting.py)
    waiting: dict[str, dict[str, str]] = {}


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, str]


# -- task groups ----------------------------------------------------------------------------------------------------------------------------------------


class TaskGroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=GROUP_PATTERN)
    capacity: int = Field(ge=1, le=100000)
    description: str = ""
    project: str = Field(default="default", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


class TaskGroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capacity: int | None = Field(default=None, ge=1, le=100000)
    description: str | None = None


class TaskGroupOut(BaseModel):
    name: str
    project: str = "default"
    capacity: int
    in_use: int
    description: str
    created_at: Timestamp
    updated_at: Timestamp


class TaskGroupPage(BaseModel):
    items: list[TaskGroupOut]
    total: int
