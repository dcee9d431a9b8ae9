"""PYTHON tasks: the script goes into a file in the attempt's working directory and runs under the
task's ``interpreter`` (else the worker's ``python`` setting) in its own process group."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.task_types import TaskType, current_context, register

SCRIPT_NAME = "task.py"


def default_interpreter() -> str:
    """The worker setting ``worker.python`` (DAGKEEPER_WORKER__PYTHON), else this Python."""
    ctx = current_context()
    configured = getattr(ctx.settings.worker, "python", "") if ctx is not None else ""
    return configured or sys.executable


@register
class PythonTask(TaskType):
    """``spec["script"]`` is Python source; parameters arrive as environment variables
    (``os.environ["name"]``) and ``print("${setValue(k=v)}")`` sets an output."""

    name = "PYTHON"

    def prepare(self, spec: Mapping[str, Any], env: dict[str, str], workdir: Path) -> list[str]:
        script = spec.get("script")
        if not isinstance(script, str) or not script.strip():
            raise ValueError("a PYTHON task needs a non-empty 'script'")
        interpreter = spec.get("interpreter") or default_interpreter()
        if not isinstance(interpreter, str):
            raise ValueError("'interpreter' must be a path or a command name")
        resolved = shutil.which(interpreter)
        if resolved is None:
            raise ValueError(f"interpreter {interpreter!r} not found or not executable")
        path = workdir / SCRIPT_NAME
        path.write_text(script if script.endswith("\n") else script + "\n", encoding="utf-8")
        env.setdefault("PYTHONUNBUFFERED", "1")  # output reaches the log as it is printed
        env.setdefault("PYTHONIOENCODING", "utf-8")
        return [resolved, str(path)]
