"""docker-compose.yml, the Dockerfile and the env files checked without a Docker engine: the
services, images, commands, dependencies, health checks and restart policies, every DAGKEEPER_*
variable against the settings the daemons read, and the README's compose section against the
file. ``docker compose config`` runs too where a Docker CLI with the compose plugin exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from containers import (
    COMPOSE_FILE,
    DAEMON_SERVICES,
    ENSEMBLE_ENV,
    ENV_EXAMPLE,
    PG_IMAGE,
    REPO,
    ZK_IMAGE,
    env_files,
    load_compose,
    read_env_file,
    service_environment,
)
from pydantic import BaseModel

from core.settings import Settings
from ops.cli import build_parser

ZK_NODES = ("zk1", "zk2", "zk3")
SERVICES = {"postgres", "zookeeper", *ZK_NODES, "migrate", *DAEMON_SERVICES}
LONG_RUNNING = SERVICES - {"migrate"}
SECRETS = {
    "DAGKEEPER_DB__PASSWORD",
    "DAGKEEPER_API__TOKEN",
    "DAGKEEPER_SECRET_KEY",
    "DAGKEEPER_ZK__AUTH_PASSWORD",
    "DAGKEEPER_LOGS__TOKEN",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def setting_fields(model: type[BaseModel] = Settings, prefix: str = "DAGKEEPER_") -> dict[str, Any]:
    """Every environment variable the settings read (nested models joined with ``__``) -> its
    pydantic field."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= setting_fields(ann, f"{prefix}{name.upper()}__")
        else:
            out[f"{prefix}{name.upper()}"] = field
    return out


