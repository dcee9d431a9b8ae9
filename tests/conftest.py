"""Shared fixtures: one real PostgreSQL and one ZooKeeper per session (local processes on free
ports in a temp dir, or containers with DAGKEEPER_TEST_SERVERS=containers; logs kept and tailed on
failure), a fresh migrated database and a fresh znode root per test."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from containers import PG_IMAGE, ZK_IMAGE
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from servers_containers import (
    BACKEND_ENV,
    ContainerPostgres,
    ContainerZookeeper,
    check_backend,
    choose_backend,
)
from zk_acl import ZK_PASSWORD

from core.settings import (
    DbSettings,
    MasterSettings,
    Settings,
    WorkerSettings,
    ZkSettings,
    test_timeout_scale,
)
from ops.localserver import PostgresServer, ZookeeperServer, free_port, tail

TESTS_DIR = Path(__file__).resolve().parent
TEMPLATE_DB = "dk_template"
# (name, log file) of every server started this session, tailed in the summary on failure
_SERVER_LOGS: list[tuple[str, Path]] = []
_server_root: list[Path] = []
_db_numbers = itertools.count(1)
_zk_numbers = itertools.count(1)
_reports = pytest.StashKey[dict[str, pytest.TestReport]]()
SERVER_FIXTURES = {"pg_server", "zk_server"}


class HermeticSettings(Settings):
    """Settings from keyword arguments only: no DAGKEEPER_* environment leaks into tests."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


# --- hooks -------------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/integration and tests/chaos get the ``integration`` marker (chaos also
    ``chaos``), so that ``-m 'not integration'`` runs the server-less tests only."""
    for item in items:
        try:
            top = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        if top in ("integration", "chaos"):
            item.add_marker(pytest.mark.integration)
        if top == "chaos":
            item.add_marker(pytest.mark.chaos)
    try:
        backend = choose_backend(os.environ)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if backend != "containers" or not any(
        SERVER_FIXTURES & set(getattr(i, "fixturenames", ())) for i in items
    ):
        return
    try:  # before any test runs: containers asked for and no engine is an error, no fall-back
        check_backend(os.environ)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    reason = f"{BACKEND_ENV}=containers: the chaos test runs its own local ZooKeeper ensemble and"
    reason += " kills and restarts local server processes; run it with the local back end"
    for item in items:
        if item.get_closest_marker("chaos"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_reports, {})
    return any(r.failed for r in reports.values())


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) or not _SERVER_LOGS:
        return
    tr = terminalreporter
    tr.section("dagkeeper test servers (tail of their logs)")
    for name, path in _SERVER_LOGS:
        tr.write_line(f"--- {name}: {path}")
        tr.write_line(tail(path, 30) or "(empty)")
    if _server_root:
        tr.write_line(f"full server logs and data kept in {_server_root[0]}")


# --- servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def timeout_scale() -> float:
    """Multiply every timeout in tests by this (DAGKEEPER_TEST_TIMEOUT_SCALE)."""
    return test_timeout_scale()


@pytest.fixture(scope="session")
def server_root(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A temp dir for the session's servers; removed at the end unless a test failed.

    Not under pytest's tmp dirs: those are 0700 root, which the ``postgres`` OS user (used when
    running as root) cannot enter."""
    root = Path(tempfile.mkdtemp(prefix="dagkeeper-test-"))
    os.chmod(root, 0o711)
    _server_root.append(root)
    yield root
    if request.session.testsfailed == 0:
        shutil.rmtree(root, ignore_errors=True)
        _SERVER_LOGS.clear()


@pytest.fixture(scope="session")
def server_backend() -> str:
    """``local`` (server processes, the default) or ``containers`` (DAGKEEPER_TEST_SERVERS)."""
    return choose_backend(os.environ)


@pytest.fixture(scope="session")
def pg_server(
    server_root: Path, timeout_scale: float, server_backend: str
) -> Iterator[PostgresServer]:
    """A private PostgreSQL (initdb once per session; fsync off, which survives kill -9)."""
    if server_backend == "containers":
        yield from _container(ContainerPostgres(PG_IMAGE, server_root / "pg" / "container.log"),
                              timeout_scale)  # fmt: skip
        return
    server = PostgresServer(server_root / "pg", free_port(), fsync=False)
    _SERVER_LOGS.append(("postgresql", server.log_path))
    server.start(timeout=60 * timeout_scale)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def zk_server(
    server_root: Path, timeout_scale: float, server_backend: str
) -> Iterator[ZookeeperServer]:
    """A private standalone ZooKeeper (tickTime 500 ms: sessions from 1 s to 60 s)."""
    if server_backend == "containers":
        yield from _container(ContainerZookeeper(ZK_IMAGE, server_root / "zk" / "container.log"),
                              timeout_scale)  # fmt: skip
        return
    server = ZookeeperServer(server_root / "zk", free_port(), tick_ms=500, fsync=False)
    _SERVER_LOGS.append(("zookeeper", server.log_path))
    server.start(timeout=60 * timeout_scale)
    yield server
    server.stop()


def _container(server: Any, timeout_scale: float) -> Iterator[Any]:
    """The containers back end: the same interface as the local server (what a test cannot do to
    a container, stop or kill it, skips that test with its reason)."""
    _SERVER_LOGS.append((server.name, server.log_path))
    try:
        server.launch(timeout=60 * timeout_scale)
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def migrated_template(pg_server: PostgresServer) -> str:
    """Name of a database migrated to head once per session, copied by ``db_url``."""
    from ops.migrate import upgrade_head

    upgrade_head(pg_server.create_database(TEMPLATE_DB))
    # nobody may connect to it any more: a connection would make CREATE DATABASE ... TEMPLATE fail
    pg_server.execute(f"ALTER DATABASE {TEMPLATE_DB} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
    return TEMPLATE_DB


@pytest.fixture
def db_url(
    request: pytest.FixtureRequest, pg_server: PostgresServer, migrated_template: str
) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, migrated database for this test (dropped after it passes)."""
    if not pg_server.running:  # a previous (chaos) test left it stopped
        pg_server.start()
    name = f"dk_test_{next(_db_numbers)}"
    url = pg_server.create_database(name, template=migrated_template)
    yield url
    if pg_server.running and not _failed(request):
        pg_server.drop_database(name)


@pytest.fixture
def zk_hosts(zk_server: ZookeeperServer) -> str:
    """``host:port`` of the session's ZooKeeper (restarted if a previous test left it down)."""
    if not zk_server.running:
        zk_server.start()
    return zk_server.hosts


@pytest.fixture
def zk_root() -> str:
    """A znode root no other test in this session uses."""
    return f"/dk_test_{next(_zk_numbers)}"


@pytest.fixture
def settings(db_url: str, zk_hosts: str, zk_root: str, tmp_path: Path) -> Settings:
    """Settings for this test's database and znode root: 4 s ZooKeeper sessions, 1 s heartbeats,
    data_dir = tmp_path. Built from keyword arguments only (the environment is ignored)."""
    return HermeticSettings(
        data_dir=str(tmp_path),
        db=DbSettings(url=db_url, managed=False),
        zk=ZkSettings(
            hosts=zk_hosts,
            root=zk_root,
            session_timeout_s=4,
            managed=False,
            auth_password=ZK_PASSWORD,  # the suite runs with ZooKeeper ACLs on (zk_acl.py)
        ),
        master=MasterSettings(heartbeat_interval_s=1),
        worker=WorkerSettings(heartbeat_interval_s=1, report_retry_deadline_s=2),
    )
