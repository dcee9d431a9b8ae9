"""Pydantic request and response models of the REST API (instances and attempts: schemas_instances)
and their construction from DB rows. Times are ISO 8601 in UTC with an explicit offset; states and
priorities are upper-case names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from core.states import Priority
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
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 422)
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


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime | None = None
    end: datetime | None = None
    dates: list[datetime] | None = None
    mode: Literal["SERIAL", "PARALLEL"] = "SERIAL"
    parallelism: int = Field(default=1, ge=1, le=1000)
    order: Literal["ASC", "DESC"] = "ASC"

    _upper_mode = field_validator("mode", "order", mode="before")(_upper)


class RunRequest(BaseModel):
    """Body of POST /workflows/{id}/runs; every field is optional, unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, str | int | float | bool] = {}
    priority: Literal["HIGHEST", "HIGH", "MEDIUM", "LOW", "LOWEST"] | None = None
    worker_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,100}$")
    failure_strategy: Literal["CONTINUE", "END"] | None = None
    start_nodes: list[str] | None = None
    depend_mode: Literal["TASK_ONLY", "TASK_PRE", "TASK_POST"] | None = None
    dry_run: bool = False
    backfill: BackfillRequest | None = None

    _upper_enums = field_validator("priority", "failure_strategy", "depend_mode", mode="before")(
        _upper
    )

    def string_params(self) -> dict[str, str]:
        out = {}
        for k, v in self.params.items():
            out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
        return out

    def run_options(self) -> dict[str, Any]:
        """Everything but params and priority, as stored in workflow_instance.run_options."""
        return self.model_dump(mode="json", exclude={"params", "priority"}, exclude_none=True)


class RunAccepted(BaseModel):
    instance_id: int


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


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, str]


# -- task groups ----------------------------------------------------------------------------------------------------------------------------------------


class TaskGroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")
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
