"""Every setting of dagkeeper (pydantic-settings, env prefix ``DAGKEEPER_``, nested with ``__``)."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DB_URL = "postgresql+psycopg2://dagkeeper@127.0.0.1:5432/dagkeeper"


class DbSettings(BaseModel):
    url: str = DEFAULT_DB_URL
    pool_size: int = Field(default=5, ge=1, le=100)
    # standalone: start a private PostgreSQL server (False = use ``url`` as given)
    managed: bool = True
    port: int = Field(default=15432, ge=1, le=65535)
    # the password, kept out of the URL (and so out of logs and ``ps``): given, or read from a file
    password: str = Field(default="", repr=False)
    password_file: str = ""
    # TLS to PostgreSQL (libpq's sslmode: disable, prefer, require, verify-ca, verify-full)
    sslmode: str = Field(
        default="", pattern=r"^(|disable|allow|prefer|require|verify-ca|verify-full)$"
    )
    sslrootcert: str = ""
    sslcert: str = ""
    sslkey: str = ""

    def connect_args(self) -> dict[str, str]:
        """The psycopg2 connection keywords beside the URL: password (from the file when one is
        named) and TLS options. Never logged."""
        out: dict[str, str] = {}
        password = self.password or (
            Path(self.password_file).expanduser().read_text().strip() if self.password_file else ""
        )
        if password:
            out["password"] = password
        for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


class ZkSettings(BaseModel):
    hosts: str = "127.0.0.1:2181"
    root: str = "/dagkeeper"
    session_timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=15.0, gt=0)
    managed: bool = True
    port: int = Field(default=12181, ge=1, le=65535)
    # digest ACLs on the namespace: every znode under ``root`` is readable and writable only with
    # these credentials (empty password and file = no ACLs, the namespace is open)
    auth_user: str = Field(default="dagkeeper", pattern=r"^[^:]{1,100}$")
    auth_password: str = Field(default="", repr=False)
    auth_password_file: str = ""

    def digest_auth(self) -> tuple[str, str] | None:
        """(user, password) of the namespace's digest ACL, or None when ACLs are off."""
        password = self.auth_password or (
            Path(self.auth_password_file).expanduser().read_text().strip()
            if self.auth_password_file
            else ""
        )
        return (self.auth_user, password) if password else None

    @field_validator("root")
    @classmethod
    def _root_is_absolute(cls, v: str) -> str:
        if not v.startswith("/") or (v.endswith("/") and v != "/"):
            raise ValueError("must be an absolute znode path without a trailing '/'")
        return v


class MasterSettings(BaseModel):
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    command_poll_interval_s: float = Field(default=1.0, gt=0)
    commands_per_claim: int = Field(default=50, ge=1)
    reconcile_interval_s: float = Field(default=5.0, gt=0)
    # Most queue entries kept in ZooKeeper per group; the rest waits in PostgreSQL.
    queue_high_water: int = Field(default=5000, ge=1)
    # A running task asked to stop is forced to KILL after this long without the worker's answer.
    kill_grace_s: float = Field(default=10.0, gt=0)


