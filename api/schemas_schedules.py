"""Request and response models of /schedules, /cron/preview and /backfills. An invalid cron
expression or time zone is a 422 naming the field and saying what is wrong."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas import Timestamp, priority_name
from core import cron
from core.errors import ValidationError
from core.validation import GROUP_PATTERN, Instant, Moment, PriorityName
from db.models import Backfill, Schedule

Misfire = Literal["FIRE_ALL", "FIRE_ONCE", "SKIP"]
FailureStrategy = Literal["CONTINUE", "END"]
WorkerGroup = Field(default=None, pattern=GROUP_PATTERN)


def _upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else v


def _check_cron(v: str | None) -> str | None:
    if v is not None:
        try:
            cron.parse(v)
        except ValidationError as exc:
            raise ValueError(exc.message) from None
    return v


def _check_tz(v: str | None) -> str | None:
    if v is not None:
        try:
            cron.zone(v)
        except ValidationError as exc:
            raise ValueError(exc.message) from None
    return v


class ScheduleIn(BaseModel):
    """Body of POST /schedules. ``start``/``end`` without an offset are in ``timezone``."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: int = Field(ge=1, le=2**63 - 1)
    cron: str = Field(min_length=1, max_length=200, examples=["0 0 2 * * ? *", "30 2 * * *"])
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Berlin"])
    start: Instant | None = None  # its range is cron's (1970 .. 9998, check_fires)
    end: Moment | None = None
    failure_strategy: FailureStrategy = "END"
    priority: PriorityName = "MEDIUM"
    worker_group: str | None = WorkerGroup
    misfire: Misfire = "FIRE_ONCE"
    enabled: bool = True

    _enums = field_validator("failure_strategy", "misfire", mode="before")(_upper)
    _cron = field_validator("cron")(_check_cron)
    _tz = field_validator("timezone")(_check_tz)


class ScheduleUpdate(BaseModel):
    """Body of PUT /schedules/{id}: the fields to change (a GET answer may be sent back)."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    cron: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    start: Instant | None = None  # its range is cron's (1970 .. 9998, check_fires)
    end: Moment | None = None
    failure_strategy: FailureStrategy | None = None
    priority: PriorityName | None = None
    worker_group: str | None = WorkerGroup
    misfire: Misfire | None = None
    enabled: bool | None = None
    # read-only fields of a GET answer, accepted and ignored
    id: int | None = None
    kind: str | None = None
    next_fire_time: Moment | None = None
    created_at: Moment | None = None
    updated_at: Moment | None = None

    _enums = field_validator("failure_strategy", "misfire", mode="before")(_upper)
    _cron = field_validator("cron")(_check_cron)
    _tz = field_validator("timezone")(_check_tz)


class ScheduleOut(BaseModel):
    id: int
    workflow_id: int
    cron: str
    kind: str
    timezone: str
    start: Timestamp | None
    end: Timestamp | None
    failure_strategy: str
    priority: str
    worker_group: str | None
    misfire: str
    enabled: bool
    next_fire_time: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def from_row(cls, r: Schedule) -> ScheduleOut:
        return cls(
            id=r.id,
            workflow_id=r.workflow_id,
            cron=r.cron,
            kind=cron.parse(r.cron).kind,
            timezone=r.timezone,
            start=r.start_time,
            end=r.end_time,
            failure_strategy=r.failure_strategy,
            priority=priority_name(r.priority),
            worker_group=r.worker_group,
            misfire=r.misfire,
            enabled=r.enabled,
            next_fire_time=r.next_fire_time,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class SchedulePage(BaseModel):
    items: list[ScheduleOut]
    total: int


class FireTime(BaseModel):
    """One fire: local time with offset, UTC, the wall time the expression named, DST flag."""

    time: str
    utc: str
    scheduled_wall_time: str
    utc_offset: str
    dst: Literal["GAP", "REPEAT"] | None
    note: str | None


class PreviewOut(BaseModel):
    expr: str
    kind: str
    timezone: str
    items: list[FireTime]


class BackfillRunOut(BaseModel):
    seq: int
    schedule_time: Timestamp
    instance_id: int | None
    state: str | None


class BackfillOut(BaseModel):
    id: int
    workflow_id: int
    mode: str
    parallelism: int
    order: str
    state: str
    timezone: str
    cron: str | None
    total: int
    submitted: int
    active: int
    finished: int
    created_at: Timestamp
    end_time: Timestamp | None
    runs: list[BackfillRunOut]

    @classmethod
    def from_rows(
        cls, b: Backfill, runs: list[tuple[Any, ...]], terminal: tuple[str, ...]
    ) -> BackfillOut:
        items = [
            BackfillRunOut(seq=r[0], schedule_time=r[1], instance_id=r[2], state=r[3]) for r in runs
        ]
        submitted = sum(1 for r in items if r.instance_id is not None)
        finished = sum(1 for r in items if r.state in terminal)
        return cls(
            id=b.id,
            workflow_id=b.workflow_id,
            mode=b.mode,
            parallelism=b.parallelism,
            order=b.sort_order,
            state=b.state,
            timezone=b.timezone,
            cron=b.cron,
            total=len(items),
            submitted=submitted,
            active=submitted - finished,
            finished=finished,
            created_at=b.created_at,
            end_time=b.end_time,
            runs=items,
        )


class BackfillAccepted(BaseModel):
    """202 answer of a backfill run: the first instance, all instances submitted so far."""

    instance_id: int
    instance_ids: list[int]
    backfill_id: int
    dates: int
