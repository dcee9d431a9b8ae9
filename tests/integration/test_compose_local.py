"""docker-compose.yml run without Docker: the migrate one-shot, both masters, both workers and the
API as local processes with the commands and environments the file gives them (only host names,
ports, the znode root and the data dirs rewritten to this test's servers), started in the order
compose starts them; the diamond demo runs across both worker groups and every daemon's
container health check passes."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from containers import (
    DAEMON_SERVICES,
    ENV_EXAMPLE,
    REPO,
    env_files,
    load_compose,
    read_env_file,
    service_environment,
)
from zk_acl import ZK_PASSWORD

from core.states import WORKFLOW_TERMINAL, TaskState, WorkflowState
from ops.demo import DEMO_SPEC, order_check
from ops.localserver import free_ports, tail, wait_for

DAGKEEPER = Path(sys.executable).parent / "dagkeeper"
# the variables naming where things are: the only ones rewritten for local processes
PLACES = (
    "DAGKEEPER_DB__URL",
    "DAGKEEPER_ZK__HOSTS",
    "DAGKEEPER_ZK__ROOT",
    "DAGKEEPER_DATA_DIR",
    "DAGKEEPER_API__HOST",
    "DAGKEEPER_API__PORT",
    "DAGKEEPER_METRICS__PORT",
    "DAGKEEPER_LOGS__SERVER_PORT",
    "DAGKEEPER_ALERTS__BASE_URL",
)


class Daemon:
    """One compose service run as a local process (its own session, its log in a file)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], base: Path) -> None:
        self.name, self.command, self.env = name, command, env
        self.log = base / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def role(self) -> str:
        return self.command[0]

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(DAGKEEPER), *self.command],
                env=self.env,
                cwd=self.env["DAGKEEPER_DATA_DIR"],  # the image's WORKDIR is its data dir
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The service's compose health check (``python -m ops.healthcheck <role>``)."""
        return subprocess.run(
            [sys.executable, "-m", "ops.healthcheck", self.role],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def stop(self, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def local_env(
    service: dict[str, Any], base: Path, db_url: str, zk_hosts: str, zk_root: str, ports: Any
) -> dict[str, str]:
    """The service's environment as compose hands it to its container (env file, then
    ``environment``), with the places rewritten to this test's servers and free ports."""
    compose_env: dict[str, str] = {}
    for path in env_files(service):  # the committed example stands in for the user's copy
        compose_env |= read_env_file(ENV_EXAMPLE if path.name == "dagkeeper.env" else path)
    compose_env |= service_environment(service)
    compose_env = {k: v for k, v in compose_env.items() if k.startswith("DAGKEEPER_")}
    data = base / service["_name"]
    data.mkdir()
    places = {
        "DAGKEEPER_DB__URL": db_url,
        "DAGKEEPER_ZK__HOSTS": zk_hosts,
        "DAGKEEPER_ZK__ROOT": zk_root,
        "DAGKEEPER_DATA_DIR": str(data),
        "DAGKEEPER_API__HOST": "127.0.0.1",
        "DAGKEEPER_API__PORT": str(ports["api"]),
        "DAGKEEPER_METRICS__PORT": str(next(ports["free"])),
        "DAGKEEPER_LOGS__SERVER_PORT": str(next(ports["free"])),
        "DAGKEEPER_ALERTS__BASE_URL": f"http://127.0.0.1:{ports['api']}",
    }
    env = {k: places.get(k, v) for k, v in compose_env.items()}
    env["DAGKEEPER_ZK__AUTH_PASSWORD"] = ZK_PASSWORD  # the suite's ACL credential (zk_acl.py)
    assert set(env) == set(compose_env), "only values are rewritten, no variable is added"
    changed = {k for k in env if env[k] != compose_env[k]}
    assert changed <= {*PLACES, "DAGKEEPER_ZK__AUTH_PASSWORD"}, changed
    outside = {k: v for k, v in os.environ.items() if not k.startswith("DAGKEEPER_")}
    return outside | {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)} | env


@pytest.fixture
def daemons(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Daemon]]:
    """Every daemon the test starts; all stopped at the end, their logs shown on failure."""
    started: list[Daemon] = []
    failed = request.session.testsfailed
    yield started
    for d in started:
        d.stop(timeout=20)
    if request.session.testsfailed > failed:
        for d in started:
            print(f"--- {d.name} ({' '.join(d.command)}): {d.log}\n{tail(d.log, 40)}")


