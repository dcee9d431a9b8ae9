"""/datasources against real PostgreSQL (FastAPI TestClient on create_app): CRUD, 422s naming the
field, 409 on a taken name, the password encrypted at rest, never returned and never logged."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from common.crypto import KEY_FILE, SecretBox
from common.db.engine import SessionFactory, make_engine, make_session_factory
from common.settings import Settings
from common.zk import ZkClient

TOKEN = "test-token-ds"
SECRET = "s3cr3t-Pa55word!"


@pytest.fixture
def client(settings: Settings, db_url: str) -> Iterator[tuple[TestClient, SessionFactory]]:
    s = settings.model_copy(deep=True)
    s.api.token = TOKEN
    engine = make_engine(db_url)
    sf = make_session_factory(engine)
    zk = ZkClient(s.zk, name="test-api")
    zk.start()
    try:
        with TestClient(create_app(s, sf, zk)) as c:
            c.headers["Authorization"] = f"Bearer {TOKEN}"
            yield c, sf
    finally:
        zk.stop()
        engine.dispose()


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
