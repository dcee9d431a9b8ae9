"""Used by runner processes (stdlib only): print a value as a ``${setValue(k=v)}`` output line, and
defang output markers inside data (HTTP bodies, SQL rows) so data can never set an output."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

MARK = "${setValue("


def defang(text: str) -> str:
    return text.replace(MARK, "$ {setValue(")


def emit_output(key: str, value: object) -> None:
    """One output; newlines and the closing mark cannot be carried, so they are replaced."""
    text = "" if value is None else str(value)
    text = text.replace("\r", " ").replace("\n", " ").replace(")}", ") }")
    sys.stdout.write(f"${{setValue({key}={text})}}\n")
    sys.stdout.flush()


# A SQL task with ``send_email``: its first rows travel to the worker as one output under this
# key (base64 of JSON, so no data can break the output line); the worker takes it out of the
# outputs and writes the SQL_RESULT alert (worker/sql_mail.py).
RESULT_KEY = "_dagkeeper_result"
MAX_CELL = 500  # characters of one value in the mail


def pack_result(cols: list[str], rows: list[Any], limit: int) -> str:
    cells = [
        [v if v is None or isinstance(v, int | float) else str(v)[:MAX_CELL] for v in r]
        for r in rows[:limit]
    ]
    doc = {"columns": [str(c) for c in cols], "rows": cells, "truncated": len(rows) > limit}
    return base64.b64encode(json.dumps(doc).encode()).decode()
