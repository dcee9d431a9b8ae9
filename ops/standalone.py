"""``dagkeeper standalone``: a private PostgreSQL and ZooKeeper (when managed), the migrations, one
master, one worker and the API as child processes, the client settings file other commands use
against it (``<data_dir>/client.env``), and the optional demo diamond workflow (ops/demo.py)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from core.errors import ChildDied, ConfigError
from core.logs import setup_logging
from core.settings import Settings
from core.states import WorkflowState
from ops.bootstrap import announce_admin, secure_zookeeper
from ops.demo import run_demo
from ops.localserver import LOOPBACK, PostgresServer, ZookeeperServer, tail

log = logging.getLogger(__name__)

DAEMONS = ("master", "worker", "api")
DB_NAME = "dagkeeper"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # holds core/, master/, ops/...
STARTUP_TIMEOUT_S = 60.0
CHILD_STOP_GRACE_S = 25.0  # a worker may let its running tasks finish for up to ~22 s


def child_env(settings: Settings, db_url: str, zk_hosts: str) -> dict[str, str]:
    """The environment of a daemon: ours without DAGKEEPER_*, then every setting spelled out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGKEEPER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    values = settings.model_dump()
    values["data_dir"] = str(settings.data_path)
    values["db"].update(url=db_url, managed=False)
    values["zk"].update(hosts=zk_hosts, managed=False)
    for key, value in values.items():
        pairs = value.items() if isinstance(value, dict) else [("", value)]
        for sub, v in pairs:
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, list):
                v = ",".join(map(str, v))
            env[f"DAGKEEPER_{key.upper()}{'__' + sub.upper() if sub else ''}"] = str(v)
    return env


CLIENT_ENV = "client.env"


def client_settings(settings: Settings, db_url: str, zk_hosts: str) -> dict[str, str]:
    """What other commands (``dagkeeper doctor``, ``migrate``, the SDK) need to reach this
    standalone cluster, as DAGKEEPER_* variables."""
    host = settings.api.host
    api_host = LOOPBACK if host in ("0.0.0.0", "::", "") else host
    values = {
        "DAGKEEPER_DATA_DIR": str(settings.data_path),
        "DAGKEEPER_DB__URL": db_url,
        "DAGKEEPER_ZK__HOSTS": zk_hosts,
        "DAGKEEPER_ZK__ROOT": settings.zk.root,
        "DAGKEEPER_URL": f"http://{api_host}:{settings.api.port}",
    }
    if settings.zk.auth_password_file:  # the namespace's digest ACL: the file, never the secret
        values["DAGKEEPER_ZK__AUTH_USER"] = settings.zk.auth_user
        values["DAGKEEPER_ZK__AUTH_PASSWORD_FILE"] = settings.zk.auth_password_file
    return values


