"""API tokens on a real database: the table holds SHA-256 hashes only, the token is shown once (in
the create answer), expiry, revocation and a disabled user take effect on the next request, and
too many failed authentications from one address get 429 (other addresses are not affected)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from core.settings import Settings

BOOT = "bootstrap-token-of-the-token-tests"  # noqa: S105
ADMIN = {"Authorization": f"Bearer {BOOT}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    s = settings.model_copy(deep=True)
    s.api.token = BOOT
    s.api.auth_fail_limit = 5
    return s


@pytest.fixture
def api(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as client:
        yield client


def sql(db_url: str, statement: str, **params: Any) -> list[Any]:
    eng = create_engine(db_url)
    try:
        with eng.begin() as c:
            res = c.execute(text(statement), params)
            return list(res.all()) if res.returns_rows else []
    finally:
        eng.dispose()


def new_user(api: TestClient, name: str, role: str = "viewer") -> int:
    r = api.post("/api/v1/users", json={"name": name, "role": role}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def new_token(api: TestClient, uid: int, token: str = BOOT, **body: Any) -> dict[str, Any]:
    r = api.post(f"/api/v1/users/{uid}/tokens", json={"name": "cli", **body}, headers=bearer(token))
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_only_hashes_are_stored_and_the_token_is_shown_once(api: TestClient, db_url: str) -> None:
    uid = new_user(api, "alice")
    created = new_token(api, uid)
    token = created["token"]
    assert token.startswith("dkt_") and created["user_id"] == uid
    assert api.get("/api/v1/me", headers=bearer(token)).json()["name"] == "alice"
    rows = sql(db_url, "SELECT * FROM api_token")
    assert len(rows) == 1
    assert rows[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps([tuple(r) for r in rows], default=str)
    # nowhere else: the token list, the user, /me, the audit log
    answers = [
        api.get(f"/api/v1/users/{uid}/tokens", headers=ADMIN).text,
        api.get(f"/api/v1/users/{uid}", headers=ADMIN).text,
        api.get("/api/v1/me", headers=bearer(token)).text,
        api.get("/api/v1/audit", headers=ADMIN).text,
    ]
    assert all(token not in a for a in answers)
    listed = api.get(f"/api/v1/users/{uid}/tokens", headers=ADMIN).json()["items"]
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    assert listed[0]["last_used_at"] is not None  # the request above used it
    # a user makes its own tokens, not somebody else's
    other = new_user(api, "bob")
    mine = new_token(api, uid, token=token)
    assert mine["user_id"] == uid
    r = api.post(f"/api/v1/users/{other}/tokens", json={"name": "x"}, headers=bearer(token))
    assert r.status_code == 403 and "needs the admin role" in r.json()["error"]["message"]


def test_expiry_revocation_and_a_disabled_user_take_effect_on_the_next_request(
    api: TestClient, db_url: str
) -> None:
    uid = new_user(api, "carol")
    expiring = new_token(api, uid, expires_at="2999-01-01T00:00:00Z")
    assert api.get("/api/v1/me", headers=bearer(expiring["token"])).status_code == 200
    sql(db_url, "UPDATE api_token SET expires_at = now() - interval '1 second' WHERE id = :i",
        i=expiring["id"])  # fmt: skip
    r = api.get("/api/v1/me", headers=bearer(expiring["token"]))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["error"]["message"] == "invalid, expired or revoked API token"
    past = api.post(f"/api/v1/users/{uid}/tokens", json={"name": "old",
                    "expires_at": "2001-01-01T00:00:00Z"}, headers=ADMIN)  # fmt: skip
    assert past.status_code == 422 and "expires_at" in past.json()["error"]["message"]

    revoked = new_token(api, uid)
    assert api.get("/api/v1/workflows", headers=bearer(revoked["token"])).status_code == 200
    assert api.delete(f"/api/v1/tokens/{revoked['id']}", headers=ADMIN).status_code == 204
    assert api.get("/api/v1/workflows", headers=bearer(revoked["token"])).status_code == 401
    listed = api.get(f"/api/v1/users/{uid}/tokens", headers=ADMIN).json()["items"]
    assert {t["id"]: t["revoked_at"] is not None for t in listed}[revoked["id"]]

    live = new_token(api, uid)
    assert api.get("/api/v1/me", headers=bearer(live["token"])).status_code == 200
    r = api.put(f"/api/v1/users/{uid}", json={"disabled": True}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert api.get("/api/v1/me", headers=bearer(live["token"])).status_code == 401
    r = api.put("/api/v1/users/1", json={"disabled": True}, headers=ADMIN)
    assert r.status_code == 409  # the bootstrap admin stays


def test_failed_authentications_are_limited_per_client_address(
    app_settings: Settings, api: TestClient
) -> None:
    uid = new_user(api, "dave")
    good = new_token(api, uid)["token"]
    for i in range(5):
        r = api.get("/api/v1/me", headers=bearer(f"dkt_wrong-{i}"))
        assert r.status_code == 401, r.text
    r = api.get("/api/v1/me", headers=bearer(good))  # even a good token, from that address
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "too_many_requests"
    assert int(r.headers["Retry-After"]) >= 1
    # another address is not affected (the limiter is per address, in the same API process)
    # (clients without ``with``: the app's lifespan is the first client's)
    elsewhere = TestClient(api.app, client=("10.9.8.7", 4242))
    assert elsewhere.get("/api/v1/me", headers=bearer(good)).status_code == 200
    # a request without any token is a 401, not a failure that counts
    third = TestClient(api.app, client=("10.9.8.6", 4242))
    for _ in range(8):
        assert third.get("/api/v1/me").status_code == 401
    assert third.get("/api/v1/me", headers=bearer(good)).status_code == 200
    assert app_settings.api.auth_fail_limit == 5
