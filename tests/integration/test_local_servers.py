"""The server fixtures really work: a migrated database per test, ZooKeeper with short sessions,
PostgreSQL and ZooKeeper restarts (graceful and kill -9) keep data, and a 3-node ensemble."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg2
import pytest
from kazoo.client import KazooClient
from sqlalchemy.engine import make_url

from core.errors import ConfigError
from core.settings import Settings
from ops import localserver
from ops.localserver import (
    PostgresServer,
    ZookeeperEnsemble,
    ZookeeperServer,
    free_port,
    wait_for,
)


def pg_connect(url: str):
    u = make_url(url)
    return psycopg2.connect(
        host=u.host, port=u.port, user=u.username, dbname=u.database, connect_timeout=5
    )


def scalar(url: str, query: str, params: tuple = ()):
    conn = pg_connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()[0]
    finally:
        conn.close()


def kazoo(hosts: str, timeout_scale: float, session_timeout: float = 4.0) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=session_timeout)
    client.start(timeout=10 * timeout_scale)
    return client


def test_db_url_is_a_fresh_migrated_database(db_url: str) -> None:
    assert (make_url(db_url).database or "").startswith("dk_test_")
    assert scalar(db_url, "SELECT to_regclass('public.command') IS NOT NULL")
    assert scalar(db_url, "SELECT count(*) FROM alembic_version") == 1
    assert scalar(db_url, "SELECT count(*) FROM command") == 0
    # a write here does not leak into the next test's database (see the next test)
    with pg_connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE leak_probe (x int)")


def test_databases_are_isolated_per_test(db_url: str) -> None:
    assert scalar(db_url, "SELECT to_regclass('public.leak_probe') IS NULL")


def test_zookeeper_create_read_and_short_sessions(
    zk_hosts: str, zk_root: str, timeout_scale: float
) -> None:
    client = kazoo(zk_hosts, timeout_scale)
    try:
        client.ensure_path(zk_root)
        client.create(f"{zk_root}/hello", b"world")
        assert client.get(f"{zk_root}/hello")[0] == b"world"
        client.create(f"{zk_root}/mine", b"", ephemeral=True)
        # tickTime 500 ms lets the server grant a 4 s session as asked
        assert client._session_timeout == 4000
    finally:
        client.stop()
        client.close()


def test_zk_root_is_unique(zk_root: str) -> None:
    assert zk_root.startswith("/dk_test_")


def test_settings_fixture(
    settings: Settings, db_url: str, zk_hosts: str, zk_root: str, tmp_path: Path
) -> None:
    assert settings.db.url == db_url
    assert settings.zk.hosts == zk_hosts
    assert settings.zk.root == zk_root
    assert settings.zk.session_timeout_s == 4
    assert settings.master.heartbeat_interval_s == 1
    assert settings.worker.heartbeat_interval_s == 1
    assert settings.data_path == tmp_path.resolve()


def test_postgres_restart_and_kill9_keep_data(
    pg_server: PostgresServer, db_url: str, timeout_scale: float
) -> None:
    with pg_connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x int)")
        cur.execute("INSERT INTO t VALUES (1)")
    conn.close()
    old_pid = pg_server.pid

    pg_server.stop()
    assert not pg_server.running and pg_server.pid is None
    assert not pg_server.ping()
    pg_server.start(timeout=60 * timeout_scale)
    assert pg_server.pid != old_pid
    assert scalar(db_url, "SELECT count(*) FROM t") == 1

    # a crash: committed rows survive, a client that was connected sees an error, then reconnects
    held = pg_connect(db_url)
    with held, held.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (2)")
    pg_server.kill9()
    with pytest.raises(psycopg2.Error), held.cursor() as cur:
        cur.execute("SELECT 1")
    held.close()
    pg_server.start(timeout=60 * timeout_scale)
    assert scalar(db_url, "SELECT count(*) FROM t") == 2


def test_zookeeper_restart_and_kill9_keep_data(
    zk_server: ZookeeperServer, zk_hosts: str, zk_root: str, timeout_scale: float
) -> None:
    client = kazoo(zk_hosts, timeout_scale)
    client.create(f"{zk_root}/persist", b"1", makepath=True)
    client.stop()
    client.close()

    zk_server.kill9()
    assert zk_server.mode() is None
    zk_server.start(timeout=30 * timeout_scale)
    assert zk_server.mode() == "standalone"
    zk_server.signal_group(signal.SIGSTOP)  # frozen; stop() thaws it before asking it to quit
    zk_server.stop(timeout=10)
    zk_server.start(timeout=30 * timeout_scale)

    client = kazoo(zk_hosts, timeout_scale)
    try:
        assert client.get(f"{zk_root}/persist")[0] == b"1"
    finally:
        client.stop()
        client.close()


def test_create_database_exist_ok_and_drop(pg_server: PostgresServer) -> None:
    url = pg_server.create_database("dk_extra")
    assert pg_server.create_database("dk_extra", exist_ok=True) == url
    with pytest.raises(psycopg2.errors.DuplicateDatabase):
        pg_server.create_database("dk_extra")
    pg_server.drop_database("dk_extra")
    assert not pg_server.execute("SELECT 1 FROM pg_database WHERE datname = 'dk_extra'")


def test_start_failure_reports_the_log(tmp_path: Path, pg_server: PostgresServer) -> None:
    # a second server on a busy port exits at once; the error carries its log's tail
    zk = ZookeeperServer(tmp_path / "zk", pg_server.port)
    with pytest.raises(RuntimeError, match=r"(?s)exited.*tail of"):
        zk.start(timeout=30)
    assert not zk.running


def test_missing_zookeeper_names_the_apt_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localserver, "ZK_JAR", tmp_path / "nope.jar")
    with pytest.raises(ConfigError, match="apt-get install -y zookeeper"):
        ZookeeperServer(tmp_path, free_port()).ensure_installed()


def test_wait_for_names_what_it_waited_for() -> None:
    assert wait_for(lambda: 42, timeout=1, what="x") == 42
    with pytest.raises(TimeoutError, match="the moon"):
        wait_for(lambda: False, timeout=0.2, interval=0.05, what="the moon")


def test_zookeeper_ensemble_survives_losing_its_leader(
    tmp_path: Path, timeout_scale: float
) -> None:
    ensemble = ZookeeperEnsemble(tmp_path / "ens", fsync=False)
    try:
        ensemble.start(timeout=60 * timeout_scale)
        modes = sorted(s.mode() or "" for s in ensemble.servers)
        assert modes == ["follower", "follower", "leader"]
        first, last = ensemble.servers[0], ensemble.servers[-1]
        writer = kazoo(first.hosts, timeout_scale)
        writer.create("/quorum", b"ok")
        writer.stop()
        writer.close()

        leader = ensemble.leader()
        assert leader is not None
        leader.kill9()
        survivors = [s for s in ensemble.servers if s is not leader]
        wait_for(
            lambda: {s.mode() for s in survivors} == {"leader", "follower"},
            timeout=30 * timeout_scale,
            what="a new leader among the two survivors",
        )
        reader = kazoo(ensemble.hosts, timeout_scale)
        try:
            assert reader.get("/quorum")[0] == b"ok"
        finally:
            reader.stop()
            reader.close()
        leader.start(timeout=60 * timeout_scale)  # rejoins as a follower
        assert leader.mode() == "follower"
        assert last.running
    finally:
        ensemble.stop()
