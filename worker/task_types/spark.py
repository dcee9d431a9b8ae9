"""SPARK tasks: build a ``spark-submit`` argv from the task's fields (no shell in between) and run
it in its own process group, so a kill reaches spark-submit and its driver JVM."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.task_types import TaskType, current_context, register
from worker.task_types.runner_common import substitute, task_params

# field -> spark-submit option, for the simple valued ones
_OPTIONS = (
    ("master", "--master"),
    ("deploy_mode", "--deploy-mode"),
    ("main_class", "--class"),
    ("driver_memory", "--driver-memory"),
    ("driver_cores", "--driver-cores"),
    ("executor_memory", "--executor-memory"),
    ("executor_cores", "--executor-cores"),
    ("num_executors", "--num-executors"),
    ("queue", "--queue"),
)
_LISTS = (("py_files", "--py-files"), ("jars", "--jars"), ("files", "--files"))


def find_spark_submit(spec: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The task's ``spark_submit``, else the worker's setting, else ``spark-submit`` on PATH,
    else ``$SPARK_HOME/bin/spark-submit``."""
    ctx = current_context()
    configured = spec.get("spark_submit") or (ctx.settings.worker.spark_submit if ctx else "")
    if configured:
        found = shutil.which(str(configured), path=env.get("PATH"))
        if found is None:
            raise ValueError(f"spark-submit {configured!r} not found or not executable")
        return found
    found = shutil.which("spark-submit", path=env.get("PATH"))
    if found:
        return found
    home = env.get("SPARK_HOME")
    if home and os.access(Path(home) / "bin" / "spark-submit", os.X_OK):
        return str(Path(home) / "bin" / "spark-submit")
    raise ValueError("spark-submit not found: set worker.spark_submit, PATH or SPARK_HOME")


def build_argv(spark_submit: str, spec: Mapping[str, Any], params: Mapping[str, str]) -> list[str]:
    """The spark-submit command line; ``${name}`` in any value is replaced by the parameter."""
    used = [f for f, _ in _OPTIONS + _LISTS] + ["app_name", "conf", "app", "args"]
    s = {f: substitute(spec[f], dict(params), f) for f in used if spec.get(f) is not None}
    s.setdefault("app_name", spec.get("name"))
    argv = [spark_submit]
    for fld, opt in _OPTIONS:
        if s.get(fld) is not None:
            argv += [opt, str(s[fld])]
    argv += ["--name", str(s.get("app_name") or "dagkeeper")]
    for fld, opt in _LISTS:
        if s.get(fld):
            argv += [opt, ",".join(str(x) for x in s[fld])]
    for k, v in (s.get("conf") or {}).items():
        argv += ["--conf", f"{k}={v}"]
    app = s.get("app")
    if not isinstance(app, str) or not app.strip():
        raise ValueError("a SPARK task needs an 'app' (a jar or a .py file)")
    return [*argv, app, *(str(a) for a in s.get("args") or [])]


@register
class SparkTask(TaskType):
    """Fields: ``app``, ``main_class`` (jar apps), ``args``, ``conf``, ``master``,
    ``deploy_mode``, ``driver_memory``/``driver_cores``, ``executor_memory``/``executor_cores``,
    ``num_executors``, ``queue``, ``py_files``, ``jars``, ``files``, ``app_name``."""

    name = "SPARK"

    def prepare(self, spec: Mapping[str, Any], env: dict[str, str], workdir: Path) -> list[str]:
        return build_argv(find_spark_submit(spec, env), spec, task_params(spec))
