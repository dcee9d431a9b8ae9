"""SQL and PROCEDURE tasks through a real worker, on a second PostgreSQL database of the test
server and on a private MariaDB: bound parameters, query vs non-query, pre/post statements in one
transaction, capped rows, first-row outputs, OUT parameters, kill that cancels the backend, and
datasource passwords absent from every task log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sql_servers import MARIA_DB, MARIA_PASSWORD, MARIA_USER, Maria, add_datasource
from sqlalchemy import create_engine, text
from support import api_client
from task_type_support import Bench, log_of

from coord.zk import ZkClient
from core.settings import Settings
from ops.localserver import PostgresServer, wait_for
from worker.server import WorkerServer

pytest_plugins = ["sql_servers"]

PG_PASSWORD = "pg-Secret-991"


def all_logs(got: dict[int, Any]) -> str:
    return "\n".join(log_of(r) for r in got.values())


def kill_once_running(
    bench: Bench, w: WorkerServer, task: dict[str, Any], sleeping: Callable[[], Any]
) -> tuple[int, float]:
    """Run ``task`` on ``w``; once ``sleeping()`` sees its statement on the database server, kill
    the attempt. Its id and the monotonic time of the kill."""
    ti, _ = bench.running(task)
    wait_for(sleeping, 10 * bench.scale, interval=0.05, what="the statement running")
    t0 = time.monotonic()
    assert w.kill_task(ti)
    return ti, t0


def test_sql_and_procedure_on_postgresql(
    bench: Bench, zk: ZkClient, settings: Settings, pg_server: PostgresServer, target: str
) -> None:
    # the datasource is made through the REST API: the API encrypts, the worker decrypts
    with api_client(settings, bench.sf, zk) as c:
        r = c.post("/api/v1/datasources", json={
            "name": "pg", "kind": "POSTGRESQL", "host": "127.0.0.1", "port": pg_server.port,
            "database": target, "user": "postgres", "password": PG_PASSWORD})  # fmt: skip
        assert r.status_code == 201, r.text
    bench.start_worker()
    ds = {"type": "SQL", "datasource": "pg"}
    _, got = bench.run_tasks(
        [
            {**ds, "sql": "SELECT id, name FROM items WHERE id >= ${min_id} ORDER BY id",
             "env": {"min_id": "2"}},
            # a value that would be an injection if pasted into the SQL matches nothing instead
            {**ds, "sql": "SELECT count(*) AS n FROM items WHERE name = ${who}",
             "env": {"who": "x' OR '1'='1"}, "output_first_row": True},
            {**ds, "sql": "UPDATE items SET qty = qty + ${delta} WHERE id < 3",
             "pre_statements": ["INSERT INTO audit VALUES ('pre ' || ${delta})"],
             "post_statements": ["INSERT INTO audit VALUES ('post')"], "env": {"delta": "100"}},
            # '%' is an operator and a LIKE wildcard, with or without bound parameters
            {**ds, "sql": "SELECT count(*) AS n, max(name) AS top, 50 % 7 AS pct FROM items"
             " WHERE name LIKE 'p%' AND id > ${q}", "env": {"q": "0"}, "output_first_row": True},
            {**ds, "sql": "SELECT 50 % 8 AS m", "output_first_row": True},
            {**ds, "sql": "SELECT g FROM generate_series(1, 50) g", "max_rows": 5},
            {**ds, "sql": "SELECT nope FROM items",
             "pre_statements": ["INSERT INTO audit VALUES ('rolled back')"]},
            {"type": "SQL", "datasource": "missing", "sql": "SELECT 1"},
            {"type": "PROCEDURE", "datasource": "pg", "procedure": "add_mul",
             "in_params": {"a": "${x}", "b": 4}, "out_params": ["s", "p"], "env": {"x": "3"}},
        ],
    )  # fmt: skip
    query, inject, update, first, modulo, capped, bad, missing, proc = got.values()
    assert query.state == "SUCCESS", log_of(query)
    lines = log_of(query).splitlines()
    assert "id\tname" in lines and "2\tpear" in lines and "3\tplum" in lines
    assert "1\tapple" not in lines and "[sql] 2 row(s)" in lines
    assert (inject.state, inject.output) == ("SUCCESS", {"n": "0"})
    assert update.state == "SUCCESS" and "[sql] 2 row(s) affected" in log_of(update), log_of(update)
    assert first.output == {"n": "2", "top": "plum", "pct": "1"}, log_of(first)
    assert modulo.output == {"m": "2"}
    assert capped.state == "SUCCESS" and "more not shown (max_rows 5)" in log_of(capped)
    assert "5" in log_of(capped).splitlines() and "6" not in log_of(capped).splitlines()
    assert bad.state == "FAILURE" and "nope" in log_of(bad)
    assert missing.state == "FAILURE" and "'missing' does not exist" in log_of(missing)
    assert (proc.state, proc.output) == ("SUCCESS", {"s": "7", "p": "12"}), log_of(proc)
    eng = create_engine(pg_server.url_for(target))
    with eng.begin() as c:
        assert c.execute(text("SELECT qty FROM items ORDER BY id")).scalars().all() == [105, 107, 9]
        audit = c.execute(text("SELECT what FROM audit ORDER BY what")).scalars().all()
        assert sorted(audit) == ["post", "pre 100"]  # the failed task's pre-statement rolled back
    eng.dispose()
    logs = all_logs(got)
    assert "backend" in logs and PG_PASSWORD not in logs


def test_kill_cancels_a_long_postgresql_statement(
    bench: Bench, zk: ZkClient, settings: Settings, pg_server: PostgresServer, target: str
) -> None:
    add_datasource(
        settings, bench.sf, "pg", "POSTGRESQL", pg_server.port, target, "postgres", PG_PASSWORD
    )
    w = bench.start_worker(kill_grace_s=2)

    def sleeping() -> list[Any]:
        return pg_server.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active'"
            " AND query LIKE 'SELECT pg_sleep%%'", [target]
        )  # fmt: skip

    task = {"type": "SQL", "datasource": "pg", "sql": "SELECT pg_sleep(120)"}
    ti, t0 = kill_once_running(bench, w, task, sleeping)
    wait_for(lambda: not sleeping(), 5, interval=0.05, what="pg_sleep cancelled")
    elapsed = time.monotonic() - t0
    row = bench.wait([ti], timeout=5)[ti]
    assert row.state == "KILL" and elapsed < 5
    assert "cancelling backend" in log_of(row) and PG_PASSWORD not in log_of(row)
    print(f"pg_sleep ended {elapsed:.2f}s after the kill")


def test_sql_and_procedure_on_mariadb(
    bench: Bench, zk: ZkClient, settings: Settings, maria: Maria
) -> None:
    c = maria.connect(MARIA_USER, MARIA_PASSWORD, MARIA_DB)
    with c.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS items")
        cur.execute("CREATE TABLE items (id int PRIMARY KEY, name varchar(20), qty int)")
        cur.execute("INSERT INTO items VALUES (1, 'apple', 5), (2, 'pear', 7), (3, 'plum', 9)")
        cur.execute("DROP PROCEDURE IF EXISTS add_mul")
        cur.execute(
            "CREATE PROCEDURE add_mul(IN a INT, IN b INT, OUT s INT, OUT p INT)"
            " BEGIN SET s = a + b; SET p = a * b; END"
        )
    add_datasource(
        settings, bench.sf, "maria", "MYSQL", maria.port, MARIA_DB, MARIA_USER, MARIA_PASSWORD
    )
    add_datasource(
        settings, bench.sf, "maria-bad", "MYSQL", maria.port, MARIA_DB, MARIA_USER, "wrong"
    )
    w = bench.start_worker(kill_grace_s=2)
    ds = {"type": "SQL", "datasource": "maria"}
    _, got = bench.run_tasks(
        [
            {**ds, "sql": "SELECT id, name FROM items WHERE qty >= ${q} ORDER BY id",
             "env": {"q": "7"}},
            {**ds, "sql": "SELECT count(*) AS n FROM items WHERE name = ${who}",
             "env": {"who": "x' OR '1'='1"}, "output_first_row": True},
            {**ds, "sql": "UPDATE items SET qty = qty + ${d}", "env": {"d": "1"}},
            {"type": "PROCEDURE", "datasource": "maria", "procedure": "add_mul",
             "in_params": {"a": 3, "b": "${y}"}, "out_params": ["s", "p"], "env": {"y": "4"}},
            {"type": "SQL", "datasource": "maria-bad", "sql": "SELECT 1"},
        ],
    )  # fmt: skip
    query, inject, update, proc, denied = got.values()
    assert query.state == "SUCCESS", log_of(query)
    assert "2\tpear" in log_of(query).splitlines() and "1\tapple" not in log_of(query)
    assert inject.output == {"n": "0"}
    assert update.state == "SUCCESS" and "3 row(s) affected" in log_of(update)
    assert (proc.state, proc.output) == ("SUCCESS", {"s": "7", "p": "12"}), log_of(proc)
    assert denied.state == "FAILURE" and "cannot connect" in log_of(denied)
    assert MARIA_PASSWORD not in all_logs(got) and "wrong" not in log_of(denied)

    # kill: KILL QUERY from a second connection ends SLEEP at once
    def sleeping() -> bool:
        with c.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.processlist"
                        " WHERE info LIKE 'SELECT SLEEP%'")  # fmt: skip
            return bool(cur.fetchone()[0])

    ti, t0 = kill_once_running(bench, w, {**ds, "sql": "SELECT SLEEP(120)"}, sleeping)
    wait_for(lambda: not sleeping(), 5, interval=0.05, what="SLEEP killed")
    assert bench.wait([ti], timeout=5)[ti].state == "KILL"
    assert time.monotonic() - t0 < 5
    c.close()