def write_client_env(settings: Settings, values: dict[str, str]) -> Path:
    """``<data_dir>/client.env`` (0600): the variables of ``client_settings``, one a line, to be
    read with ``set -a; . <file>; set +a`` before ``dagkeeper doctor``."""
    path = settings.data_path / CLIENT_ENV
    lines = [
        "# written by `dagkeeper standalone`: how other commands reach this cluster",
        f"# use: set -a; . {path}; set +a; dagkeeper doctor",
        *(f"{k}={shlex.quote(v)}" for k, v in values.items()),
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def doctor_command(values: dict[str, str]) -> str:
    """The exact command that runs ``dagkeeper doctor`` against this cluster."""
    keys = [k for k in values if k.startswith(("DAGKEEPER_DB__", "DAGKEEPER_ZK__"))]
    env = " ".join(f"{k}={shlex.quote(values[k])}" for k in keys)
    return f"{env} {Path(sys.executable).parent / 'dagkeeper'} doctor"


def _check_port(host: str, port: int, what: str, variable: str) -> None:
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigError(
            f"port {port} on {host} (for {what}) is not available ({os.strerror(exc.errno or 0)}); "
            f"stop whatever uses it or choose another port with {variable}=<port>"
        ) from None


_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the standalone process dies, even by kill -9."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Standalone:
    """Everything the command starts, so that shutdown stops exactly that, in reverse order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data = settings.data_path
        self.logs = settings.daemon_log_path
        self.pg: PostgresServer | None = None
        self.zk: ZookeeperServer | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stop_event = threading.Event()
        self.raise_on_signal = True  # while starting: a signal interrupts the start at once
        self.up = False  # the cluster answered once
        self.client: dict[str, str] = {}  # DAGKEEPER_* settings other commands need
        self.client_env = self.data / CLIENT_ENV
        host = settings.api.host
        self.api_base = f"http://{LOOPBACK if host in ('0.0.0.0', '::', '') else host}:"
        self.api_base += str(settings.api.port)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_event.is_set():  # again: the daemons cut their grace periods short
            log.info("standalone: signal %d again: hurrying the daemons", signum)
            for proc in self.children.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        else:
            log.info("standalone: signal %d: stopping", signum)
        self.stop_event.set()
        if self.raise_on_signal:
            self.raise_on_signal = False
            raise KeyboardInterrupt

    # start ----------------------------------------------------------------------------------
    def preflight(self) -> None:
        """Every missing program and every taken port, reported together before starting."""
        s = self.settings
        self.data.mkdir(parents=True, exist_ok=True)
        if s.db.managed:
            self.pg = PostgresServer(self.data / "postgres", s.db.port)
        if s.zk.managed:
            self.zk = ZookeeperServer(self.data / "zookeeper", s.zk.port)
        servers = [x for x in (self.pg, self.zk) if x is not None]
        ports = [(s.api.host, s.api.port, "the API", "DAGKEEPER_API__PORT")]
        for x, var in ((self.pg, "DAGKEEPER_DB__PORT"), (self.zk, "DAGKEEPER_ZK__PORT")):
            ports += [(LOOPBACK, x.port, x.name, var)] if x is not None else []
        checks = [x.ensure_installed for x in servers] + [partial(_check_port, *p) for p in ports]
        problems = []
        for check in checks:
            try:
                check()
            except ConfigError as exc:
                problems.append(exc.message)
        if problems:
            raise ConfigError("\n".join(problems))

    def start_servers(self) -> tuple[str, str]:
        """Start the managed servers; returns the database URL and the ZooKeeper hosts."""
        db_url, zk_hosts = self.settings.db.url, self.settings.zk.hosts
        if self.pg is not None:
            how = "reused" if (self.pg.pgdata / "PG_VERSION").exists() else "created"
            self.pg.start(timeout=STARTUP_TIMEOUT_S)
            db_url = self.pg.create_database(DB_NAME, exist_ok=True)
            log.info("standalone: PostgreSQL %s on port %d", how, self.pg.port)
        if self.zk is not None:
            self.zk.start(timeout=STARTUP_TIMEOUT_S)
            zk_hosts = self.zk.hosts
            secure_zookeeper(self.settings, self.data)
        from ops.migrate import upgrade_head  # alembic: imported only when needed

        upgrade_head(db_url)
        log.info("standalone: schema migrated to head")
        announce_admin(self.settings, db_url)  # the first admin's token, printed once
        return db_url, zk_hosts

    def start_daemons(self, env: dict[str, str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        opts: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
        opts.update(env=env, start_new_session=True, preexec_fn=_die_with_parent)
        for name in DAEMONS:
            path = self.logs / f"{name}.log"
            with open(path, "ab") as out:
                out.write(f"=== dagkeeper standalone: {name} at {datetime.now()}\n".encode())
                out.flush()
                argv = [sys.executable, "-m", "ops.cli", name]
                self.children[name] = subprocess.Popen(argv, stdout=out, **opts)
            log.info("standalone: %s started, pid %d, log %s", name, self.children[name].pid, path)

    def check_children(self) -> None:
        for server in (self.pg, self.zk):
            if server is not None and not server.running:
                raise ChildDied(
                    f"{server.name} stopped; see {server.log_path}:\n{tail(server.log_path)}"
                )
        for name, proc in self.children.items():
            code = proc.poll()
            if code is not None:
                path = self.logs / f"{name}.log"
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                raise ChildDied(
                    f"the {name} daemon exited unexpectedly ({how}); "
                    f"last lines of {path}:\n{tail(path, 30)}"
                )

    def wait_up(self, client: httpx.Client, timeout: float) -> dict[str, Any]:
        """Until /health and /ready answer 200 and our master and worker are registered."""
        deadline = time.monotonic() + timeout
        step, last = "health", ""
        while True:
            self.check_children()
            try:
                if step == "health" and client.get(self.api_base + "/health").is_success:
                    step = "ready"
                if step == "ready":
                    r = client.get(self.api_base + "/ready")
                    last = r.text
                    step = "cluster" if r.is_success else step
                if step == "cluster":
                    cluster: dict[str, Any] = client.get("/cluster").raise_for_status().json()
                    pids = {m.get("pid") for m in cluster["masters"] + cluster["workers"]}
                    mine = {self.children["master"].pid, self.children["worker"].pid}
                    last = f"registered pids {sorted(map(str, pids))}, ours {sorted(mine)}"
                    if mine <= pids:  # our own daemons, not what a crashed run left behind
                        return cluster
            except httpx.HTTPError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster was not up after {timeout:.0f}s ({step}: {last})")
            if self.stop_event.wait(0.2):
                raise KeyboardInterrupt

    def banner(self, cluster: dict[str, Any], started: float) -> str:
        s = self.settings
        token = "DAGKEEPER_API__TOKEN" if s.api.token else str(s.data_path / "api-token")
        token_cmd = "$DAGKEEPER_API__TOKEN" if s.api.token else f"$(cat {token})"
        servers = [f"PostgreSQL :{self.pg.port}" if self.pg else "external PostgreSQL"]
        servers.append(f"ZooKeeper :{self.zk.port}" if self.zk else "external ZooKeeper")
        servers += [f"masters: {len(cluster['masters'])}", f"workers: {len(cluster['workers'])}"]
        server_logs = " ".join(str(x.log_path) for x in (self.pg, self.zk) if x is not None)
        lines = [
            f"dagkeeper standalone is up in {time.monotonic() - started:.1f}s: "
            f"{', '.join(servers)}, API",
            f"  API       {self.api_base}/api/v1",
            f"  docs      {self.api_base}/docs",
            f"  token     {token}",
            f"  data dir  {self.data}",
            f"  logs      {self.logs}/{{{','.join(DAEMONS)}}}.log; tasks in {s.log_path}",
            f"            {server_logs}" if server_logs else "",
            f'  try       curl -H "Authorization: Bearer {token_cmd}" {self.api_base}/api/v1/cluster',
            f"  client    {self.client_env} (DAGKEEPER_* settings of this cluster)",
            f"  doctor    {doctor_command(self.client)}",
        ]
        return "\n".join(line for line in lines if line)

    # stop -----------------------------------------------------------------------------------
    def shutdown(self) -> bool:
        """Children (SIGTERM, SIGKILL after a grace), then ZooKeeper, then PostgreSQL; False if
        nothing had been started."""
        running = {n: p for n, p in self.children.items() if p.poll() is None}
        servers = [x for x in (self.zk, self.pg) if x is not None and x.running]
        if not (self.children or servers):
            return False
        print("dagkeeper standalone: stopping", file=sys.stderr, flush=True)
        for name, proc in running.items():
            log.info("standalone: stopping %s (pid %d)", name, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_GRACE_S
        for name, proc in running.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "standalone: %s still up after %.0fs: killing it", name, CHILD_STOP_GRACE_S
                )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for server in servers:
            try:
                server.stop()
            except Exception as exc:
                log.error("standalone: stopping %s failed: %s", server.name, exc)
        return True


def _run(sa: Standalone, demo: bool, exit_after_demo: bool) -> int:
    started = time.monotonic()
    sa.preflight()
    db_url, zk_hosts = sa.start_servers()
    sa.start_daemons(child_env(sa.settings, db_url, zk_hosts))
    sa.client = client_settings(sa.settings, db_url, zk_hosts)
    sa.client_env = write_client_env(sa.settings, sa.client)
    from api.deps import resolve_token

    headers = {"Authorization": f"Bearer {resolve_token(sa.settings)}"}
    with httpx.Client(base_url=sa.api_base + "/api/v1", headers=headers, timeout=10) as client:
        cluster = sa.wait_up(client, STARTUP_TIMEOUT_S)
        sa.raise_on_signal, sa.up = False, True
        print(sa.banner(cluster, started), flush=True)
        if demo:
            state = run_demo(sa, client)
            if exit_after_demo:
                print(f"demo: {state or 'not finished'}; stopping (--exit-after-demo)", flush=True)
                return 0 if state == WorkflowState.SUCCESS else 1
    print("dagkeeper standalone: running; Ctrl-C stops it", flush=True)
    while not sa.stop_event.wait(0.5):
        sa.check_children()
    return 0


def main(settings: Settings, demo: bool = False, exit_after_demo: bool = False) -> int:
    """Run the standalone cluster; 0 after a requested stop (or a successful demo with
    ``exit_after_demo``), 1 on a failure at run time, 2 on missing programs or busy ports."""
    setup_logging(settings.log_level)
    demo = demo or exit_after_demo  # "stop once the demo ends" needs a demo
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sa = Standalone(settings)
    previous = {sig: signal.signal(sig, sa.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(sa, demo, exit_after_demo)
    except ConfigError as exc:
        print(f"dagkeeper standalone: cannot start:\n{exc.message}", file=sys.stderr)
        return 2
    except ChildDied as exc:
        print(f"dagkeeper standalone: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dagkeeper standalone: interrupted", file=sys.stderr)
        return 1 if exit_after_demo or not sa.up else 0
    except Exception as exc:  # an operator command: the reason, not a stack trace
        log.debug("standalone: failed", exc_info=True)
        print(f"dagkeeper standalone: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        sa.raise_on_signal = False
        if sa.shutdown():
            print("dagkeeper standalone: stopped", file=sys.stderr, flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
