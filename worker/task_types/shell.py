"""SHELL tasks: the command goes into a script file in the attempt's working directory and runs as
``bash <file>`` in its own process group."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.task_types import TaskType, register

SCRIPT_NAME = "task.sh"


@register
class ShellTask(TaskType):
    """``spec["command"]`` is a bash script; parameters arrive as environment variables, so
    ``${name}`` in the command expands with bash's own rules."""

    name = "SHELL"

    def prepare(self, spec: Mapping[str, Any], env: dict[str, str], workdir: Path) -> list[str]:
        command = spec.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ValueError("a SHELL task needs a non-empty 'command'")
        script = workdir / SCRIPT_NAME
        text = command if command.endswith("\n") else command + "\n"
        script.write_text(text, encoding="utf-8")
        return ["bash", str(script)]
