"""Alert rows as an outbox: writing them (a run's end, a worker failover, a SQL task's result
rows, missed cron fires, a test send), and the sender's side — claim due rows with SKIP LOCKED
behind a short lease, find each row's channels, mark it SENT / FAILED / SKIPPED or due again
with backoff. Never commits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Float, Integer, Text, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from core.states import AlertStatus, TaskState

# Kinds of alert that go to the global channels (events about the cluster, not one workflow)
CLUSTER_KINDS = ("MASTER_FAILOVER", "WORKER_FAILOVER", "COMMAND_NOT_CARRIED_OUT")
WAIT = AlertStatus.WAIT.value

_ADD = text(
    "INSERT INTO alert (kind, title, content, workflow_instance_id, alert_group)"
    " VALUES (:kind, :title, :content, :iid, :grp) RETURNING id"
).bindparams(bindparam("content", type_=JSONB))


def add(
    s: Session | Connection,
    kind: str,
    title: str,
    content: dict[str, Any],
    instance_id: int | None = None,
    group: str | None = None,
) -> int:
    """One alert row, due at once; its id."""
    params = {"kind": kind, "title": title, "content": content, "iid": instance_id, "grp": group}
    return int(s.execute(_ADD, params).scalar_one())


# One alert per worker that held attempts a master failed over: which node died and which
# attempts (task, attempt, instance) run again as which attempt. DISPATCHED attempts nobody had
# claimed yet (no worker) are re-offered without an alert.
_WORKER_FAILOVER = text(
    "INSERT INTO alert (kind, title, content)"
    " SELECT 'WORKER_FAILOVER', 'worker ' || worker_id || ' is gone; ' || count(*)"
    " || ' attempt(s) run again', jsonb_build_object('dead_worker', worker_id,"
    " 'host', max(host), 'failed_over_by', CAST(:actor AS text), 'attempts',"
    " jsonb_agg(jsonb_build_object('task_instance_id', id, 'task', name, 'attempt', attempt,"
    " 'rerun_attempt', attempt + 1, 'workflow_instance_id', workflow_instance_id) ORDER BY id))"
    " FROM task_instance WHERE id = ANY(:ids) AND worker_id IS NOT NULL GROUP BY worker_id"
)


def add_worker_failover(s: Session, attempt_ids: list[int], actor: str) -> int:
    """WORKER_FAILOVER rows for attempts just marked NEED_FAULT_TOLERANCE; how many."""
    if not attempt_ids:
        return 0
    res = s.execute(_WORKER_FAILOVER, {"ids": sorted(attempt_ids), "actor": actor})
    return int(res.rowcount)  # type: ignore[attr-defined]


# A SQL task's result rows as a mail to its alert group, written by the worker that ran it while
# the attempt is still its own (the lease token), right after it reported SUCCESS.
_SQL_RESULT = text(
    "INSERT INTO alert (kind, title, content, workflow_instance_id, alert_group)"
    " SELECT 'SQL_RESULT', :title, jsonb_build_object('task_instance_id', ti.id, 'task', ti.name,"
    " 'attempt', ti.attempt, 'workflow_instance_id', ti.workflow_instance_id,"
    " 'result', CAST(:result AS jsonb), 'host', ti.host),"
    " ti.workflow_instance_id, :grp FROM task_instance ti"
    " WHERE ti.id = :ti_id AND ti.lease_token = :token AND ti.state = :success"
).bindparams(
    bindparam("result", type_=Text),
    bindparam("token", type_=Integer),
    success=TaskState.SUCCESS.value,
)


def add_sql_result(
    s: Session | Connection,
    task_instance_id: int,
    *,
    lease_token: int,
    group: str | None,
    title: str,
    result: dict[str, Any],
) -> bool:
    """One SQL_RESULT alert with ``result`` ({columns, rows, truncated}); False if the attempt is
    no longer a SUCCESS under ``lease_token``."""
    params = {
        "ti_id": task_instance_id,
        "token": lease_token,
        "grp": group,
        "title": title,
        "result": json.dumps(result, default=str),
    }
    return s.execute(_SQL_RESULT, params).rowcount == 1  # type: ignore[attr-defined]


# -- the sender's side ---------------------------------------------------------------------------


@dataclass
class DueAlert:
    id: int
    kind: str
    title: str
    content: dict[str, Any]
    workflow_instance_id: int | None
    group: str | None  # the row's own group, else its workflow's alert_group
    workflow: str | None
    tries: int  # this claim included
    created_at: datetime
    deliveries: dict[str, Any] = field(default_factory=dict)


# Claim: due WAIT rows (oldest first) are pushed ``claim_s`` into the future and counted as a
# try in one statement; SKIP LOCKED keeps two masters' senders off the same rows, the lease
# keeps a row from being sent twice at once, and a sender that dies mid-send leaves rows that
# become due again when the lease runs out (at least once).
_CLAIM = text(
    "WITH due AS (SELECT id FROM alert WHERE status = :wait AND next_try_at <= now()"
    " ORDER BY next_try_at, id LIMIT :n FOR UPDATE SKIP LOCKED)"
    " UPDATE alert a SET tries = a.tries + 1, next_try_at = now() + make_interval(secs => :lease)"
    " FROM due WHERE a.id = due.id"
    " RETURNING a.id, a.kind, a.title, a.content, a.workflow_instance_id, a.tries, a.created_at,"
    " a.deliveries, a.alert_group,"
    " (SELECT v.spec ->> 'alert_group' FROM workflow_instance wi JOIN workflow_version v"
    "  ON v.workflow_id = wi.workflow_id AND v.version = wi.version"
    "  WHERE wi.id = a.workflow_instance_id) AS wf_group,"
    " (SELECT d.name FROM workflow_instance wi JOIN workflow_definition d"
    "  ON d.id = wi.workflow_id WHERE wi.id = a.workflow_instance_id) AS workflow"
).bindparams(bindparam("lease", type_=Float), wait=WAIT)


def claim_due(s: Session | Connection, limit: int, lease_s: float) -> list[DueAlert]:
    rows = s.execute(_CLAIM, {"n": limit, "lease": lease_s}).all()
    out = [
        DueAlert(
            id=int(r.id),
            kind=str(r.kind),
            title=str(r.title),
            content=dict(r.content or {}),
            workflow_instance_id=r.workflow_instance_id,
            group=r.alert_group or r.wf_group,
            workflow=r.workflow,
            tries=int(r.tries),
            created_at=r.created_at,
            deliveries=dict(r.deliveries or {}),
        )
        for r in rows
    ]
    return sorted(out, key=lambda a: a.id)


@dataclass(frozen=True)
class ChannelRow:
    id: int
    name: str
    kind: str
    params: dict[str, Any]
    secret_enc: str | None
    is_global: bool


_CHANNELS = text(
    "SELECT c.id, c.name, c.kind, c.params, c.secret_enc, c.is_global, g.name AS grp"
    " FROM alert_channel c LEFT JOIN alert_group_channel gc ON gc.channel_id = c.id"
    " LEFT JOIN alert_group g ON g.id = gc.group_id"
    " WHERE c.is_global OR g.name = ANY(:groups)"
)


def channels_by_group(
    s: Session, groups: list[str]
) -> tuple[dict[str, list[ChannelRow]], list[ChannelRow]]:
    """(group name -> its channels, the global channels) for the groups named."""
    by_group: dict[str, list[ChannelRow]] = {}
    glob: dict[int, ChannelRow] = {}
    for r in s.execute(_CHANNELS, {"groups": sorted(set(groups))}).all():
        ch = ChannelRow(int(r.id), r.name, r.kind, dict(r.params or {}), r.secret_enc, r.is_global)
        if r.is_global:
            glob[ch.id] = ch
        if r.grp is not None and r.grp in groups:
            by_group.setdefault(r.grp, []).append(ch)
    return by_group, sorted(glob.values(), key=lambda c: c.id)


_MARK = text(
    "UPDATE alert SET status = :status, deliveries = :deliveries, last_error = :err,"
    " sent_at = CASE WHEN :status = :sent THEN now() ELSE sent_at END,"
    " next_try_at = now() + make_interval(secs => :delay)"
    " WHERE id = :id AND status = :wait"
).bindparams(
    bindparam("deliveries", type_=JSONB),
    bindparam("err", type_=Text),
    bindparam("delay", type_=Float),
    wait=WAIT,
    sent=AlertStatus.SENT.value,
)


def mark(
    s: Session,
    alert_id: int,
    status: AlertStatus,
    deliveries: dict[str, Any],
    error: str | None,
    retry_in_s: float = 0.0,
) -> bool:
    """Record one try: SENT, FAILED, SKIPPED, or WAIT again in ``retry_in_s``."""
    params = {
        "id": alert_id,
        "status": status.value,
        "deliveries": deliveries,
        "err": error,
        "delay": float(retry_in_s),
    }
    return s.execute(_MARK, params).rowcount == 1  # type: ignore[attr-defined]


def pending(s: Session) -> int:
    """Rows waiting to be sent (or retried)."""
    return int(
        s.execute(text("SELECT count(*) FROM alert WHERE status = :w"), {"w": WAIT}).scalar_one()
    )
