"""/datasources against real PostgreSQL (FastAPI TestClient on create_app): CRUD, 422s naming the
field, 409 on a taken name, the password encrypted at rest, never returned and never logged, and
absent from SQL tasks' logs (files and shipped copies) and the worker's own log."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from support import api_client
from task_type_support import Bench, log_of

from coord.zk import ZkClient
from core.crypto import KEY_FILE, SecretBox
from core.settings import Settings
from db.engine import SessionFactory
from ops.localserver import PostgresServer

TOKEN = "test-token-ds"
SECRET = "s3cr3t-Pa55word!"


@pytest.fixture
def client(
    settings: Settings, sf: SessionFactory, zk: ZkClient
) -> Iterator[tuple[TestClient, SessionFactory]]:
    with api_client(settings, sf, zk, TOKEN) as c:
        yield c, sf


def test_crud_and_password_is_write_only(
    client: tuple[TestClient, SessionFactory],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    c, sf = client
    caplog.set_level(logging.DEBUG)
    body = {"name": "warehouse", "kind": "postgres", "host": "db.example", "port": 5433,
            "database": "dw", "user": "etl", "password": SECRET, "options": {"sslmode": "prefer"}}  # fmt: skip
    r = c.post("/api/v1/datasources", json=body)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["kind"] == "POSTGRESQL" and ds["has_password"] is True and ds["user"] == "etl"
    assert "password" not in ds and SECRET not in r.text

    # at rest: encrypted with the key file made 0600 under the data dir
    with sf() as s:
        stored = s.execute(text("SELECT password_enc FROM datasource")).scalar_one()
    assert SECRET not in stored
    key = Path(settings.data_dir) / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert SecretBox.from_settings(settings).decrypt(stored) == SECRET

    # from a URL: the URL's password is taken, the URL itself is never kept or echoed
    r = c.post("/api/v1/datasources",
               json={"name": "shop", "url": f"mysql+pymysql://app:{SECRET}@maria:3307/shop"})  # fmt: skip
    assert r.status_code == 201, r.text
    shop = r.json()
    assert (shop["kind"], shop["host"], shop["port"], shop["user"]) == (
        "MYSQL",
        "maria",
        3307,
        "app",
    )
    assert shop["has_password"] and SECRET not in r.text

    listed = c.get("/api/v1/datasources").json()
    assert listed["total"] == 2 and SECRET not in str(listed)
    assert c.get("/api/v1/datasources?kind=MYSQL").json()["total"] == 1

    # update without a password keeps it; with null removes it
    r = c.put(f"/api/v1/datasources/{ds['id']}", json={"host": "db2.example"})
    assert r.status_code == 200 and r.json()["host"] == "db2.example" and r.json()["has_password"]
    with sf() as s:
        assert s.execute(text("SELECT password_enc FROM datasource WHERE id = :i"),
                         {"i": ds["id"]}).scalar_one() == stored  # fmt: skip
    r = c.put(f"/api/v1/datasources/{ds['id']}", json={"password": None})
    assert r.json()["has_password"] is False

    assert c.put(f"/api/v1/datasources/{shop['id']}", json={"name": "warehouse"}).status_code == 409
    assert c.post("/api/v1/datasources", json={**body, "name": "shop"}).status_code == 409
    assert c.delete(f"/api/v1/datasources/{shop['id']}").status_code == 204
    assert c.get(f"/api/v1/datasources/{shop['id']}").status_code == 404
    assert c.delete(f"/api/v1/datasources/{shop['id']}").status_code == 404

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "warehouse" in logged and SECRET not in logged


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "a", "kind": "ORACLE", "host": "h"}, "kind"),
        ({"name": "a", "kind": "MYSQL"}, "host"),
        ({"name": "a", "host": "h"}, "kind"),
        ({"name": "bad name", "kind": "MYSQL", "host": "h"}, "name"),
        ({"name": "a", "kind": "MYSQL", "host": "h", "port": 70000}, "port"),
        ({"name": "a", "url": f"oracle://u:{SECRET}@h/x"}, "url"),
        ({"name": "a", "kind": "MYSQL", "host": "h", "password": SECRET, "bogus": 1}, "bogus"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_without_echoing_secrets(
    client: tuple[TestClient, SessionFactory], body: dict, field: str
) -> None:
    c, _ = client
    r = c.post("/api/v1/datasources", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["message"] and SECRET not in r.text


def test_password_never_in_task_logs_shipped_chunks_worker_logs_or_api(
    client: tuple[TestClient, SessionFactory],
    settings: Settings,
    db_url: str,
    pg_server: PostgresServer,
    bench: Bench,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A SQL task that works and one whose connection fails, on datasources made through the API:
    the password is in none of the task logs, their copies shipped to PostgreSQL, the worker's and
    the API's own logs, or any answer of the API about them."""
    c, sf = client
    caplog.set_level(logging.DEBUG)
    for name, database in (("good", make_url(db_url).database), ("bad", "no_such_database")):
        r = c.post("/api/v1/datasources", json={
            "name": name, "kind": "POSTGRESQL", "host": "127.0.0.1", "port": pg_server.port,
            "database": database, "user": "postgres", "password": SECRET})  # fmt: skip
        assert r.status_code == 201 and SECRET not in r.text
    bench.start_worker()
    run, got = bench.run_tasks([
        {"type": "SQL", "datasource": "good", "sql": "SELECT current_database() AS db"},
        {"type": "SQL", "datasource": "bad", "sql": "SELECT 1"},
    ])  # fmt: skip
    ok, failed = got.values()
    assert (ok.state, failed.state) == ("SUCCESS", "FAILURE")
    assert "no_such_database" in log_of(failed)  # the failure is explained ...
    with sf() as s:
        shipped = b"".join(s.execute(text("SELECT data FROM task_log_chunk")).scalars())
    assert b"no_such_database" in shipped
    answers = [c.get("/api/v1/datasources").text]
    for ti in run.task_ids:
        for sub in ("", "/log", "/log/download"):
            r = c.get(f"/api/v1/task-instances/{ti}{sub}")
            assert r.status_code == 200, r.text
            answers.append(r.text)
    # ... and the password is nowhere
    assert SECRET not in log_of(ok) + log_of(failed)
    assert SECRET.encode() not in shipped
    assert not [a for a in answers if SECRET in a]
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "bad" in logged and SECRET not in logged
