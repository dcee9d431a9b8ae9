"""The ECHO type's spec validator: pure, imports nothing from dagkeeper's worker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def validate(task: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    if not isinstance(task.get("message"), str) or not task["message"]:
        out.append(("message", "is required"))
    times = task.get("times", 1)
    if not isinstance(times, int) or not 1 <= times <= 10:
        out.append(("times", "must be an integer from 1 to 10"))
    return out