def test_the_compose_services_run_the_diamond_as_local_processes(
    db_url: str,
    zk_hosts: str,
    zk_root: str,
    tmp_path: Path,
    daemons: list[Daemon],
    timeout_scale: float,
) -> None:
    t = 30 * timeout_scale
    services = load_compose()["services"]
    api_port, *spare = free_ports(1 + 2 * (1 + len(DAEMON_SERVICES)))
    ports = {"api": api_port, "free": iter(spare)}

    def daemon(name: str) -> Daemon:
        service = services[name] | {"_name": name}
        env = local_env(service, tmp_path, db_url, zk_hosts, zk_root, ports)
        d = Daemon(name, list(service["command"]), env, tmp_path)
        daemons.append(d)
        return d

    # compose: migrate runs once postgres is healthy; everything else waits for its exit 0
    migrate = daemon("migrate")
    migrate.start()
    assert migrate.proc is not None
    assert migrate.proc.wait(60 * timeout_scale) == 0, tail(migrate.log)
    assert "schema is at the newest revision" in migrate.log.read_text()

    by_name = {name: daemon(name) for name in DAEMON_SERVICES}
    for d in by_name.values():
        d.start()

    def healthy(d: Daemon) -> bool:
        return d.healthcheck().returncode == 0

    for d in by_name.values():  # compose's health checks, retried while the daemon starts
        wait_for(functools.partial(healthy, d), t, 0.3, f"{d.name} healthy")
        assert d.proc is not None and d.proc.poll() is None, f"{d.name} exited"

    token = by_name["api"].env["DAGKEEPER_API__TOKEN"]
    base = f"http://127.0.0.1:{api_port}"
    assert httpx.get(f"{base}/ui/", follow_redirects=True).status_code == 200  # the web UI
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{base}/api/v1", headers=headers, timeout=10) as api:
        assert api.get("/me").json()["bootstrap"] is True
        # the demo's diamond, its task c in the group of the second worker
        spec = DEMO_SPEC | {"name": "compose-diamond"}
        spec["tasks"] = [task | {"worker_group": "etl"} if task["name"] == "c" else task
                         for task in DEMO_SPEC["tasks"]]  # fmt: skip
        wid = api.post("/workflows", json=spec).raise_for_status().json()["id"]
        iid = api.post(f"/workflows/{wid}/runs", json={}).raise_for_status().json()["instance_id"]

        def ended() -> dict[str, Any] | None:
            inst: dict[str, Any] = api.get(f"/instances/{iid}").json()
            return inst if inst["state"] in WORKFLOW_TERMINAL else None

        inst = wait_for(ended, t, 0.2, f"instance {iid} to end")
        tasks = {x["name"]: x for x in api.get(f"/instances/{iid}/tasks").json()["items"]}
    assert inst is not None and inst["state"] == WorkflowState.SUCCESS, inst
    assert order_check(tasks).startswith("OK"), order_check(tasks)
    host = socket.gethostname()
    worker_ids = {
        group: f"{host}-{by_name[name].proc.pid}"  # type: ignore[union-attr]
        for group, name in (("default", "worker-default"), ("etl", "worker-etl"))
    }
    ran_on = {name: x["worker_id"] for name, x in tasks.items()}
    assert ran_on == {
        "a": worker_ids["default"],
        "b": worker_ids["default"],
        "c": worker_ids["etl"],
        "d": worker_ids["default"],
    }
    assert all(x["state"] == TaskState.SUCCESS and x["attempt"] == 1 for x in tasks.values()), tasks
    for d in by_name.values():  # still healthy after the run
        check = d.healthcheck()
        assert check.returncode == 0, f"{d.name}: {check.stderr}"
    started = time.monotonic()
    for d in by_name.values():
        d.stop(timeout=20)
        assert d.proc is not None and d.proc.returncode == 0, f"{d.name}: {tail(d.log)}"
    assert time.monotonic() - started < 20
