"""Upgrading a database from before users and projects: everything that existed lands in the
project "default", the old single token still works and is the bootstrap admin, and
``dagkeeper migrate`` makes the first admin's token (printed once, written 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from core.settings import DbSettings, Settings
from ops import cli
from ops.localserver import PostgresServer
from ops.migrate import alembic_config, upgrade_head

OLD_TOKEN = "the-single-token-of-an-old-cluster"  # noqa: S105
BEFORE = [
    "INSERT INTO workflow_definition (name) VALUES ('legacy')",
    "INSERT INTO workflow_version (workflow_id, version, spec) VALUES (1, 1, CAST(:spec AS jsonb))",
    "INSERT INTO workflow_instance (workflow_id, version, state, command_type)"
    " VALUES (1, 1, 'SUCCESS', 'START_PROCESS')",
    "INSERT INTO schedule (workflow_id, cron, enabled) VALUES (1, '0 0 * * *', false)",
    "INSERT INTO datasource (name, kind, host) VALUES ('warehouse', 'POSTGRESQL', 'db.example')",
    "INSERT INTO task_group (name, capacity) VALUES ('nightly', 2)",
]
SPEC = '{"name": "legacy", "tasks": [{"name": "a", "type": "SHELL", "command": "echo old"}]}'


@pytest.fixture
def old_db(pg_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A database at revision 0007 (before users and projects) holding one of everything."""
    url = pg_server.create_database(f"dk_upgrade_{abs(hash(request.node.name)) % 10**8}")
    command.upgrade(alembic_config(url), "0007")
    eng = create_engine(url)
    with eng.begin() as c:
        for statement in BEFORE:
            c.execute(text(statement), {"spec": SPEC} if ":spec" in statement else {})
    eng.dispose()
    return url


def test_an_old_database_moves_into_the_default_project_and_the_old_token_still_works(
    old_db: str, settings: Settings
) -> None:
    upgrade_head(old_db)
    eng = create_engine(old_db)
    with eng.begin() as c:
        for table in ("workflow_definition", "datasource", "task_group"):
            assert c.execute(text(f"SELECT DISTINCT project FROM {table}")).scalars().all() == [
                "default"
            ], table
        admins = c.execute(text("SELECT name, role, bootstrap FROM app_user")).all()
        assert [tuple(a) for a in admins] == [("admin", "admin", True)]
    eng.dispose()
    s = settings.model_copy(deep=True)
    s.db = DbSettings(url=old_db, managed=False)
    s.api.token = OLD_TOKEN
    with TestClient(create_app(s)) as api:
        api.headers["Authorization"] = f"Bearer {OLD_TOKEN}"
        me = api.get("/api/v1/me").json()
        assert me["bootstrap"] is True and me["role"] == "admin" and me["name"] == "admin"
        wf = api.get("/api/v1/workflows").json()["items"]
        assert [(w["name"], w["project"]) for w in wf] == [("legacy", "default")]
        assert api.get("/api/v1/instances").json()["total"] == 1
        assert api.get("/api/v1/schedules").json()["total"] == 1
        assert api.get("/api/v1/datasources").json()["items"][0]["project"] == "default"
        assert api.get("/api/v1/task-groups").json()["items"][0]["project"] == "default"
        r = api.post("/api/v1/workflows/1/runs", json={})
        assert r.status_code == 202, r.text
        audit = api.get("/api/v1/audit").json()["items"]
        assert audit[0]["actor"] == "admin" and audit[0]["action"] == "run_workflow"


def test_migrate_makes_the_first_admin_and_prints_its_token_once(
    old_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in [k for k in os.environ if k.startswith("DAGKEEPER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DAGKEEPER_DB__URL", old_db)
    monkeypatch.setenv("DAGKEEPER_DATA_DIR", str(tmp_path))
    assert cli.main(["migrate"]) == 0
    first = capsys.readouterr().out
    token_file = tmp_path / "api-token"
    token = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert f"(shown once; kept in {token_file}, mode 0600): {token}" in first
    assert cli.main(["migrate"]) == 0
    second = capsys.readouterr().out
    assert token not in second and f"its token is in {token_file}" in second
