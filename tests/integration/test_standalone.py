"""``dagkeeper standalone`` end to end: its own PostgreSQL and ZooKeeper on free ports, the three
daemons as child processes, the demo diamond through the REST API, a clean stop; then a second
start on the same data directory reuses the cluster and the workflow. Also: a busy port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.localserver import free_ports, tail

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Not under pytest's 0700 tmp dirs: PostgreSQL runs as the ``postgres`` OS user when we
    are root and must be able to traverse the parents (see tests/conftest.py)."""
    root = Path(tempfile.mkdtemp(prefix="dagkeeper-standalone-"))
    os.chmod(root, 0o711)
    yield root / "data"
    if not request.session.testsfailed:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"standalone data dir kept: {root}")


def standalone_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGKEEPER_")}
    db_port, zk_port, api_port = free_ports(3)
    env.update(
        DAGKEEPER_DATA_DIR=str(data_dir),
        DAGKEEPER_DB__PORT=str(db_port),
        DAGKEEPER_ZK__PORT=str(zk_port),
        DAGKEEPER_API__PORT=str(api_port),
        DAGKEEPER_ZK__SESSION_TIMEOUT_S="4",
        DAGKEEPER_MASTER__HEARTBEAT_INTERVAL_S="1",
        DAGKEEPER_WORKER__HEARTBEAT_INTERVAL_S="1",
        DAGKEEPER_WORKER__REPORT_RETRY_DEADLINE_S="2",
    )
    return env


def run_standalone(env: dict[str, str], timeout: float, *args: str) -> tuple[int, str]:
    """Run the command to its end; on a timeout, SIGTERM it (it stops what it started) first."""
    argv = [sys.executable, "-m", "ops.cli", "standalone", *args]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"standalone did not finish in {timeout:.0f}s; output:\n{out}")
    return proc.returncode, out


def daemon_logs(data_dir: Path) -> str:
    logs = sorted((data_dir / "daemons").glob("*.log"))
    return "\n".join(f"--- {p}\n{tail(p, 30)}" for p in logs)


def test_standalone_demo_runs_and_exits(data_dir: Path, timeout_scale: float) -> None:
    env = standalone_env(data_dir)
    started = time.monotonic()
    code, out = run_standalone(env, 180 * timeout_scale, "--demo", "--exit-after-demo")
    first_s = time.monotonic() - started
    assert code == 0, f"exit {code}; output:\n{out}\n{daemon_logs(data_dir)}"
    assert "dagkeeper standalone is up" in out
    assert f"token     {data_dir / 'api-token'}" in out
    assert "demo: created workflow 'demo-diamond'" in out
    assert "finished SUCCESS" in out and "demo: SUCCESS" in out
    assert "order check: OK" in out
    for name in ("master", "worker", "api"):
        assert (data_dir / "daemons" / f"{name}.log").is_file()
    assert (data_dir / "postgres" / "pgdata" / "PG_VERSION").is_file()

    # a second start reuses the database cluster, the schema and the workflow
    pg_version_mtime = (data_dir / "postgres" / "pgdata" / "PG_VERSION").stat().st_mtime
    started = time.monotonic()
    code, out = run_standalone(env, 180 * timeout_scale, "--demo", "--exit-after-demo")
    second_s = time.monotonic() - started
    assert code == 0, f"exit {code}; output:\n{out}\n{daemon_logs(data_dir)}"
    assert "demo: reusing workflow 'demo-diamond'" in out
    assert "demo: started instance 2" in out and "order check: OK" in out
    assert (data_dir / "postgres" / "pgdata" / "PG_VERSION").stat().st_mtime == pg_version_mtime
    print(f"standalone demo end to end: first run {first_s:.1f}s, second run {second_s:.1f}s")


def test_busy_port_is_named_with_its_setting(data_dir: Path, timeout_scale: float) -> None:
    env = standalone_env(data_dir)
    with socket.create_server(("127.0.0.1", int(env["DAGKEEPER_API__PORT"]))):
        code, out = run_standalone(env, 60 * timeout_scale)
    assert code == 2, out
    assert f"port {env['DAGKEEPER_API__PORT']}" in out and "DAGKEEPER_API__PORT=<port>" in out
    assert "Traceback" not in out
    assert not (data_dir / "postgres").exists()  # nothing was started
