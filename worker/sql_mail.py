"""A SQL task's ``send_email`` (the seed's feature): how many result rows its runner packs, and
after the attempt's SUCCESS is reported, one SQL_RESULT alert row carrying them (fenced by the
lease token), which the masters' senders mail as an HTML table to the task's alert group (or
its workflow's)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from core.settings import Settings
from db import alert_outbox
from worker.attempt import AttemptHandle
from worker.task_types.outputs import RESULT_KEY

DEFAULT_ROWS = 10


def rows_wanted(spec: Mapping[str, Any], settings: Settings) -> int:
    """0 without ``send_email``; else ``display_rows`` (10) capped by alerts.sql_max_rows and
    by the rows the task may read at all."""
    if not spec.get("send_email"):
        return 0
    n = int(spec.get("display_rows") or DEFAULT_ROWS)
    return max(1, min(n, settings.alerts.sql_max_rows, settings.worker.sql_max_rows))


def take_result(h: AttemptHandle) -> dict[str, Any] | None:
    """Remove the packed rows from the attempt's outputs; the decoded result, if any."""
    packed = h.output.pop(RESULT_KEY, None)
    if packed is None:
        return None
    try:
        doc = json.loads(base64.b64decode(packed, validate=True))
    except (binascii.Error, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def add_alert(s: Connection, h: AttemptHandle, result: dict[str, Any]) -> bool:
    att = h.attempt
    spec = att.spec if att is not None else {}
    name = att.name if att is not None else str(h.ti_id)
    rows = len(result.get("rows") or [])
    title = str(spec.get("email_title") or f"SQL task {name}: {rows} row(s)")
    group = spec.get("alert_group")
    return alert_outbox.add_sql_result(
        s, h.ti_id, lease_token=h.claim.epoch, group=str(group) if group else None,
        title=title[:500], result=result,
    )  # fmt: skip
