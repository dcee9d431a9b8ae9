"""Integration fixtures every module may ask for by name: the test's database (``engine``,
``sf``), ZooKeeper clients (``zk``, ``kz``), masters and workers serving in threads (``cluster``,
``start_worker``, and ``bench`` for the tests that play the master to real workers), the API
(``api``), and ``proc_cluster``: masters and workers as real child processes
(tests/chaos/harness.py) for kill -9, SIGSTOP and restarts, with their logs printed when a test
fails. The helpers behind them are in support.py and task_type_support.py."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))
# the shared helpers' asserts report their values like the tests' own
pytest.register_assert_rewrite("support", "task_type_support", "sql_servers")
import harness  # noqa: E402
from support import Cluster, api_client  # noqa: E402
from task_type_support import Bench  # noqa: E402
from zk_acl import kazoo_acl  # noqa: E402

from coord.zk import ZkClient  # noqa: E402
from core.settings import Settings  # noqa: E402
from db.engine import SessionFactory, make_engine, make_session_factory  # noqa: E402
from worker.server import WorkerServer  # noqa: E402

# ZooKeeper session timeout of the cluster's nodes: short, so failovers happen within a test
PROC_SESSION_S = 4


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """A pool on the test's database."""
    eng = make_engine(settings.db)
    yield eng
    eng.dispose()


@pytest.fixture
def sf(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def zk(settings: Settings) -> Iterator[ZkClient]:
    """A started dagkeeper ZooKeeper client on the test's znode root (the test's own session)."""
    client = ZkClient(settings.zk, name="test-master")
    client.start()
    yield client
    client.stop()


@pytest.fixture
def kz(zk_hosts: str) -> Iterator[KazooClient]:
    """A plain kazoo client on the test's ZooKeeper (paths are absolute: prefix ``zk_root``)."""
    client = KazooClient(hosts=zk_hosts, **kazoo_acl())
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def cluster(settings: Settings) -> Iterator[Cluster]:
    """Masters and workers of this test serving in threads, stopped at its end."""
    c = Cluster(settings)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def start_worker(cluster: Cluster) -> Callable[..., WorkerServer]:
    """Start a WorkerServer serving in a thread; keyword arguments override worker settings."""
    return cluster.start_worker


@pytest.fixture
def bench(
    sf: SessionFactory,
    zk: ZkClient,
    start_worker: Callable[..., WorkerServer],
    timeout_scale: float,
) -> Bench:
    """The worker tests' side of a cluster: they play the master, real workers run the tasks."""
    return Bench(sf, zk, timeout_scale, start_worker)


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    """The REST API (its own pool and ZooKeeper client) as a TestClient sending the token."""
    with api_client(settings) as client:
        yield client


@pytest.fixture
def proc_cluster(
    request: pytest.FixtureRequest,
    server_root: Path,
    db_url: str,
    zk_hosts: str,
    zk_root: str,
    timeout_scale: float,
) -> Iterator[harness.Cluster]:
    c = harness.Cluster(
        server_root / f"{request.node.name[:40]}{zk_root.replace('/', '_')}",
        db_url,
        zk_hosts,
        zk_root,
        timeout_scale,
        session_timeout_s=PROC_SESSION_S,
    )
    failed = request.session.testsfailed
    try:
        yield c
    finally:
        c.close()
        if request.session.testsfailed > failed:
            print(c.logs())