def daemon_env(service: dict[str, Any], variables: dict[str, str] | None = None) -> dict[str, str]:
    """What a daemon container's process sees of DAGKEEPER_*: its env files (the committed
    example standing in for the user's copy), then its environment."""
    env: dict[str, str] = {}
    for path in env_files(service):
        env |= read_env_file(ENV_EXAMPLE if path.name == "dagkeeper.env" else path)
    return env | service_environment(service, variables)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    import os

    for key in list(os.environ):
        if key.startswith("DAGKEEPER_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_services_and_images(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES
    assert services["postgres"]["image"] == PG_IMAGE
    for name in ("zookeeper", *ZK_NODES):
        assert services[name]["image"] == ZK_IMAGE, name
    for name in ("migrate", *DAEMON_SERVICES):
        assert services[name]["image"] == "dagkeeper:local", name
        assert services[name]["build"] == ".", name
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def test_commands_are_console_script_subcommands(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(sub.choices, dict)
    roles = {}
    for name in ("migrate", *DAEMON_SERVICES):
        command = services[name]["command"]
        assert command[0] in sub.choices, f"{name}: {command[0]!r} is no dagkeeper sub-command"
        assert parser.parse_args(command).command == command[0]
        roles[name] = command[0]
    assert roles == {
        "migrate": "migrate",
        "master-1": "master",
        "master-2": "master",
        "worker-default": "worker",
        "worker-etl": "worker",
        "api": "api",
    }


def test_every_dagkeeper_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    fields = setting_fields()
    assert "DAGKEEPER_DB__URL" in fields and "DAGKEEPER_WORKER__GROUPS" in fields  # the walk
    sources = {f"{name} environment": service_environment(s) for name, s in services.items()}
    sources |= {str(p): read_env_file(p) for p in (ENV_EXAMPLE, ENSEMBLE_ENV)}
    seen = 0
    for where, env in sources.items():
        for key in env:
            if key.startswith("DAGKEEPER_"):
                seen += 1
                assert key in fields, f"{where}: {key} is not a setting of core/settings.py"
    assert seen > 30


def test_each_daemon_environment_validates(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("migrate", *DAEMON_SERVICES):
        s = settings_from(daemon_env(services[name]), monkeypatch)
        assert s.db.url == "postgresql+psycopg2://dagkeeper@postgres:5432/dagkeeper", name
        assert not s.db.managed and not s.zk.managed, f"{name}: PostgreSQL/ZooKeeper are services"
        assert s.zk.hosts == "zookeeper:2181", name
        assert s.zk.digest_auth() is not None, f"{name}: the ZooKeeper namespace needs its ACL"
        assert s.db.connect_args()["password"] == "change-me-db-password", name
        assert s.api.token and s.secret_key and s.logs.token, name
        assert s.data_dir == "/var/lib/dagkeeper", name
    groups = {
        n: settings_from(daemon_env(services[n]), monkeypatch).worker.groups
        for n in ("worker-default", "worker-etl")
    }
    assert groups == {"worker-default": ["default"], "worker-etl": ["etl"]}
    api = settings_from(daemon_env(services["api"]), monkeypatch)
    assert (api.api.host, api.api.port) == ("0.0.0.0", 12345)
    assert services["api"]["ports"] == [f"{api.api.port}:{api.api.port}"]


def test_daemons_have_fixed_health_ports(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in DAEMON_SERVICES:
        if services[name]["command"][0] in ("master", "worker"):
            s = settings_from(daemon_env(services[name]), monkeypatch)
            assert s.metrics.enabled and s.metrics.port > 0, f"{name}: metrics port must be fixed"
            if services[name]["command"][0] == "worker":
                assert s.logs.server_port > 0, f"{name}: the log server's port must be fixed"
                grace = services[name]["stop_grace_period"]
                assert float(grace.rstrip("s")) > s.worker.drain_deadline_s, name


def test_secrets_only_in_the_env_file(services: dict[str, dict[str, Any]]) -> None:
    for name, s in services.items():
        assert not SECRETS & set(service_environment(s)), f"{name}: a secret in the compose file"
    example = read_env_file(ENV_EXAMPLE)
    assert set(example) >= SECRETS
    assert example["POSTGRES_PASSWORD"] == example["DAGKEEPER_DB__PASSWORD"]
    for key, value in example.items():
        assert value.startswith("change-me"), f"{ENV_EXAMPLE.name}: {key} is no placeholder"
    for name in ("postgres", "migrate", *DAEMON_SERVICES):
        assert env_files(services[name]) == [ENV_EXAMPLE.with_suffix("")], name
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", "deploy/compose/dagkeeper.env"]
    )
    assert ignored.returncode == 0, "deploy/compose/dagkeeper.env must be git-ignored"


def test_migrate_runs_once_before_every_daemon(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in DAEMON_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["zookeeper"]["condition"] == "service_healthy", name
        for node in ZK_NODES:  # waited for when the ensemble profile runs them
            assert deps[node] == {"condition": "service_healthy", "required": False}, name


def test_health_checks_and_restart_policies(services: dict[str, dict[str, Any]]) -> None:
    for name in LONG_RUNNING:
        s = services[name]
        assert s["restart"] == "unless-stopped", name
        check = s["healthcheck"]
        assert not check.get("disable") and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check["interval"] and check["retries"] >= 3, name
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    for name in ("zookeeper", *ZK_NODES):
        assert services[name]["healthcheck"]["test"] == ["CMD", "zkServer.sh", "status"], name
    for name in DAEMON_SERVICES:
        role = services[name]["command"][0]
        test = ["CMD", "python", "-m", "ops.healthcheck", role]
        assert services[name]["healthcheck"]["test"] == test, name


def test_ensemble_profile(services: dict[str, dict[str, Any]]) -> None:
    servers = []
    for i, node in enumerate(ZK_NODES, start=1):
        s = services[node]
        assert s["profiles"] == ["ensemble"], node
        env = service_environment(s)
        assert env["ZOO_MY_ID"] == str(i), node
        servers.append(env["ZOO_SERVERS"])
    assert len(set(servers)) == 1, "every node names the same ensemble"
    members = dict(re.findall(r"server\.(\d)=(zk\d):2888:3888;(?:\d+)", servers[0]))
    assert members == {"1": "zk1", "2": "zk2", "3": "zk3"}
    client_port = re.search(r";(\d+)", servers[0]).group(1)  # type: ignore[union-attr]
    for name in SERVICES - {*ZK_NODES}:
        assert "profiles" not in services[name], f"{name} runs without a profile"
    ensemble = read_env_file(ENSEMBLE_ENV)
    assert ensemble["COMPOSE_PROFILES"] == "ensemble"
    hosts = ",".join(f"{n}:{client_port}" for n in ZK_NODES)
    assert ensemble["ZK_HOSTS"] == hosts
    for name in ("migrate", *DAEMON_SERVICES):
        env = service_environment(services[name], ensemble)
        assert env["DAGKEEPER_ZK__HOSTS"] == hosts, name


def test_dockerfile_and_dockerignore() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    assert "FROM python:3.11-slim" in lines
    assert any(ln.startswith("RUN pip install .") for ln in lines)
    assert "USER dagkeeper" in lines
    assert 'ENTRYPOINT ["dagkeeper"]' in lines
    assert 'CMD python -m ops.healthcheck "$HEALTHCHECK_ROLE"' in lines
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    # ops.migrate finds alembic.ini and alembic/ beside the source it runs from
    assert "COPY alembic.ini" in text or "alembic.ini ./" in text
    assert "COPY alembic ./alembic" in lines and "ENV PYTHONPATH=/opt/dagkeeper \\" in lines
    pyproject = (REPO / "pyproject.toml").read_text()
    include = re.search(r"include = \[([^\]]*)\]", pyproject).group(1)  # type: ignore[union-attr]
    for package in re.findall(r'"(\w+)\*"', include):
        assert f"COPY {package} ./{package}" in lines, f"the image lacks the package {package}"
    ignore = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for entry in (".venv", "node_modules", "tests", "docs", ".dagkeeper", "ui"):
        assert entry in ignore, entry
    assert not any(e.startswith("api") for e in ignore), "the built UI in api/static/ui stays"
    assert (REPO / "api/static/ui/index.html").is_file()


def _readme_section() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"^## Multi-container: docker compose\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, "the README has no 'Multi-container: docker compose' section"
    return re.sub(r"[ \t]*\n[ \t]*(?!\|)", " ", m.group(1))  # lines joined, table rows kept


def test_readme_documents_the_compose_file(services: dict[str, dict[str, Any]]) -> None:
    section = _readme_section()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.M)
    assert set(rows) == set(services) and len(rows) == len(services), "the README's services"
    assert "cp deploy/compose/dagkeeper.env.example deploy/compose/dagkeeper.env" in section
    assert "docker compose up -d" in section
    assert "docker compose --profile ensemble up" in section
    assert "docker compose --env-file deploy/compose/ensemble.env up -d" in section
    for scaled in re.findall(r"--scale ([a-z0-9-]+)=\d+", section):
        assert scaled in services and services[scaled]["command"] == ["worker"], scaled
    assert re.search(r"--scale worker-", section)
    port = services["api"]["ports"][0].split(":")[0]
    assert f"http://localhost:{port}/ui/" in section
    for path in re.findall(r"(deploy/compose/[\w.]+)", section):
        assert (REPO / path).exists() or path == "deploy/compose/dagkeeper.env", path


def test_docker_compose_config(tmp_path: Path) -> None:
    """``docker compose config -q`` accepts the file (with the example as the env file)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine: docker compose config not run")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        reason = (version.stderr or version.stdout).strip().splitlines()[:1]
        print(f"docker compose is not available: {reason}")
        pytest.skip(f"docker compose is not available here ({'; '.join(reason)})")
    shutil.copy(COMPOSE_FILE, tmp_path / COMPOSE_FILE.name)
    (tmp_path / "deploy/compose").mkdir(parents=True)
    shutil.copy(ENV_EXAMPLE, tmp_path / "deploy/compose/dagkeeper.env")
    shutil.copy(ENSEMBLE_ENV, tmp_path / "deploy/compose/ensemble.env")
    for extra in ([], ["--profile", "ensemble"]):
        run = subprocess.run(
            [docker, "compose", *extra, "config", "-q"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
