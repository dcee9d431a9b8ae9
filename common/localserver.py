"""Private PostgreSQL and ZooKeeper server processes on 127.0.0.1, for standalone mode and tests.

Each server lives in its own directory (data, config, logs) and its own process group.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
from psycopg2 import sql

from common.errors import ConfigError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PG_ROLE = "postgres"  # the superuser role every URL connects as (trust auth, loopback only)
PG_OS_USER = "postgres"  # the OS account that runs initdb/postgres when we are root
ZK_JAR = Path("/usr/share/java/zookeeper.jar")
# slf4j binding + log4j 1.2 so ZooKeeper logs to its file (the jar's manifest brings the rest)
ZK_LOG_JARS = (Path("/usr/share/java/slf4j-log4j12.jar"), Path("/usr/share/java/log4j-1.2.jar"))
ZK_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
T = TypeVar("T")


def apt_command(*packages: str) -> str:
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get update && {sudo}apt-get install -y {' '.join(packages)}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all sockets are held until every port is picked)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((LOOPBACK, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def wait_for(cond: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "") -> T:
    """Poll ``cond`` until it returns something truthy (returned); TimeoutError names ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what or cond!r}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200 * lines))
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


_live: set[ServerProcess] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop(timeout=5)


class ServerProcess(abc.ABC):
    """Lifecycle shared by both servers: a background process group with a log file."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, port: int, log_name: str) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.log_path = self.data_dir / log_name  # the server's own log, stdout/stderr included
        self._proc: subprocess.Popen[bytes] | None = None

    @abc.abstractmethod
    def ensure_installed(self) -> None: ...

    @abc.abstractmethod
    def init(self) -> None: ...

    @abc.abstractmethod
    def ping(self) -> bool: ...

    @abc.abstractmethod
    def _argv(self) -> list[str]: ...

    def _popen_user(self) -> dict[str, Any]:
        return {}

    # --- common lifecycle
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0, wait: bool = True) -> None:
        """Start in the background (no-op if running); with ``wait``, until it serves."""
        if self.running:
            return
        self.ensure_installed()
        self.init()
        argv = self._argv()
        log.info("%s port=%d: starting in %s", self.name, self.port, self.data_dir)
        log.debug("%s port=%d: argv %s", self.name, self.port, argv)
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                **self._popen_user(),
            )
        _live.add(self)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the server accepts requests; fail early if its process exits."""

        def ready() -> bool:
            if not self.running:
                code = self._proc.returncode if self._proc else None
                raise RuntimeError(
                    f"{self.name} on port {self.port} exited with code {code} while starting; "
                    f"tail of {self.log_path}:\n{tail(self.log_path)}"
                )
            return self.ping()

        try:
            wait_for(ready, timeout, 0.05, f"{self.name} to accept connections on {self.port}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; tail of {self.log_path}:\n{tail(self.log_path)}") from None
        log.info("%s port=%d: ready (pid %s)", self.name, self.port, self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful shutdown; SIGKILL the process group if it takes longer than ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            log.info("%s port=%d: stopping pid %d", self.name, self.port, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s port=%d: no exit after %.0fs, killing", self.name, self.port, timeout
                )
        self._kill_group(proc)
        self._proc = None
        _live.discard(self)

    def kill9(self) -> None:
        """SIGKILL the whole process group at once (a crash, as far as the data goes)."""
        proc = self._proc
        if proc is None:
            return
        log.info("%s port=%d: kill -9 pid %d", self.name, self.port, proc.pid)
        self._kill_group(proc)
        self._proc = None
        _live.discard(self)

    def pause(self) -> None:
        """SIGSTOP the process group (a frozen server: connections hang, nothing answers)."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGCONT)

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class PostgresServer(ServerProcess):
    """A private PostgreSQL cluster: ``<data_dir>/pgdata``, log ``<data_dir>/postgres.log``."""

    name = "postgresql"
    stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for clients to disconnect

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        durable: bool = True,
        max_connections: int = 300,
        bindir: Path | None = None,
    ) -> None:
        super().__init__(data_dir, port, "postgres.log")
        self.durable = durable  # False: fsync=off (survives kill -9, not an OS crash)
        self.max_connections = max_connections
        self.bindir = bindir
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "run"

    def ensure_installed(self) -> None:
        if self.bindir is None:
            self.bindir = find_pg_bindir()
        if not (self.bindir / "postgres").is_file() or not (self.bindir / "initdb").is_file():
            raise ConfigError(
                f"PostgreSQL server binaries not found in {self.bindir}; "
                f"install them with: {apt_command('postgresql')}"
            )
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(PG_OS_USER)
            except KeyError:
                raise ConfigError(
                    f"running as root needs the '{PG_OS_USER}' OS user for PostgreSQL; "
                    f"create it with: {apt_command('postgresql')}"
                ) from None

    def _popen_user(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        pw = pwd.getpwnam(PG_OS_USER)
        groups = os.getgrouplist(PG_OS_USER, pw.pw_gid)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": groups}

    def init(self) -> None:
        """Create the directory and run initdb, unless the cluster already exists."""
        self.ensure_installed()
        assert self.bindir is not None
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        as_user = self._popen_user()
        if as_user:
            for d in (self.data_dir, self.socket_dir):
                os.chown(d, as_user["user"], as_user["group"])
            probe = subprocess.run(["test", "-w", str(self.data_dir)], check=False, **as_user)
            if probe.returncode != 0:
                raise ConfigError(
                    f"the '{PG_OS_USER}' OS user cannot reach {self.data_dir} (PostgreSQL refuses "
                    f"to run as root); allow traversal of its parents (chmod o+x) or use another "
                    f"data dir"
                )
        if (self.pgdata / "PG_VERSION").exists():
            return
        argv = [str(self.bindir / "initdb"), "-D", str(self.pgdata), "--auth=trust"]
        argv += [f"--username={PG_ROLE}", "--encoding=UTF8", "--locale=C"]
        if not self.durable:
            argv.append("--no-sync")
        log.info("postgresql port=%d: initdb %s", self.port, self.pgdata)
        res = subprocess.run(argv, capture_output=True, text=True, check=False, **as_user)
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")

    def _argv(self) -> list[str]:
        assert self.bindir is not None
        sock = self.socket_dir / f".s.PGSQL.{self.port}"
        sock_dir = str(self.socket_dir) if len(str(sock)) < 100 else ""  # sun_path limit
        conf = {
            "listen_addresses": LOOPBACK,
            "unix_socket_directories": sock_dir,
            "max_connections": str(self.max_connections),
            "logging_collector": "off",
        }
        if not self.durable:
            conf.update(fsync="off", full_page_writes="off")
        argv = [str(self.bindir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)]
        for key, value in conf.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def ping(self) -> bool:
        try:
            conn = psycopg2.connect(
                host=LOOPBACK, port=self.port, user=PG_ROLE, dbname="postgres", connect_timeout=2
            )
        except psycopg2.OperationalError:
            return False
        conn.close()
        return True

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` maintenance database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg2://{PG_ROLE}@{LOOPBACK}:{self.port}/{dbname}"

    @contextlib.contextmanager
    def connect(self, dbname: str = "postgres") -> Iterator[Any]:
        """A psycopg2 connection in autocommit mode, closed on exit."""
        conn = psycopg2.connect(host=LOOPBACK, port=self.port, user=PG_ROLE, dbname=dbname)
        conn.autocommit = True
        try:
            yield conn
        finally:
            conn.close()

    def database_exists(self, name: str) -> bool:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None

    def create_database(
        self, name: str, template: str | None = None, exist_ok: bool = False
    ) -> str:
        """CREATE DATABASE (optionally from a template); returns its SQLAlchemy URL."""
        if exist_ok and self.database_exists(name):
            return self.url_for(name)
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(stmt)
        log.debug("postgresql port=%d: created database %s", self.port, name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, disconnecting its clients first."""
        stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(stmt)


def find_pg_bindir() -> Path:
    """Newest /usr/lib/postgresql/<v>/bin with a server, else the directory of ``postgres`` on PATH."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    found.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    raise ConfigError(
        f"PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); "
        f"install them with: {apt_command('postgresql')}"
    )


class ZookeeperServer(ServerProcess):
    """One ZooKeeper server: ``<data_dir>/zoo.cfg``, ``data/``, log ``zookeeper.log``."""

    name = "zookeeper"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        tick_ms: int = 500,
        *,
        server_id: int | None = None,
        peers: Sequence[tuple[int, int, int]] = (),
        durable: bool = True,
        heap_mb: int = 256,
    ) -> None:
        """``peers`` = (server id, quorum port, election port) of every ensemble member."""
        super().__init__(data_dir, port, "zookeeper.log")
        self.tick_ms = tick_ms
        self.server_id = server_id
        self.peers = list(peers)
        self.durable = durable  # False: forceSync=no (survives kill -9, not an OS crash)
        self.heap_mb = heap_mb

    @property
    def hosts(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def ensure_installed(self) -> None:
        if not ZK_JAR.is_file():
            raise ConfigError(
                f"ZooKeeper is not installed ({ZK_JAR}); run: {apt_command('zookeeper')}"
            )
        if not shutil.which("java"):
            raise ConfigError(
                f"java is needed by ZooKeeper; run: {apt_command('default-jre-headless', 'zookeeper')}"
            )

    def classpath(self) -> str:
        jars = [ZK_JAR, *(j for j in ZK_LOG_JARS if j.is_file())]
        return os.pathsep.join([str(self.data_dir), *map(str, jars)])

    def init(self) -> None:
        """Write zoo.cfg, log4j.properties and myid (every start, so port changes apply)."""
        data = self.data_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        cfg = {
            "tickTime": self.tick_ms,
            "initLimit": 10,
            "syncLimit": 5,
            "dataDir": data,
            "clientPort": self.port,
            "clientPortAddress": LOOPBACK,
            "maxSessionTimeout": max(60_000, 20 * self.tick_ms),
            "maxClientCnxns": 0,
            "admin.enableServer": "false",
            "4lw.commands.whitelist": "ruok,srvr,stat,mntr",
            "autopurge.snapRetainCount": 3,
            "autopurge.purgeInterval": 1,
        }
        if not self.durable:
            cfg["forceSync"] = "no"
        for sid, quorum_port, election_port in self.peers:
            cfg[f"server.{sid}"] = f"{LOOPBACK}:{quorum_port}:{election_port}"
        text = "".join(f"{k}={v}\n" for k, v in cfg.items())
        (self.data_dir / "zoo.cfg").write_text(text)
        if self.server_id is not None:
            (data / "myid").write_text(f"{self.server_id}\n")
        (self.data_dir / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, FILE\n"
            "log4j.appender.FILE=org.apache.log4j.FileAppender\n"
            f"log4j.appender.FILE.File={self.log_path}\n"
            "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n\n"
        )

    def _argv(self) -> list[str]:
        java = shutil.which("java") or "java"
        return [
            java,
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:-UsePerfData",
            "-Djava.net.preferIPv4Stack=true",
            "-Dzookeeper.jmx.log4j.disable=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            f"-Dzookeeper.log.dir={self.data_dir}",
            "-cp",
            self.classpath(),
            ZK_MAIN,
            str(self.data_dir / "zoo.cfg"),
        ]

    def four_letter(self, word: str, timeout: float = 2.0) -> str:
        """Send a four-letter command (ruok, srvr, stat, mntr) and return the answer."""
        with socket.create_connection((LOOPBACK, self.port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")

    def mode(self) -> str | None:
        """'standalone', 'leader' or 'follower' while serving, else None."""
        try:
            answer = self.four_letter("srvr")
        except OSError:
            return None
        for line in answer.splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def ping(self) -> bool:
        return self.mode() is not None


class ZookeeperEnsemble:
    """A ZooKeeper ensemble of ``size`` servers on 127.0.0.1, in ``<base_dir>/zk<N>``."""

    def __init__(
        self,
        base_dir: Path,
        client_ports: Sequence[int] | None = None,
        *,
        size: int = 3,
        tick_ms: int = 500,
        durable: bool = True,
    ) -> None:
        ports = free_ports(size * 3)
        clients = list(client_ports) if client_ports else ports[:size]
        if len(clients) != size:
            raise ValueError(f"need {size} client ports, got {len(clients)}")
        peers = [(i + 1, ports[size + i], ports[2 * size + i]) for i in range(size)]
        self.servers = [
            ZookeeperServer(
                Path(base_dir) / f"zk{sid}",
                clients[sid - 1],
                tick_ms,
                server_id=sid,
                peers=peers,
                durable=durable,
            )
            for sid, _, _ in peers
        ]

    @property
    def hosts(self) -> str:
        return ",".join(s.hosts for s in self.servers)

    def ensure_installed(self) -> None:
        self.servers[0].ensure_installed()

    def init(self) -> None:
        for s in self.servers:
            s.init()

    def start(self, timeout: float = 60.0) -> None:
        """Start every member, then wait until each serves (a quorum must form first)."""
        for s in self.servers:
            s.start(wait=False)
        for s in self.servers:
            s.wait_ready(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        for s in self.servers:
            s.stop(timeout)

    def leader(self) -> ZookeeperServer | None:
        return next((s for s in self.servers if s.mode() == "leader"), None)
