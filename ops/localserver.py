"""Private PostgreSQL and ZooKeeper server processes on 127.0.0.1, for standalone mode and tests;
each server owns one directory (data, config, log) and runs in its own process group."""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
from psycopg2 import sql

from core.errors import ConfigError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PG_ROLE = "postgres"  # the superuser role every URL connects as (trust auth, loopback only)
PG_OS_USER = "postgres"  # the OS account that runs initdb and postgres when we are root
ZK_JAR = Path("/usr/share/java/zookeeper.jar")  # its manifest Class-Path brings netty, jute...
# slf4j binding + log4j 1.2, so that ZooKeeper logs into its directory (else slf4j is a no-op)
ZK_LOG_JARS = (Path("/usr/share/java/slf4j-log4j12.jar"), Path("/usr/share/java/log4j-1.2.jar"))
ZK_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
ZK_JVM_OPTS = "-Xmx256m -XX:+UseSerialGC -XX:-UsePerfData -Djava.net.preferIPv4Stack=true"
ZK_JVM_OPTS += " -Dzookeeper.jmx.log4j.disable=true -Dlog4j.configuration=file:log4j.properties"
ZK_CFG = (  # maxClientCnxns=0: unlimited connections per client IP (all of ours are 127.0.0.1)
    "tickTime={tick}\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={port}\n"
    "clientPortAddress=127.0.0.1\nmaxSessionTimeout={max_session}\nmaxClientCnxns=0\n"
    "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr,stat,mntr\n"
    "autopurge.snapRetainCount=3\nautopurge.purgeInterval=1\n"
)
ZK_LOG4J = (
    "log4j.rootLogger=INFO, FILE\nlog4j.appender.FILE=org.apache.log4j.FileAppender\n"
    "log4j.appender.FILE.File={log}\nlog4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n"
    "log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} %-5p [%t:%C{{1}}@%L] - %m%n\n"
)
T = TypeVar("T")


def apt_command(*packages: str) -> str:
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get update && {sudo}apt-get install -y {' '.join(packages)}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (every socket is held until all are picked)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.create_server((LOOPBACK, 0))) for _ in range(n)]
        return [int(s.getsockname()[1]) for s in socks]


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
            f.seek(max(0, f.seek(0, os.SEEK_END) - 250 * lines))
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


