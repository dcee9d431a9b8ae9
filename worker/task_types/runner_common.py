"""Pieces shared by the worker side of the non-shell types: ``${name}`` substitution from the
task's parameters, the request file handed to a runner process, and the runner's argv."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PARAM_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
REQUEST_FILE = "request.json"


def task_params(spec: Mapping[str, Any]) -> dict[str, str]:
    """The attempt's resolved parameters (the master puts them in ``spec["env"]``)."""
    env = spec.get("env") or {}
    return (
        {str(k): "" if v is None else str(v) for k, v in env.items()}
        if isinstance(env, dict)
        else {}
    )


def substitute(value: Any, params: Mapping[str, str], where: str) -> Any:
    """Replace ``${name}`` in every string inside ``value``; an unknown name is a ValueError."""
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in params:
                raise ValueError(f"{where}: unknown parameter ${{{name}}}")
            return params[name]

        return PARAM_RE.sub(one, value)
    if isinstance(value, list):
        return [substitute(v, params, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, params, f"{where}.{k}") for k, v in value.items()}
    return value


def write_request(workdir: Path, request: Mapping[str, Any]) -> Path:
    """The runner's input, readable by the worker's user only (it may hold parameter values)."""
    path = workdir / REQUEST_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(request, fh)
    return path


def runner_argv(module: str, request: Path, isolated: bool = False) -> list[str]:
    """``python -m <module> <request>`` with the worker's own interpreter (its site-packages)."""
    flags = ["-I"] if isolated else []
    return [sys.executable, *flags, "-u", "-m", module, str(request)]
