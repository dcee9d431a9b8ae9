"""Logging set-up shared by the daemons: one line per record (time, level, logger, message), or
JSON lines (``log_format = "json"``) carrying the ids a line names as fields of their own.

The JSON fields ``instance``, ``task_instance``, ``attempt``, ``worker``, ``master`` and ``epoch``
come from the record's ``extra`` when a caller gives them, else from the message itself: every
daemon line already names its actor and ids (``master m1@7: instance 12 ...``, ``worker w1: task
40 attempt 2 ...``), so no call site has to change to be searchable by id."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
ID_FIELDS = ("instance", "task_instance", "attempt", "worker", "master", "epoch")

# what the daemons' messages say, in the words they use
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("master", re.compile(r"\bmaster ([A-Za-z0-9_.\-]+)@(\d+)")),
    ("worker", re.compile(r"\bworker ([A-Za-z0-9_.\-]+)")),
    ("instance", re.compile(r"\b(?:workflow )?instance (\d+)")),
    ("task_instance", re.compile(r"\btask(?: instance)? (\d+)")),
    ("attempt", re.compile(r"\battempt (\d+)")),
    ("epoch", re.compile(r"\bepoch (\d+)")),
)


def ids_in(message: str) -> dict[str, Any]:
    """Pure: the ids a log message names (``master m@7`` gives master and epoch)."""
    out: dict[str, Any] = {}
    for key, pat in _PATTERNS:
        m = pat.search(message)
        if m is None:
            continue
        if key == "master":
            out["master"], out["epoch"] = m.group(1), int(m.group(2))
        elif key in ("worker",):
            out[key] = m.group(1)
        else:
            out.setdefault(key, int(m.group(1)))
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, msg, the ids, and the
    exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": msg,
        }
        found = ids_in(msg)
        for key in ID_FIELDS:
            value = getattr(record, key, None)
            if value is None:
                value = found.get(key)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Install the daemon handler once; ``fmt`` "text" or "json" (None: DAGKEEPER_LOG_FORMAT)."""
    root = logging.getLogger()
    if any(getattr(h, "_dagkeeper", False) for h in root.handlers):
        return
    fmt = (fmt or os.environ.get("DAGKEEPER_LOG_FORMAT") or "text").lower()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(FORMAT))
    handler._dagkeeper = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("kazoo").setLevel(logging.WARNING)