class ServerProcess(abc.ABC):
    """Lifecycle shared by the servers: one background process group writing one log file."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, port: int, log_name: str) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.log_path = self.data_dir / log_name  # the server's log, stdout/stderr included
        self._proc: subprocess.Popen[bytes] | None = None

    @abc.abstractmethod
    def ensure_installed(self) -> None: ...

    @abc.abstractmethod
    def init(self) -> None: ...

    @abc.abstractmethod
    def ping(self) -> bool: ...

    @abc.abstractmethod
    def _argv(self) -> list[str]: ...

    def _as_user(self) -> dict[str, Any]:
        return {}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self.running else None

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
        opts: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
        opts.update(cwd=self.data_dir, start_new_session=True, **self._as_user())
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(argv, stdout=out, **opts)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the server serves; fail early (with its log's tail) if it exits."""

        def ready() -> bool:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc and self._proc.returncode
                raise RuntimeError(
                    f"{self.name} on port {self.port} exited ({code}) while starting"
                )
            return self.ping()

        try:
            wait_for(ready, timeout, 0.05, f"{self.name} to accept connections on {self.port}")
        except (RuntimeError, TimeoutError) as e:
            raise type(e)(f"{e}; tail of {self.log_path}:\n{tail(self.log_path)}") from None
        log.info("%s port=%d: ready, pid %s", self.name, self.port, self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful shutdown; SIGKILL the process group after ``timeout`` seconds."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            log.info("%s port=%d: stopping pid %d", self.name, self.port, proc.pid)
            os.killpg(proc.pid, signal.SIGCONT)  # in case it was paused with SIGSTOP
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s port=%d: still up after %.0fs", self.name, self.port, timeout)
        self._kill_group()

    def kill9(self) -> None:
        """SIGKILL the whole process group at once (a crash, as far as the data goes)."""
        if self._proc is not None:
            log.info("%s port=%d: kill -9 pid %d", self.name, self.port, self._proc.pid)
        self._kill_group()

    def signal_group(self, sig: int) -> None:
        """Signal the process group, e.g. SIGSTOP/SIGCONT to freeze and thaw the server."""
        if self._proc is not None:
            os.killpg(self._proc.pid, sig)

    def _kill_group(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class PostgresServer(ServerProcess):
    """A private PostgreSQL cluster: ``<data_dir>/pgdata``, log ``<data_dir>/postgres.log``."""

    name = "postgresql"
    stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for clients to disconnect

    def __init__(self, data_dir: Path, port: int, fsync: bool = True) -> None:
        super().__init__(data_dir, port, "postgres.log")
        self.fsync = fsync  # False: fsync=off (survives kill -9, not an OS crash)
        self.max_connections = 300
        self.bindir: Path | None = None
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "run"

    def ensure_installed(self) -> None:
        if self.bindir is None:
            found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
            found.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
            on_path = shutil.which("initdb")
            self.bindir = found[-1] if found else Path(on_path).parent if on_path else None
        if self.bindir is None or not (self.bindir / "initdb").is_file():
            msg = "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin or PATH; run: "
            raise ConfigError(msg + apt_command("postgresql"))
        if os.geteuid() == 0 and PG_OS_USER not in {p.pw_name for p in pwd.getpwall()}:
            raise ConfigError(f"no OS user '{PG_OS_USER}'; run: {apt_command('postgresql')}")

    def _as_user(self) -> dict[str, Any]:
        """Popen arguments running initdb/postgres as PG_OS_USER when we are root."""
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
        as_user = self._as_user()
        if as_user:
            for d in (self.data_dir, self.socket_dir):
                os.chown(d, as_user["user"], as_user["group"])
            if subprocess.run(["test", "-w", str(self.data_dir)], **as_user).returncode:
                msg = f"OS user {PG_OS_USER} (PostgreSQL will not run as root) cannot reach"
                raise ConfigError(f"{msg} {self.data_dir}: chmod o+x its parents or move it")
        if (self.pgdata / "PG_VERSION").exists():
            return
        argv = [str(self.bindir / "initdb"), "-D", str(self.pgdata), "--auth=trust"]
        argv += [f"--username={PG_ROLE}", "--encoding=UTF8", "--locale=C"]
        argv += [] if self.fsync else ["--no-sync"]
        log.info("postgresql port=%d: initdb %s", self.port, self.pgdata)
        res = subprocess.run(argv, capture_output=True, text=True, **as_user)
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")

    def _argv(self) -> list[str]:
        assert self.bindir is not None
        sock = str(self.socket_dir / f".s.PGSQL.{self.port}")
        conf = {
            "listen_addresses": LOOPBACK,
            "unix_socket_directories": str(self.socket_dir) if len(sock) < 100 else "",
            "max_connections": str(self.max_connections),
        }
        if not self.fsync:
            conf.update(fsync="off", full_page_writes="off")
        argv = [str(self.bindir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)]
        for key, value in conf.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _connect(self, dbname: str = "postgres", timeout: int = 10) -> Any:
        return psycopg2.connect(
            host=LOOPBACK, port=self.port, user=PG_ROLE, dbname=dbname, connect_timeout=timeout
        )

    def ping(self) -> bool:
        try:
            self._connect(timeout=2).close()
        except psycopg2.OperationalError:
            return False
        return True

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` maintenance database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg2://{PG_ROLE}@{LOOPBACK}:{self.port}/{dbname}"

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
        if int((self.pgdata / "PG_VERSION").read_text().split(".")[0]) >= 15:
            stmt += sql.SQL(" STRATEGY FILE_COPY")  # 4x faster than WAL_LOG on small databases
        self.execute(stmt)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, disconnecting its clients first."""
        stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self.execute(stmt.format(sql.Identifier(name)))


class ZookeeperServer(ServerProcess):
    """One ZooKeeper server: ``<data_dir>/zoo.cfg``, ``data/``, log ``zookeeper.log``."""

    name = "zookeeper"

    def __init__(self, data_dir: Path, port: int, tick_ms: int = 500, fsync: bool = True) -> None:
        super().__init__(data_dir, port, "zookeeper.log")
        self.tick_ms = tick_ms
        self.fsync = fsync  # False: forceSync=no (survives kill -9, not an OS crash)
        self.server_id: int | None = None  # ensemble member: its id (myid) and the
        self.peers: list[tuple[int, int, int]] = []  # (id, quorum port, election port) of all

    @property
    def hosts(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def ensure_installed(self) -> None:
        if not ZK_JAR.is_file():
            raise ConfigError(f"ZooKeeper is not installed; run: {apt_command('zookeeper')}")
        if not shutil.which("java"):
            raise ConfigError(f"ZooKeeper needs java; run: {apt_command('default-jre-headless')}")

    def classpath(self) -> str:
        """Our dir (log4j.properties), zookeeper.jar (its manifest lists its deps), log jars."""
        jars = [ZK_JAR, *(j for j in ZK_LOG_JARS if j.is_file())]
        return os.pathsep.join([str(self.data_dir), *map(str, jars)])

    def init(self) -> None:
        """Write zoo.cfg, log4j.properties and myid (on every start, so port changes apply)."""
        data = self.data_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        max_session = max(60_000, 20 * self.tick_ms)
        cfg = ZK_CFG.format(tick=self.tick_ms, data=data, port=self.port, max_session=max_session)
        cfg += "" if self.fsync else "forceSync=no\n"
        cfg += "".join(f"server.{i}={LOOPBACK}:{qp}:{ep}\n" for i, qp, ep in self.peers)
        (self.data_dir / "zoo.cfg").write_text(cfg)
        (self.data_dir / "log4j.properties").write_text(ZK_LOG4J.format(log=self.log_path))
        if self.server_id is not None:
            (data / "myid").write_text(f"{self.server_id}\n")

    def _argv(self) -> list[str]:
        java = shutil.which("java") or "java"  # runs in data_dir: relative paths are fine
        return [java, *ZK_JVM_OPTS.split(), "-cp", self.classpath(), ZK_MAIN, "./zoo.cfg"]

    def four_letter(self, word: str, timeout: float = 2.0) -> str:
        """Send a four-letter command (ruok, srvr, stat, mntr) and return the answer."""
        with socket.create_connection((LOOPBACK, self.port), timeout=timeout) as s:
            s.sendall(word.encode())
            return b"".join(iter(lambda: s.recv(4096), b"")).decode("utf-8", "replace")

    def mode(self) -> str | None:
        """'standalone', 'leader' or 'follower' while serving, else None."""
        try:
            answer = self.four_letter("srvr")
        except OSError:
            return None
        modes = [ln[5:].strip() for ln in answer.splitlines() if ln.startswith("Mode:")]
        return modes[0] if modes else None

    def ping(self) -> bool:
        return self.mode() is not None


class ZookeeperEnsemble:
    """``size`` ZooKeeper servers on 127.0.0.1 forming one ensemble, in ``<base>/zk<id>``."""

    def __init__(self, base: Path, size: int = 3, tick_ms: int = 500, fsync: bool = True) -> None:
        ports = free_ports(size * 3)
        peers = [(i + 1, ports[size + i], ports[2 * size + i]) for i in range(size)]
        self.servers = []
        for sid, _, _ in peers:
            zk = ZookeeperServer(Path(base) / f"zk{sid}", ports[sid - 1], tick_ms, fsync)
            zk.server_id, zk.peers = sid, peers
            self.servers.append(zk)

    @property
    def hosts(self) -> str:
        return ",".join(s.hosts for s in self.servers)

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
