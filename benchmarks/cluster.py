"""The benchmark's own cluster: a private PostgreSQL (with pg_stat_statements when available) and
ZooKeeper in a temp dir, the migrations, and master/worker/API daemons as child processes that it
can add, kill -9 and, whatever happens, stops (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from sqlalchemy import Engine, create_engine, text

from benchmarks.util import DB_NAME, progress
from coord.zk import acl_options
from core.settings import ZkSettings
from core.zk_paths import ZkPaths
from ops.localserver import PostgresServer, ZookeeperServer, free_port, tail, wait_for

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
ZK_ROOT = "/dagkeeper-bench"
GROUP = "default"
STOP_GRACE_S = 12.0
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the daemon when the benchmark dies, even by kill -9."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class BenchPostgres(PostgresServer):
    """PostgresServer that preloads pg_stat_statements (statement counts while idle)."""

    @property
    def has_pgss(self) -> bool:
        return self.bindir is not None and any(
            (p / "pg_stat_statements.so").is_file()
            for p in (self.bindir.parent / "lib", Path("/usr/lib/postgresql") / "lib")
        )

    def _argv(self) -> list[str]:
        argv = super()._argv()
        if self.has_pgss:
            argv += ["-c", "shared_preload_libraries=pg_stat_statements"]
        return argv


@dataclass
class ClusterOptions:
    capacity: int = 8
    session_timeout_s: float = 10.0
    fsync: bool = True
    keep: bool = False


@dataclass
class Daemon:
    kind: str  # master | worker | api
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.time)
    expected_exit: bool = False  # stopped or killed on purpose

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class Cluster:
    """Everything one benchmark run starts, so that ``stop()`` stops exactly that."""

    def __init__(self, root: Path, opts: ClusterOptions) -> None:
        self.root = root
        self.opts = opts
        self.pg = BenchPostgres(root / "pg", free_port(), fsync=opts.fsync)
        self.zk = ZookeeperServer(root / "zk", free_port(), tick_ms=500, fsync=opts.fsync)
        self.api_port = free_port()
        self.token = secrets.token_urlsafe(24)
        self.data_dir = root / "data"
        # the namespace has a digest ACL, as in production: the daemons read the password
        # from a 0600 file, the harness's own client authenticates with it
        self.zk_password = secrets.token_urlsafe(24)
        self.zk_password_file = root / "zk-password"
        self.logs = root / "daemons"
        self.zk_root = ZK_ROOT
        self.paths = ZkPaths(ZK_ROOT)
        self.resets = 0
        self.daemons: list[Daemon] = []
        self.db_url = ""
        self.engine: Engine | None = None
        self.kz: KazooClient | None = None
        self.pgss = False
        self.harness_xacts = 0  # transactions the harness itself ran on the dagkeeper database
        self._seq = 0

    # servers ------------------------------------------------------------------------------
    def start_servers(self) -> None:
        progress(f"cluster: starting PostgreSQL :{self.pg.port} and ZooKeeper :{self.zk.port}")
        self.pg.start(timeout=90, wait=False)
        self.zk.start(timeout=90, wait=False)
        self.pg.wait_ready(90)
        self.zk.wait_ready(90)
        self._fresh_database()
        secret = self.zk_password_file
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text(self.zk_password + "\n")
        secret.chmod(0o600)
        acl = acl_options(ZkSettings(auth_password=self.zk_password))
        self.kz = KazooClient(hosts=self.zk.hosts, timeout=10.0, **acl)
        self.kz.start(timeout=30)
        self.kz.ensure_path(self.zk_root)
        progress("cluster: servers up, schema migrated")

    def _fresh_database(self) -> None:
        from ops.migrate import upgrade_head

        self.pg.drop_database(DB_NAME)
        self.db_url = self.pg.create_database(DB_NAME)
        upgrade_head(self.db_url)
        self.engine = create_engine(self.db_url, pool_size=4, max_overflow=4)
        self.harness_xacts = 0
        if self.pg.has_pgss:
            with contextlib.suppress(Exception), self.engine.begin() as c:
                c.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                self.pgss = True

    def reset(self) -> None:
        """After a workload that did not finish: stop the daemons, then start them again on a
        fresh database and a fresh znode root, so that leftover work cannot skew what follows."""
        self.resets += 1
        progress("cluster: reset (stop daemons, fresh database and znode root, start daemons)")
        for d in self.daemons:
            d.expected_exit = True
        self._stop(self.daemons, STOP_GRACE_S)
        if self.engine is not None:
            self.engine.dispose()
        self._fresh_database()
        self.zk_root = f"{ZK_ROOT}-{self.resets}"
        self.paths = ZkPaths(self.zk_root)
        assert self.kz is not None
        self.kz.ensure_path(self.zk_root)
        self.start_daemons()

    # daemons ------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        o = self.opts
        beat = min(2.0, o.session_timeout_s / 4)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGKEEPER_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")])
        )
        env.update(
            DAGKEEPER_DB__URL=self.db_url,
            DAGKEEPER_DB__MANAGED="false",
            DAGKEEPER_ZK__HOSTS=self.zk.hosts,
            DAGKEEPER_ZK__ROOT=self.zk_root,
            DAGKEEPER_ZK__MANAGED="false",
            DAGKEEPER_ZK__AUTH_PASSWORD_FILE=str(self.zk_password_file),
            DAGKEEPER_ZK__SESSION_TIMEOUT_S=str(o.session_timeout_s),
            DAGKEEPER_MASTER__HEARTBEAT_INTERVAL_S=str(beat),
            DAGKEEPER_WORKER__HEARTBEAT_INTERVAL_S=str(beat),
            DAGKEEPER_WORKER__REPORT_RETRY_DEADLINE_S=str(min(5.0, o.session_timeout_s / 2)),
            DAGKEEPER_WORKER__CAPACITY=str(o.capacity),
            DAGKEEPER_DATA_DIR=str(self.data_dir),
            DAGKEEPER_API__HOST="127.0.0.1",
            DAGKEEPER_API__PORT=str(self.api_port),
            DAGKEEPER_API__TOKEN=self.token,
            DAGKEEPER_LOG_LEVEL="WARNING",
        )
        return env

    def spawn(self, kind: str) -> Daemon:
        self._seq += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        name = f"{kind}-{self._seq}"
        path = self.logs / f"{name}.log"
        with open(path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ops.cli", kind],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.root,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        d = Daemon(kind, name, proc, path)
        self.daemons.append(d)
        return d

    def of(self, kind: str) -> list[Daemon]:
        return [d for d in self.daemons if d.kind == kind and d.alive]

    def start_daemons(self, timeout: float = 60.0) -> None:
        for kind in ("master", "worker", "api"):
            self.spawn(kind)
        self.wait_members(1, 1, timeout)
        wait_for(self._api_ready, timeout, 0.1, "the API to answer /ready")
        progress(f"cluster: master, worker (capacity {self.opts.capacity}) and API up")

    def _api_ready(self) -> bool:
        self.check_alive()
        try:
            return httpx.get(f"{self.api_base}/ready", timeout=2).is_success
        except httpx.HTTPError:
            return False

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def check_alive(self) -> None:
        for d in self.daemons:
            code = d.proc.poll()
            if code is not None and not d.expected_exit:
                raise RuntimeError(
                    f"{d.name} (pid {d.pid}) exited ({code}); tail of {d.log_path}:\n"
                    f"{tail(d.log_path, 30)}"
                )

    def members(self, kind: str) -> dict[int, tuple[str, str]]:
        """pid -> (id, znode path) of the registered masters or workers (group default)."""
        assert self.kz is not None
        base = self.paths.masters() if kind == "master" else self.paths.workers(GROUP)
        out: dict[int, tuple[str, str]] = {}
        try:
            children = self.kz.get_children(base)
        except NoNodeError:
            return out
        for child in children:
            path = f"{base}/{child}"
            try:
                raw, _ = self.kz.get(path)
                pid = int(json.loads(raw or b"{}").get("pid") or 0)
            except (NoNodeError, ValueError):
                continue
            out[pid] = (child, path)
        return out

    def wait_members(self, masters: int, workers: int, timeout: float = 60.0) -> None:
        """Until every live master and worker we started is registered."""

        def ok() -> bool:
            self.check_alive()
            m, w = self.members("master"), self.members("worker")
            mine_m = {d.pid for d in self.of("master")}
            mine_w = {d.pid for d in self.of("worker")}
            return (
                mine_m <= set(m)
                and mine_w <= set(w)
                and len(mine_m) >= masters
                and len(mine_w) >= workers
            )

        wait_for(ok, timeout, 0.05, f"{masters} master(s) and {workers} worker(s) to register")

    def kill9(self, d: Daemon, with_tasks: bool = True) -> float:
        """SIGKILL a daemon (and, as a dead host would lose them, its task process groups);
        returns the wall-clock time of the kill."""
        kids = []
        with contextlib.suppress(psutil.Error):
            kids = psutil.Process(d.pid).children(recursive=True)
        d.expected_exit = True
        t = time.time()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(d.pid, signal.SIGKILL)
        if with_tasks:
            _kill_all(kids)
        d.proc.wait()
        return t

    def stop_daemon(self, d: Daemon, grace: float = STOP_GRACE_S) -> None:
        d.expected_exit = True
        self._stop([d], grace)

    def _stop(self, daemons: list[Daemon], grace: float) -> None:
        running = [d for d in daemons if d.alive]
        kids: list[psutil.Process] = []
        for d in running:
            with contextlib.suppress(psutil.Error):
                kids += psutil.Process(d.pid).children(recursive=True)
            with contextlib.suppress(ProcessLookupError):
                d.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        hurried = False
        for d in running:
            while d.alive and time.monotonic() < deadline:
                if not hurried and time.monotonic() > deadline - grace / 2:
                    hurried = True  # a second SIGTERM cuts the daemons' grace periods short
                    for x in running:
                        with contextlib.suppress(ProcessLookupError):
                            x.proc.send_signal(signal.SIGTERM)
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(d.pid, signal.SIGKILL)
            d.proc.wait()
        _kill_all(kids)

    def stop(self) -> None:
        """Stop every daemon, then ZooKeeper and PostgreSQL; safe to call more than once."""
        for d in self.daemons:
            d.expected_exit = True
        if any(d.alive for d in self.daemons):
            progress("cluster: stopping daemons")
        self._stop(self.daemons, STOP_GRACE_S)
        if self.kz is not None:
            with contextlib.suppress(Exception):
                self.kz.stop()
                self.kz.close()
            self.kz = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        for server in (self.zk, self.pg):
            try:
                server.stop(timeout=20)
            except Exception as exc:
                progress(f"cluster: stopping {server.name} failed: {exc}")

    # helpers for the workloads --------------------------------------------------------------
    def query(self, sql: str, **params: Any) -> list[Any]:
        assert self.engine is not None
        self.harness_xacts += 1
        with self.engine.begin() as c:
            return list(c.execute(text(sql), params))

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self.query(sql, **params)
        return rows[0][0] if rows else None

    def log_tails(self, lines: int = 20) -> str:
        parts = []
        for d in self.daemons:
            parts.append(f"--- {d.name} (pid {d.pid}): {d.log_path}\n{tail(d.log_path, lines)}")
        return "\n".join(parts)


def _kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL each process's group (tasks run in their own) and the process itself."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if os.getpgid(p.pid) == p.pid:
                os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            p.kill()