class WorkerSettings(BaseModel):
    groups: Annotated[list[str], NoDecode] = ["default"]
    capacity: int = Field(default=4, ge=1, le=10000)
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    host: str = Field(default_factory=socket.gethostname)
    # Empty = <data_dir>/logs and <data_dir>/exec
    log_dir: str = ""
    exec_dir: str = ""
    # Time allowed for a report to PostgreSQL before the worker gives it up to failover.
    report_retry_deadline_s: float = Field(default=5.0, gt=0)
    kill_grace_s: float = Field(default=2.0, ge=0)
    # The watchdog: the worker's guardian SIGKILLs every task process group once the worker
    # daemon has not run for this long (frozen: SIGSTOP, a GC pause, a debugger), so that a task
    # never runs on beside its re-run. 0 = zk.session_timeout_s / 4; at most a third of it.
    watchdog_deadline_s: float = Field(default=0.0, ge=0)
    # PYTHON tasks without an ``interpreter`` run under this (empty = the worker's own Python)
    python: str = ""
    # SPARK tasks: the spark-submit program (empty = on PATH, else $SPARK_HOME/bin/spark-submit)
    spark_submit: str = ""
    # Cap on what SQL/HTTP tasks write to their log: rows of a result, bytes of a response
    sql_max_rows: int = Field(default=1000, ge=1)
    http_max_body_bytes: int = Field(default=65536, ge=0)
    # Tenancy: OS users this worker may run SHELL tasks as (a project names its user); empty =
    # every task runs as the worker's own user, and a project that names a user is refused
    run_as_users: Annotated[list[str], NoDecode] = []
    # SIGTERM or a drain request (`dagkeeper worker drain <id>`): nothing new is claimed, running
    # tasks may finish for this long, then the rest are killed and handed over (re-run elsewhere
    # as fault tolerance: no retry used up)
    drain_deadline_s: float = Field(default=10.0, ge=0)
    # how often the worker deletes the task log files of instances no longer in PostgreSQL
    # (purged by `dagkeeper purge` or the retention); 0 = never
    log_prune_interval_s: float = Field(default=3600.0, ge=0)

    @field_validator("groups", "run_as_users", mode="before")
    @classmethod
    def _split_groups(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [g.strip() for g in v.split(",") if g.strip()]
        return v

    @field_validator("groups")
    @classmethod
    def _groups_valid(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a worker needs at least one group")
        for g in v:
            if "/" in g or g in (".", ".."):
                raise ValueError(f"invalid worker group name {g!r}")
        return v


class LogSettings(BaseModel):
    """Task logs: each worker's log server and the durable copy shipped to PostgreSQL."""

    # the worker's log server (a window of lines, follow, download of a task's log over HTTP)
    server_enabled: bool = True
    server_bind: str = "0.0.0.0"
    server_port: int = Field(default=0, ge=0, le=65535)  # 0 = a free port (published in ZooKeeper)
    # the host name the API uses to reach it (empty = the bind address, or worker.host for 0.0.0.0)
    server_advertise: str = ""
    # bearer token shared by the API and every log server; empty = <data_dir>/log-token (0600)
    token: str = Field(default="", repr=False)
    # ship running tasks' logs to PostgreSQL (task_log_chunk), in batches every ship_interval_s
    ship: bool = True
    ship_interval_s: float = Field(default=0.5, gt=0)
    ship_chunk_bytes: int = Field(default=65536, ge=1024, le=16 << 20)
    # most bytes of one attempt's log kept in PostgreSQL (0 = no cap); the file keeps all
    ship_max_bytes: int = Field(default=64 << 20, ge=0)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=12345, ge=1, le=65535)
    # The bootstrap admin's bearer token; empty = read or create <data_dir>/api-token.
    token: str = Field(default="", repr=False)
    # Largest request body (413 beyond it), and largest value of one parameter at submit (422)
    max_body_bytes: int = Field(default=4 << 20, ge=1024, le=1 << 30)
    max_param_bytes: int = Field(default=64 << 10, ge=1, le=1 << 20)
    # Failed authentications (a wrong or expired token) per client address before 429s, and
    # the sliding window they are counted in.
    auth_fail_limit: int = Field(default=20, ge=1)
    auth_fail_window_s: float = Field(default=60.0, gt=0)
    # Audit rows older than this are deleted (0 = kept for ever).
    audit_retention_days: int = Field(default=90, ge=0)


class CronSettings(BaseModel):
    """The cron leader (one master at a time) and the backfill reconciler it runs."""

    enabled: bool = True
    # How often the leader (and each candidate) checks for due fires and backfill slots.
    tick_interval_s: float = Field(default=0.5, gt=0)
    # A fire this late counts as missed and follows the schedule's misfire policy.
    misfire_threshold_s: float = Field(default=60.0, ge=0)
    # Most fire times written per schedule per transaction while catching up (FIRE_ALL).
    max_catchup: int = Field(default=1000, ge=1)
    # Retention: the leader purges finished instances older than this many days (with their
    # attempts, log chunks, alerts and commands) every purge_interval_s; 0 = never
    purge_older_than_days: int = Field(default=0, ge=0)
    purge_interval_s: float = Field(default=86400.0, gt=0)


class AlertSettings(BaseModel):
    """The alert sender: a thread on every master claims due alert rows (SKIP LOCKED, so two
    masters never send one row at once), sends them and marks them, retrying with backoff."""

    enabled: bool = True
    poll_interval_s: float = Field(default=5.0, gt=0)
    batch: int = Field(default=20, ge=1, le=1000)
    # a row is tried this many times, waiting retry_base_s * 2**(n-1) (at most retry_max_s)
    max_tries: int = Field(default=6, ge=1, le=100)
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    # one channel's send (SMTP dialogue, webhook POST) gives up after this long
    send_timeout_s: float = Field(default=10.0, gt=0)
    # a claimed row is hidden from other senders this long (a sender that died mid-send)
    claim_s: float = Field(default=120.0, gt=0)
    # where links in alerts point (the API/UI address users reach); empty = http://api.host:port
    base_url: str = ""
    # most result rows of a SQL task's mail (its ``display_rows`` is capped by this)
    sql_max_rows: int = Field(default=100, ge=1, le=10000)


class MetricsSettings(BaseModel):
    """Prometheus metrics: the API serves /metrics at its root; masters and workers on their
    own HTTP port, published in their ZooKeeper registration (``metrics_port``)."""

    enabled: bool = True
    bind: str = "0.0.0.0"
    port: int = Field(default=0, ge=0, le=65535)  # 0 = a free port


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DAGKEEPER_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: str = ".dagkeeper"
    log_level: str = "INFO"
    # daemon logs: "text" (one line per record) or "json" (JSON lines with the ids in extra fields)
    log_format: str = Field(default="text", pattern=r"^(text|json)$")
    # Key that encrypts datasource passwords at rest (same on API and worker hosts); empty =
    # <data_dir>/secret.key, created 0600 on first use.
    secret_key: str = Field(default="", repr=False)
    db: DbSettings = DbSettings()
    zk: ZkSettings = ZkSettings()
    master: MasterSettings = MasterSettings()
    worker: WorkerSettings = WorkerSettings()
    api: ApiSettings = ApiSettings()
    logs: LogSettings = LogSettings()
    cron: CronSettings = CronSettings()
    alerts: AlertSettings = AlertSettings()
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="after")
    def _timing_fits_session(self) -> Settings:
        st = self.zk.session_timeout_s
        problems = []
        if self.master.heartbeat_interval_s >= st / 2:
            problems.append(
                f"master.heartbeat_interval_s ({self.master.heartbeat_interval_s}) must be below "
                f"half of zk.session_timeout_s ({st})"
            )
        if self.worker.heartbeat_interval_s >= st / 2:
            problems.append(
                f"worker.heartbeat_interval_s ({self.worker.heartbeat_interval_s}) must be below "
                f"half of zk.session_timeout_s ({st})"
            )
        if self.worker.report_retry_deadline_s >= st:
            problems.append(
                f"worker.report_retry_deadline_s ({self.worker.report_retry_deadline_s}) must be "
                f"below zk.session_timeout_s ({st})"
            )
        wd = self.worker.watchdog_deadline_s
        if wd > st / 3 or 0 < wd < 0.2:
            problems.append(
                f"worker.watchdog_deadline_s ({wd}) must be 0 (= zk.session_timeout_s / 4) or "
                f"from 0.2 to zk.session_timeout_s / 3 ({st / 3:.3g}): a frozen worker's session "
                "can expire 2/3 of the session timeout after the freeze (ZooKeeper last heard "
                "its client at most 1/3 of it before) and masters start its tasks elsewhere at "
                "once, so the watchdog's kill must come within the first half of that"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def watchdog_deadline(self) -> float:
        """The worker's watchdog deadline in effect: ``worker.watchdog_deadline_s``, 0 = a
        quarter of the session timeout."""
        return self.worker.watchdog_deadline_s or self.zk.session_timeout_s / 4

    # derived paths: the one home of where things live on disk
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def log_path(self) -> Path:
        return (
            Path(self.worker.log_dir).resolve() if self.worker.log_dir else self.data_path / "logs"
        )

    @property
    def exec_path(self) -> Path:
        return (
            Path(self.worker.exec_dir).resolve()
            if self.worker.exec_dir
            else self.data_path / "exec"
        )

    @property
    def daemon_log_path(self) -> Path:
        return self.data_path / "daemons"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def test_timeout_scale() -> float:
    """Multiplier for every timeout in tests (``DAGKEEPER_TEST_TIMEOUT_SCALE``)."""
    return float(os.environ.get("DAGKEEPER_TEST_TIMEOUT_SCALE", "1"))
