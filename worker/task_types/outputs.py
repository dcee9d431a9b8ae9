"""Used by runner processes (stdlib only): print a value as a ``${setValue(k=v)}`` output line, and
defang output markers inside data (HTTP bodies, SQL rows) so data can never set an output."""

from __future__ import annotations

import sys

MARK = "${setValue("


def defang(text: str) -> str:
    return text.replace(MARK, "$ {setValue(")


def emit_output(key: str, value: object) -> None:
    """One output; newlines and the closing mark cannot be carried, so they are replaced."""
    text = "" if value is None else str(value)
    text = text.replace("\r", " ").replace("\n", " ").replace(")}", ") }")
    sys.stdout.write(f"${{setValue({key}={text})}}\n")
    sys.stdout.flush()
