"""Every NOTIFY channel and payload: the channel names masters LISTEN on, the task payload
``<workflow instance id>[:<task instance id>]`` and its parser, and the SQL that sends them
(delivered when the sending transaction commits)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

# The API, the cron leader and control requests wake every master's command loop.
CHANNEL_COMMAND = "dagkeeper_command"
# Workers, control requests and child instances wake the master that owns an instance.
CHANNEL_TASK = "dagkeeper_task"
# What a master's listener connection runs once per (re)connect.
LISTEN_SQL = f"LISTEN {CHANNEL_COMMAND}; LISTEN {CHANNEL_TASK};"

_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


@dataclass(frozen=True)
class Event:
    """``kind`` is 'command', 'task' (with ``instance_id`` and, when known, the changed
    ``task_instance_id``), 'resync' or 'wake'."""

    kind: str
    instance_id: int = 0
    task_instance_id: int = 0


def task_payload(instance_id: int, task_instance_id: int | None = None) -> str:
    """The payload on CHANNEL_TASK: the instance, and the attempt that changed if there is one."""
    return f"{int(instance_id)}:{int(task_instance_id)}" if task_instance_id else str(instance_id)


def parse_task_payload(payload: str) -> Event:
    """``<workflow instance id>[:<task instance id>]`` -> a task event (ValueError if malformed)."""
    wfi, _, tid = payload.partition(":")
    return Event("task", int(wfi), int(tid) if tid else 0)


def task_notify_select(instance_sql: str, task_sql: str) -> str:
    """``SELECT pg_notify(<task channel>, <instance> || ':' || <task>)`` over two SQL expressions,
    for a statement that builds the payload itself (e.g. ``... RETURNING`` in a CTE)."""
    return f"SELECT pg_notify('{CHANNEL_TASK}', {instance_sql} || ':' || {task_sql})"


def notify_masters(s: Session) -> None:
    """Wake every master's command loop once this transaction commits."""
    s.execute(_NOTIFY, {"channel": CHANNEL_COMMAND, "payload": ""})


def notify_owner(s: Session, instance_id: int, task_instance_id: int | None = None) -> None:
    """Wake the master that owns ``instance_id`` (about one of its attempts) on commit."""
    s.execute(
        _NOTIFY, {"channel": CHANNEL_TASK, "payload": task_payload(instance_id, task_instance_id)}
    )
