"""SPARK tasks: build a ``spark-submit`` argv from the task's fields (no shell in between), run it
in its own process group (a kill reaches spark-submit and its driver JVM) and record the Spark
application id it prints as the output ``spark_application_id``."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.task_types import OutputCollector, TaskType, current_context, register
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
APP_ID_KEY = "spark_application_id"
# YARN (application_<ts>_<n>), standalone (app-<ts>-<n>) and local mode (local-<ms>) ids
_APP_ID = re.compile(
    rb"(?<![A-Za-z0-9])(application_\d+_\d+|app-\d{14}-\d{4,}|local-\d{10,})(?!\d)"
)
EVENT_DIR = "spark-events"


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

    def output_collector(self) -> OutputCollector:
        return SparkOutput()

    def prepare(self, spec: Mapping[str, Any], env: dict[str, str], workdir: Path) -> list[str]:
        argv = build_argv(find_spark_submit(spec, env), spec, task_params(spec))
        if _local_without_event_log(spec):
            # local mode prints its application id nowhere else: an event log in the attempt's
            # work dir makes spark-submit name it ("Logging events to .../local-<ms>")
            events = workdir / EVENT_DIR
            events.mkdir(parents=True, exist_ok=True)
            argv[1:1] = [
                "--conf", "spark.eventLog.enabled=true",
                "--conf", f"spark.eventLog.dir={events.resolve().as_uri()}",
            ]  # fmt: skip
        return argv


def _local_without_event_log(spec: Mapping[str, Any]) -> bool:
    conf = spec.get("conf") or {}
    return str(spec.get("master") or "").startswith("local") and not any(
        str(k).startswith("spark.eventLog.") for k in conf
    )


class SparkOutput(OutputCollector):
    """The setValue outputs, plus the first Spark application id in the output."""

    def feed(self, chunk: bytes) -> bytes:
        lines = super().feed(chunk)
        if APP_ID_KEY not in self.values and lines:
            m = _APP_ID.search(lines)
            if m:
                self.values[APP_ID_KEY] = m.group(1).decode()
        return lines
