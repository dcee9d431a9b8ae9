"""SHELL tasks: the command goes into a script file in the attempt's working directory and runs as
``bash <file>`` in its own process group, as the OS user its project names (tenancy, see
``run_as``) or the worker's own."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from db.projects import RunAs, run_as_of_workflow
from worker.task_types import TaskType, current_context, register
from worker.task_types import run_as as tenancy

SCRIPT_NAME = "task.sh"


# A project's OS users are read at most this often per workflow (not once per task: the hot path
# of a busy worker); a change to a project's run_as_user reaches running workers this late.
PROJECT_USERS_TTL_S = 10.0
_cache_lock = threading.Lock()


def _project_users(workflow_id: int) -> RunAs | None:
    """The OS users the workflow's project grants (None without a database: no tenancy)."""
    ctx = current_context()
    if ctx is None or ctx.engine is None:
        return None
    now = time.monotonic()
    cache: dict[int, tuple[float, RunAs | None]] = ctx.memo.setdefault("project_users", {})
    with _cache_lock:
        hit = cache.get(workflow_id)
    if hit is not None and now - hit[0] < PROJECT_USERS_TTL_S:
        return hit[1]
    with ctx.engine.connect() as conn:
        users = run_as_of_workflow(conn, workflow_id)
    with _cache_lock:
        if len(cache) > 10000:
            cache.clear()
        cache[workflow_id] = (now, users)
    return users


@register
class ShellTask(TaskType):
    """``spec["command"]`` is a bash script; parameters arrive as environment variables, so
    ``${name}`` in the command expands with bash's own rules."""

    name = "SHELL"

    def prepare(self, spec: Mapping[str, Any], env: dict[str, str], workdir: Path) -> list[str]:
        command = spec.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ValueError("a SHELL task needs a non-empty 'command'")
        ctx = current_context()
        allowed = ctx.settings.worker.run_as_users if ctx is not None else []
        choice = tenancy.resolve(spec, env, allowed, _project_users)
        if choice.refusal:
            raise ValueError(choice.refusal)
        script = workdir / SCRIPT_NAME
        text = command if command.endswith("\n") else command + "\n"
        script.write_text(text, encoding="utf-8")
        argv = ["bash", str(script)]
        if choice.user is None:
            return argv
        return tenancy.switch_argv(choice.user, argv, env, workdir, [script])
