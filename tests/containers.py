"""The container images dagkeeper runs against, in one place, and a reader of docker-compose.yml.

docker-compose.yml uses exactly these images (tests/unit/test_compose.py checks it) and the
testcontainers fixture back end starts the same ones. The reader resolves what compose would
(``${VAR:-default}`` interpolation, YAML merge keys, env files) without a Docker engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PG_IMAGE = "postgres:15"
ZK_IMAGE = "zookeeper:3.8"

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / "deploy" / "compose" / "dagkeeper.env.example"
ENSEMBLE_ENV = REPO / "deploy" / "compose" / "ensemble.env"
# the services `docker compose up` runs from the dagkeeper image, by role (the command)
DAEMON_SERVICES = ("master-1", "master-2", "worker-default", "worker-etl", "api")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose document (merge keys and anchors resolved by the YAML loader)."""
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path}: not a mapping"
    return doc


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """``${VAR}`` / ``${VAR:-default}`` as compose substitutes them (from ``variables``)."""
    return _VAR.sub(lambda m: variables.get(m.group(1)) or (m.group(2) or ""), value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not KEY=VALUE: {line!r}"
            out[key.strip()] = value.strip()
    return out


def service_environment(
    service: Mapping[str, Any], variables: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A service's ``environment`` (a mapping or KEY=VALUE list), interpolated, as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate(str(v), variables or {}) for k, v in env.items()}


def env_files(service: Mapping[str, Any]) -> list[Path]:
    """The env files a service reads (paths relative to the compose file)."""
    files = service.get("env_file") or []
    if isinstance(files, str):
        files = [files]
    return [REPO / (f if isinstance(f, str) else f["path"]) for f in files]
