"""HTTP tasks: the worker resolves ``${name}`` parameters into the request and hands it to a
runner process (``http_run``) in its own process group, so a kill aborts the request at once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.task_types import TaskType, current_context, register
from worker.task_types.runner_common import runner_argv, substitute, task_params, write_request

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_BODY = 65536


@register
class HttpTask(TaskType):
    """Fields: ``url``, ``method`` (GET), ``headers``, ``body`` (text, or JSON for an object),
    ``timeout`` (s per request), ``success_codes`` (``[200, "2xx"]``; default 2xx),
    ``expect_body_contains``, ``follow_redirects`` (true). Output ``status_code``."""

    name = "HTTP"

    def prepare(self, spec: Mapping[str, Any], env: dict[str, str], workdir: Path) -> list[str]:
        url = spec.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ValueError("an HTTP task needs a 'url'")
        params = task_params(spec)
        ctx = current_context()
        max_body = ctx.settings.worker.http_max_body_bytes if ctx else DEFAULT_MAX_BODY
        request = {
            "method": str(spec.get("method") or "GET").upper(),
            "url": substitute(url, params, "url"),
            "headers": substitute(dict(spec.get("headers") or {}), params, "headers"),
            "body": substitute(spec.get("body"), params, "body"),
            "timeout": float(spec.get("timeout") or DEFAULT_TIMEOUT_S),
            "success_codes": list(spec.get("success_codes") or ["2xx"]),
            "expect_body_contains": spec.get("expect_body_contains"),
            "follow_redirects": spec.get("follow_redirects", True) is not False,
            "max_body_bytes": max_body,
        }
        if not str(request["url"]).startswith(("http://", "https://")):
            raise ValueError("url: must start with http:// or https://")
        return runner_argv("worker.task_types.http_run", write_request(workdir, request), True)
