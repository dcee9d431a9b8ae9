"""The test servers' second back end (DAGKEEPER_TEST_SERVERS=containers): PostgreSQL and ZooKeeper
started with testcontainers from the compose file's images (tests/containers.py), with the part of
the local servers' interface (ops/localserver.py) the tests use; and the choice of back end."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import psycopg2
import pytest
from psycopg2 import sql

from ops.localserver import wait_for

log = logging.getLogger(__name__)

BACKEND_ENV = "DAGKEEPER_TEST_SERVERS"
BACKENDS = ("local", "containers")
PG_PORT, ZK_PORT = 5432, 2181
PG_ROLE = "postgres"  # trust auth, as with the local server: URLs carry no password
# the local servers' settings (fsync off, 300 connections; tickTime 500 ms, sessions up to 60 s)
PG_COMMAND = ["postgres", "-c", "fsync=off", "-c", "full_page_writes=off"]
PG_COMMAND += ["-c", "max_connections=300"]
ZK_ENV = {
    "ZOO_TICK_TIME": "500",
    "ZOO_MAX_CLIENT_CNXNS": "0",
    "ZOO_ADMINSERVER_ENABLED": "false",
    "ZOO_4LW_COMMANDS_WHITELIST": "ruok,srvr,stat,mntr",
    "ZOO_CFG_EXTRA": "maxSessionTimeout=60000 forceSync=no",
}  # digest ACLs (tests/zk_acl.py) need no server configuration


def choose_backend(env: Mapping[str, str]) -> str:
    """``local`` (unset, empty or ``local``) or ``containers``; anything else is refused."""
    raw = env.get(BACKEND_ENV, "")
    value = raw.strip().lower() or "local"
    if value not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={raw!r}: expected 'local' (the default) or 'containers'")
    return value


def engine_problem() -> str | None:
    """Why containers cannot be started here (testcontainers missing, no Docker engine answers);
    None when they can."""
    try:
        import docker
        import testcontainers  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (the test extra: .venv/bin/pip install testcontainers)"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker engine is reachable ({exc})"
    return None


def check_backend(env: Mapping[str, str], probe: Callable[[], str | None] = engine_problem) -> str:
    """The back end the session's servers use. Asking for containers where they cannot run is an
    error (no silent fall-back to local processes): ValueError with what to do."""
    backend = choose_backend(env)
    if backend == "containers":
        problem = probe()
        if problem:
            raise ValueError(
                f"{BACKEND_ENV}=containers: {problem}; start Docker (or point DOCKER_HOST at an"
                f" engine), or unset {BACKEND_ENV} to run the servers as local processes"
            )
    return backend


def needs_local(action: str) -> NoReturn:
    """Skip the calling test (with its reason printed): it acts on a local server process."""
    pytest.skip(
        f"{action} needs a local server process; the containers back end ({BACKEND_ENV}="
        "containers) does not stop, kill or freeze its containers: run it with the local one"
    )


class _Container:
    """One container of ``image``; its output goes to ``log_path`` when it is removed."""

    name = "server"
    container_port = 0

    def __init__(self, image: str, log_path: Path) -> None:
        self.image = image
        self.log_path = log_path
        self.host = ""
        self.port = 0  # the container port's port on the engine's host
        self._c: Any = None

    def _container(self) -> Any:
        from testcontainers.core.container import DockerContainer

        return DockerContainer(self.image).with_exposed_ports(self.container_port)

    def ping(self) -> bool:
        raise NotImplementedError

    def launch(self, timeout: float = 60.0) -> None:
        """Pull if needed, start, and wait (``timeout`` after the start) until it serves."""
        log.info("%s: starting a container of %s", self.name, self.image)
        self._c = self._container().start()
        self.host = str(self._c.get_container_host_ip())
        self.port = int(self._c.get_exposed_port(self.container_port))
        what = f"{self.name} container ({self.image}) on {self.host}:{self.port}"
        wait_for(self.ping, timeout, 0.2, what)
        log.info("%s: %s serves", self.name, what)

    def remove(self) -> None:
        """Write its output to ``log_path`` and remove it (with its volumes)."""
        if self._c is None:
            return
        try:
            out, err = self._c.get_logs()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.write_bytes(out + err)
        except Exception as exc:  # the logs are a courtesy; removal must still happen
            log.warning("%s: cannot read the container's logs: %s", self.name, exc)
        self._c.stop()
        self._c = None

    @property
    def running(self) -> bool:
        if self._c is None:
            return False
        try:
            self._c.reload()  # docker-py's status is the one of the last inspection
            return bool(self._c.status == "running")
        except Exception:
            return False

    # what the local servers can do and containers here do not: the tests doing it skip
    @property
    def pid(self) -> int | None:
        needs_local(f"the pid of {self.name}")

    def start(self, timeout: float = 60.0, wait: bool = True) -> None:
        if not self.running:
            needs_local(f"restarting {self.name}")

    def stop(self, timeout: float = 20.0) -> None:
        needs_local(f"stopping {self.name}")

    def kill9(self) -> None:
        needs_local(f"kill -9 of {self.name}")

    def signal_group(self, sig: int) -> None:
        needs_local(f"signal {sig} to {self.name}")


class ContainerPostgres(_Container):
    """PostgreSQL in a container: the ``postgres`` role with trust auth, like the local one."""

    name = "postgresql"
    container_port = PG_PORT

    def _container(self) -> Any:
        c = super()._container().with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
        return c.with_env("POSTGRES_USER", PG_ROLE).with_command(PG_COMMAND)

    def _connect(self, dbname: str = "postgres", timeout: int = 10) -> Any:
        return psycopg2.connect(
            host=self.host, port=self.port, user=PG_ROLE, dbname=dbname, connect_timeout=timeout
        )

    def ping(self) -> bool:
        try:
            self._connect(timeout=2).close()
        except psycopg2.OperationalError:
            return False  # also while the image's entrypoint runs its init-only server
        return True

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg2://{PG_ROLE}@{self.host}:{self.port}/{dbname}"

    def execute(self, stmt: str | sql.Composable, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement in autocommit mode on ``postgres``; return its rows (or [])."""
        conn = self._connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(stmt, params or None)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def create_database(self, name: str, template: str = "", exist_ok: bool = False) -> str:
        """CREATE DATABASE (optionally as a copy of ``template``); returns its SQLAlchemy URL."""
        if exist_ok and self.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]):
            return self.url_for(name)
        tpl = sql.Identifier(template or "template1")
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), tpl)
        if int(self.execute("SHOW server_version_num")[0][0]) >= 150000:
            stmt += sql.SQL(" STRATEGY FILE_COPY")
        self.execute(stmt)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, disconnecting its clients first."""
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


class ContainerZookeeper(_Container):
    """A standalone ZooKeeper in a container (tickTime 500 ms, sessions up to 60 s)."""

    name = "zookeeper"
    container_port = ZK_PORT

    def _container(self) -> Any:
        c = super()._container()
        for key, value in ZK_ENV.items():
            c = c.with_env(key, value)
        return c

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    def four_letter(self, word: str, timeout: float = 2.0) -> str:
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(word.encode())
            return b"".join(iter(lambda: s.recv(4096), b"")).decode("utf-8", "replace")

    def mode(self) -> str | None:
        """'standalone' while serving, else None."""
        try:
            answer = self.four_letter("srvr")
        except OSError:
            return None
        modes = [ln[5:].strip() for ln in answer.splitlines() if ln.startswith("Mode:")]
        return modes[0] if modes else None

    def ping(self) -> bool:
        return self.mode() is not None
