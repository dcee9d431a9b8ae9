"""SQLAlchemy 2 models of every table; the schema itself is made by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.states import BackfillState, ReleaseState, TaskState, WorkflowState

W, T = WorkflowState, TaskState


class Base(DeclarativeBase):
    pass


TS = DateTime(timezone=True)
# Workflows, datasources and task groups belong to a project (a foreign key on project.name,
# revision 0008); instances, schedules and backfills to their workflow's.
DEFAULT_PROJECT = "default"


def _states(*states: str) -> str:
    """``'A','B'``: the SQL list of a partial index's predicate (DDL takes no bound values)."""
    return ",".join(f"'{s}'" for s in states)


# the partial indexes' predicates, as the migrations wrote them
_WF_LIVE = f"state NOT IN ({_states(W.SUCCESS, W.FAILURE, W.STOP)})"
_TI_IN_FLIGHT = f"state IN ({_states(T.SUBMITTED, T.DISPATCHED, T.RUNNING)})"
_TI_LEASED = f"state IN ({_states(T.DISPATCHED, T.RUNNING)})"


class WorkflowDefinition(Base):
    """A named workflow; its content lives in immutable ``WorkflowVersion`` rows."""

    __tablename__ = "workflow_definition"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    latest_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    project: Mapped[str] = mapped_column(String(100), nullable=False, default=DEFAULT_PROJECT)
    release_state: Mapped[str] = mapped_column(
        String(10), nullable=False, default=ReleaseState.ONLINE.value
    )
    __table_args__ = (
        Index(
            "uq_workflow_definition_name_live",
            "name",
            unique=True,
            postgresql_where=text("NOT deleted"),
        ),
        CheckConstraint(
            "release_state IN ('ONLINE', 'OFFLINE')", name="ck_workflow_definition_release_state"
        ),
    )


class WorkflowVersion(Base):
    """One immutable version of a workflow spec; instances point at the version they ran."""

    __tablename__ = "workflow_version"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workflow_definition.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    __table_args__ = (UniqueConstraint("workflow_id", "version", name="uq_workflow_version"),)


class Schedule(Base):
    __tablename__ = "schedule"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workflow_definition.id", ondelete="CASCADE"), nullable=False
    )
    cron: Mapped[str] = mapped_column(String(200), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    start_time: Mapped[datetime | None] = mapped_column(TS)
    end_time: Mapped[datetime | None] = mapped_column(TS)
    misfire: Mapped[str] = mapped_column(String(16), nullable=False, default="FIRE_ONCE")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    failure_strategy: Mapped[str] = mapped_column(String(16), nullable=False, default="END")
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, default=2)
    worker_group: Mapped[str | None] = mapped_column(String(100))
    next_fire_time: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    __table_args__ = (
        Index("ix_schedule_next_fire", "next_fire_time", postgresql_where=text("enabled")),
        Index("ix_schedule_workflow", "workflow_id"),
    )


class Command(Base):
    """A request to a master (start, rerun, stop, ...); claimed with FOR UPDATE SKIP LOCKED."""

    __tablename__ = "command"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    workflow_id: Mapped[int | None] = mapped_column(BigInteger)
    version: Mapped[int | None] = mapped_column(Integer)
    instance_id: Mapped[int | None] = mapped_column(BigInteger)
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, default=2)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    schedule_id: Mapped[int | None] = mapped_column(BigInteger)
    schedule_time: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    __table_args__ = (
        Index("ix_command_claim_order", "priority", "id"),
        Index(  # the purge deletes an instance's commands (revision 0012)
            "ix_command_instance", "instance_id", postgresql_where=text("instance_id IS NOT NULL")
        ),
        UniqueConstraint("schedule_id", "schedule_time", name="uq_command_schedule_fire"),
    )


class WorkflowInstance(Base):
    __tablename__ = "workflow_instance"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workflow_definition.id"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False)
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, default=2)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    run_options: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    command_type: Mapped[str] = mapped_column(String(40), nullable=False)
    schedule_id: Mapped[int | None] = mapped_column(BigInteger)
    schedule_time: Mapped[datetime | None] = mapped_column(TS)
    submit_time: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    start_time: Mapped[datetime | None] = mapped_column(TS)
    end_time: Mapped[datetime | None] = mapped_column(TS)
    owner: Mapped[str | None] = mapped_column(String(200))
    owner_epoch: Mapped[int | None] = mapped_column(BigInteger)
    run_count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # why the instance is in its state (finish reason, serial wait, stop request)
    reason: Mapped[str | None] = mapped_column(Text)
    # the SUB_PROCESS attempt that started this instance (unique: one child per attempt)
    parent_task_instance_id: Mapped[int | None] = mapped_column(BigInteger)
    __table_args__ = (
        Index("ix_wfi_workflow", "workflow_id", "id"),
        Index("ix_wfi_state_id", "state", "id"),  # revision 0012: a page of one state
        Index("ix_wfi_submit_time", "submit_time", "id"),
        # finished instances oldest first: what the retention purge reads (revision 0012)
        Index("ix_wfi_end_time", "end_time", "id", postgresql_where=text("end_time IS NOT NULL")),
        Index(
            "uq_wfi_parent_task",
            "parent_task_instance_id",
            unique=True,
            postgresql_where=text("parent_task_instance_id IS NOT NULL"),
        ),
        Index(
            "ix_wfi_owner_active",
            "owner",
            "owner_epoch",
            postgresql_where=text(_WF_LIVE),
        ),
    )


