"""What an alert says (pure): the mail's subject, plain text and HTML (a SQL task's result rows
and a failed run's tasks as tables, links to the instance and each failed task's log), the
webhook's JSON or Slack-compatible body, and the HMAC-SHA256 signature of a webhook request."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from html import escape
from typing import Any

SIGNATURE_HEADER = "X-Dagkeeper-Signature"
TIMESTAMP_HEADER = "X-Dagkeeper-Timestamp"


@dataclass(frozen=True)
class AlertView:
    """An alert row as the channels see it."""

    id: int
    kind: str
    title: str
    content: dict[str, Any]
    instance_id: int | None
    workflow: str | None
    created_at: str


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def links(a: AlertView, base_url: str) -> dict[str, str]:
    """The instance's page and each named task's log download, absolute under ``base_url``."""
    base = base_url.rstrip("/")
    out: dict[str, str] = {}
    if a.instance_id is not None:
        out["instance"] = f"{base}/ui/instances/{a.instance_id}"
    for t in _tasks(a):
        tid = t.get("task_instance_id")
        if tid is not None:
            out[f"log:{t.get('task')}#{t.get('attempt')}"] = (
                f"{base}/api/v1/task-instances/{int(tid)}/log/download"
            )
    return out


def _tasks(a: AlertView) -> list[dict[str, Any]]:
    """The task attempts an alert is about (failed tasks, failed-over attempts, the one task)."""
    c = a.content
    for key in ("failed_tasks", "attempts"):
        if isinstance(c.get(key), list):
            return [t for t in c[key] if isinstance(t, dict)]
    if c.get("task_instance_id") is not None:
        return [c]
    return []


_SKIP = {"failed_tasks", "attempts", "result"}
_TASK_COLS = (
    "task",
    "attempt",
    "rerun_attempt",
    "workflow_instance_id",
    "host",
    "exit_code",
    "reason",
)


def _facts(a: AlertView) -> list[tuple[str, str]]:
    out = [("kind", a.kind)]
    if a.workflow:
        out.append(("workflow", a.workflow))
    if a.instance_id is not None:
        out.append(("instance", str(a.instance_id)))
    for k, v in a.content.items():
        if k in _SKIP or k in ("workflow", "instance_id") or isinstance(v, dict | list):
            continue
        out.append((k, "" if v is None else str(v)))
    out.append(("at", a.created_at))
    return out


def _table_html(cols: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape('NULL' if v is None else str(v))}</td>" for v in r) + "</tr>"
        for r in rows
    )
    return f'<table border="1" cellpadding="4" cellspacing="0"><tr>{head}</tr>{body}</table>'


def _table_text(cols: list[str], rows: list[list[Any]]) -> str:
    lines = ["\t".join(str(c) for c in cols)]
    lines += ["\t".join("NULL" if v is None else str(v) for v in r) for r in rows]
    return "\n".join(lines)


def _task_table(tasks: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    cols = [c for c in _TASK_COLS if any(t.get(c) is not None for t in tasks)]
    return cols, [[t.get(c) for c in cols] for t in tasks]


def render_mail(a: AlertView, base_url: str) -> Rendered:
    """Subject, plain text and HTML of the alert's mail."""
    facts = _facts(a)
    link = links(a, base_url)
    text_parts = [a.title, ""] + [f"{k}: {v}" for k, v in facts]
    html_parts = [f"<h3>{escape(a.title)}</h3>", "<ul>"]
    html_parts += [f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in facts]
    html_parts.append("</ul>")
    result = a.content.get("result")
    if isinstance(result, dict) and isinstance(result.get("columns"), list):
        cols = [str(c) for c in result["columns"]]
        rows = [list(r) for r in result.get("rows") or [] if isinstance(r, list)]
        text_parts += ["", _table_text(cols, rows)]
        html_parts.append(_table_html(cols, rows))
        if result.get("truncated"):
            note = f"(first {len(rows)} rows shown)"
            text_parts.append(note)
            html_parts.append(f"<p>{escape(note)}</p>")
    tasks = _tasks(a)
    if tasks and a.content.get("task_instance_id") is None:
        cols, rows = _task_table(tasks)
        text_parts += ["", _table_text(cols, rows)]
        html_parts.append(_table_html(cols, rows))
    if link:
        text_parts += [""] + [f"{k}: {v}" for k, v in link.items()]
        html_parts.append("<ul>")
        html_parts += [
            f'<li><a href="{escape(v, quote=True)}">{escape(k)}</a></li>' for k, v in link.items()
        ]
        html_parts.append("</ul>")
    subject = f"[dagkeeper] {a.title}"
    return Rendered(subject[:250], "\n".join(text_parts) + "\n", "\n".join(html_parts) + "\n")


def webhook_body(a: AlertView, base_url: str, fmt: str = "JSON") -> bytes:
    """The POST body: dagkeeper's JSON, or ``SLACK`` (``{"text": ...}``, which Slack's and
    Mattermost's incoming webhooks accept)."""
    if fmt.upper() == "SLACK":
        r = render_mail(a, base_url)
        return json.dumps({"text": r.text.strip()}).encode()
    body = {
        "id": a.id,
        "kind": a.kind,
        "title": a.title,
        "workflow": a.workflow,
        "instance_id": a.instance_id,
        "created_at": a.created_at,
        "content": a.content,
        "links": links(a, base_url),
    }
    return json.dumps(body, default=str, sort_keys=True).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``<timestamp>.<body>`` (the receiver
    recomputes it from the two headers and the raw body, and refuses old timestamps)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, presented: str) -> bool:
    return hmac.compare_digest(signature(secret, timestamp, body), presented)
