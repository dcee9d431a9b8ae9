"""ECHO: a third-party task type that prints its ``message`` a number of ``times`` and sets the
output ``echoed``; registered through the ``dagkeeper.task_types`` entry point."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.task_types import TaskType

PROGRAM = (
    "import os, sys\n"
    "for _ in range(int(sys.argv[2])):\n    print(sys.argv[1])\n"
    "print('${setValue(echoed=' + sys.argv[1] + ')}')\n"
    "print('plugin env', os.environ.get('greeting', '-'))\n"
)


class EchoTask(TaskType):
    name = "ECHO"

    def prepare(self, spec: Mapping[str, Any], env: dict[str, str], workdir: Path) -> list[str]:
        return [sys.executable, "-c", PROGRAM, str(spec["message"]), str(spec.get("times", 1))]