class TaskInstance(Base):
    """One attempt of one task of one workflow instance."""

    __tablename__ = "task_instance"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workflow_instance_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workflow_instance.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    state: Mapped[str] = mapped_column(String(24), nullable=False)
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, default=2)
    worker_group: Mapped[str] = mapped_column(String(100), nullable=False, default="default")
    # the resolved task spec (command, env, ...) the worker runs
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    output: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    host: Mapped[str | None] = mapped_column(String(200))
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_token: Mapped[int | None] = mapped_column(BigInteger)
    pid: Mapped[int | None] = mapped_column(Integer)
    log_path: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    # a named concurrency limit shared across workflows (see TaskGroup)
    task_group: Mapped[str | None] = mapped_column(String(100))
    # why the attempt is in its state (timeout, killed by stop, skipped by a branch, ...)
    reason: Mapped[str | None] = mapped_column(Text)
    submit_time: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    dispatch_time: Mapped[datetime | None] = mapped_column(TS)
    start_time: Mapped[datetime | None] = mapped_column(TS)
    end_time: Mapped[datetime | None] = mapped_column(TS)
    # a FANOUT sub-execution: the FANOUT attempt it belongs to and its target host (revision 0007)
    parent_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("task_instance.id", ondelete="CASCADE")
    )
    target: Mapped[str | None] = mapped_column(String(200))
    __table_args__ = (
        UniqueConstraint("workflow_instance_id", "name", "attempt", name="uq_task_attempt"),
        Index(
            "uq_ti_parent_target",
            "parent_id",
            "target",
            unique=True,
            postgresql_where=text("parent_id IS NOT NULL"),
        ),
        Index(
            "ix_ti_active_state",
            "state",
            postgresql_where=text(_TI_IN_FLIGHT),
        ),
        Index(
            "ix_ti_task_group_active",
            "task_group",
            postgresql_where=text(f"task_group IS NOT NULL AND {_TI_IN_FLIGHT}"),
        ),
        Index(
            "ix_ti_worker_active",
            "worker_id",
            postgresql_where=text(_TI_LEASED),
        ),
    )


class TaskGroup(Base):
    """A named concurrency limit; slots in use are counted from live attempts, never stored."""

    __tablename__ = "task_group"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    project: Mapped[str] = mapped_column(String(100), nullable=False, default=DEFAULT_PROJECT)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    __table_args__ = (CheckConstraint("capacity >= 1", name="ck_task_group_capacity"),)


class Alert(Base):
    __tablename__ = "alert"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    workflow_instance_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    # delivery (revision 0009): an outbox row the masters' alert senders claim and mark
    alert_group: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="WAIT")
    tries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_try_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(TS)
    last_error: Mapped[str | None] = mapped_column(Text)
    deliveries: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    __table_args__ = (
        Index("ix_alert_created", "created_at"),
        Index(  # the purge deletes an instance's alerts (revision 0012)
            "ix_alert_instance",
            "workflow_instance_id",
            postgresql_where=text("workflow_instance_id IS NOT NULL"),
        ),
    )


# -- schedules and backfill (revision 0003) -----------------------------------------------------

# One workflow instance per cron fire, even after its command row was claimed and deleted.
Index(
    "uq_wfi_schedule_fire",
    WorkflowInstance.schedule_id,
    WorkflowInstance.schedule_time,
    unique=True,
    postgresql_where=text("schedule_id IS NOT NULL"),
)


class Backfill(Base):
    """A run of a workflow over a list of schedule times, SERIAL or PARALLEL with a limit."""

    __tablename__ = "backfill"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workflow_definition.id", ondelete="CASCADE"), nullable=False
    )
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    parallelism: Mapped[int] = mapped_column(Integer, nullable=False)
    sort_order: Mapped[str] = mapped_column(String(4), nullable=False, default="ASC")
    # RUNNING until every date's instance is terminal, then DONE (or STOPPED)
    state: Mapped[str] = mapped_column(
        String(16), nullable=False, default=BackfillState.RUNNING.value
    )
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    cron: Mapped[str | None] = mapped_column(String(200))
    priority: Mapped[int | None] = mapped_column(SmallInteger)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    run_options: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    end_time: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        CheckConstraint("parallelism >= 1", name="ck_backfill_parallelism"),
        Index(
            "ix_backfill_running",
            "id",
            postgresql_where=text(f"state = {_states(BackfillState.RUNNING)}"),
        ),
    )


class BackfillRun(Base):
    """One date of a backfill, in submission order; ``instance_id`` is set when it is submitted."""

    __tablename__ = "backfill_run"
    backfill_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("backfill.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_time: Mapped[datetime] = mapped_column(TS, nullable=False)
    instance_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    submitted_at: Mapped[datetime | None] = mapped_column(TS)


class Datasource(Base):
    """A named database connection for SQL/PROCEDURE tasks; the password is stored encrypted."""

    __tablename__ = "datasource"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    port: Mapped[int | None] = mapped_column(Integer)
    database: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    username: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    password_enc: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    project: Mapped[str] = mapped_column(String(100), nullable=False, default=DEFAULT_PROJECT)
    __table_args__ = (
        CheckConstraint("kind IN ('POSTGRESQL', 'MYSQL')", name="ck_datasource_kind"),
    )


class TaskLogChunk(Base):
    """A piece of an attempt's log shipped by its worker (revision 0006): raw bytes cut at line
    ends, in ``seq`` order; ``first_line`` is the number of lines before it, ``line_count`` the
    newlines in it."""

    __tablename__ = "task_log_chunk"
    task_instance_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("task_instance.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_line: Mapped[int] = mapped_column(BigInteger, nullable=False)
    line_count: Mapped[int] = mapped_column(Integer, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
