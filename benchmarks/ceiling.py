"""The machine's own rates, measured on the benchmark's servers before the daemons start:
PostgreSQL single-row commits/s (one client), ZooKeeper sync creates/s (one client, plus batched
in transactions for reference) and ``bash -c true`` spawns/s (one process)."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import psycopg2
from kazoo.client import KazooClient

from benchmarks.util import progress
from ops.localserver import LOOPBACK, PG_ROLE, PostgresServer

ZK_PATH = "/dkbench-ceiling"


def pg_commits(pg: PostgresServer, seconds: float) -> float:
    """Single-row INSERT + COMMIT round trips per second over one connection."""
    pg.create_database("dkbench_ceiling", exist_ok=True)
    conn = psycopg2.connect(host=LOOPBACK, port=pg.port, user=PG_ROLE, dbname="dkbench_ceiling")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS t (id bigserial PRIMARY KEY, v int)")
            n, end = 0, time.perf_counter() + seconds
            start = time.perf_counter()
            while time.perf_counter() < end:
                cur.execute("INSERT INTO t (v) VALUES (%s)", (n,))
                n += 1
            elapsed = time.perf_counter() - start
            cur.execute("DROP TABLE t")
    finally:
        conn.close()
    return n / elapsed


def zk_creates(hosts: str, seconds: float) -> tuple[float, float]:
    """(sync creates/s one at a time, creates/s in transactions of 100) from one client."""
    kz = KazooClient(hosts=hosts, timeout=10.0)
    kz.start(timeout=30)
    try:
        kz.ensure_path(ZK_PATH)
        n, end = 0, time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            kz.create(f"{ZK_PATH}/s{n:09d}", b"")
            n += 1
        sync_rate = n / (time.perf_counter() - start)
        m, end = 0, time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            txn = kz.transaction()
            for i in range(100):
                txn.create(f"{ZK_PATH}/b{m + i:09d}", b"")
            txn.commit()
            m += 100
        batch_rate = m / (time.perf_counter() - start)
        _delete_all(kz)
    finally:
        kz.stop()
        kz.close()
    return sync_rate, batch_rate


def _delete_all(kz: KazooClient) -> None:
    """Delete the test znodes in pipelined transactions (a recursive delete goes one by one)."""
    children = kz.get_children(ZK_PATH)
    pending = []
    for i in range(0, len(children), 500):
        txn = kz.transaction()
        for child in children[i : i + 500]:
            txn.delete(f"{ZK_PATH}/{child}")
        pending.append(txn.commit_async())
    for p in pending:
        p.get(timeout=30)
    kz.delete(ZK_PATH)


def bash_spawns(seconds: float) -> float:
    """``bash -c true`` started and waited for, one after another, per second."""
    n, end = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        subprocess.run(["bash", "-c", "true"], check=True)
        n += 1
    return n / (time.perf_counter() - start)


def measure(pg: PostgresServer, zk_hosts: str, seconds: float) -> dict[str, Any]:
    progress(f"ceiling: PostgreSQL commits, ZooKeeper creates, bash spawns ({seconds:.0f}s each)")
    pg_rate = pg_commits(pg, seconds)
    zk_sync, zk_batch = zk_creates(zk_hosts, seconds)
    spawns = bash_spawns(seconds)
    out = {
        "pg_commits_per_s": pg_rate,
        "zk_sync_creates_per_s": zk_sync,
        "zk_batched_creates_per_s": zk_batch,
        "bash_spawns_per_s": spawns,
        "pg_commit_ms": 1000.0 / pg_rate,
        "zk_create_ms": 1000.0 / zk_sync,
        "bash_spawn_ms": 1000.0 / spawns,
    }
    # A task costs at least one bash spawn, 3 ZooKeeper writes (queue entry, claim transaction,
    # lease release) and about 4 commits; one after another, with no batching, that is:
    out["serial_task_ms"] = 4 * out["pg_commit_ms"] + 3 * out["zk_create_ms"] + out["bash_spawn_ms"]
    out["serial_tasks_per_s"] = 1000.0 / out["serial_task_ms"]
    progress(
        f"ceiling: {pg_rate:.0f} PG commits/s, {zk_sync:.0f} ZK creates/s "
        f"({zk_batch:.0f}/s batched), {spawns:.0f} bash spawns/s"
    )
    return out
