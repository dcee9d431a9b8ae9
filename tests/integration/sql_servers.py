"""Database servers for the SQL/PROCEDURE task tests (a pytest plugin: ``pytest_plugins``): a
private MariaDB (skipped with the reason when mariadbd is not installed: ``apt-get install -y
mariadb-server``), a target database on the test PostgreSQL, and datasource rows."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from core.crypto import SecretBox
from core.settings import Settings
from db.engine import SessionFactory
from db.models import Datasource
from ops.localserver import PostgresServer, free_port, wait_for

MARIA_USER, MARIA_PASSWORD, MARIA_DB = "dk", "maria-Secret-77", "dk"
_numbers = itertools.count(1)


@dataclass
class Maria:
    port: int
    data_dir: Path

    def connect(self, user: str = "root", password: str = "", db: str | None = None):
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=user, password=password, database=db,
            autocommit=True, connect_timeout=5,
        )  # fmt: skip


@pytest.fixture(scope="session")
def maria(server_root: Path, timeout_scale: float) -> Iterator[Maria]:
    mariadbd, install = shutil.which("mariadbd") or "/usr/sbin/mariadbd", "mariadb-install-db"
    if not Path(mariadbd).exists() or shutil.which(install) is None:
        pytest.skip("MariaDB is not installed (apt-get install -y mariadb-server)")
    data = server_root / "maria"
    data.mkdir()
    user = ["--user=root"] if os.geteuid() == 0 else []
    log = open(server_root / "maria.log", "ab")  # noqa: SIM115
    subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
         "--skip-test-db", *user],
        check=True, stdout=log, stderr=subprocess.STDOUT, timeout=120 * timeout_scale,
    )  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [mariadbd, "--no-defaults", f"--datadir={data}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={data}/mysqld.sock", f"--pid-file={data}/pid",
         "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--skip-name-resolve", *user],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    server = Maria(port, data)

    def up() -> bool:
        try:
            server.connect().close()
            return True
        except Exception:
            assert proc.poll() is None, f"mariadbd exited: see {server_root / 'maria.log'}"
            return False

    try:
        wait_for(up, 60 * timeout_scale, interval=0.2, what="mariadbd accepting connections")
        c = server.connect()
        with c.cursor() as cur:
            cur.execute(f"CREATE DATABASE {MARIA_DB}")
            cur.execute(f"CREATE USER '{MARIA_USER}'@'%' IDENTIFIED BY '{MARIA_PASSWORD}'")
            cur.execute(f"GRANT ALL ON {MARIA_DB}.* TO '{MARIA_USER}'@'%'")
        c.close()
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def add_datasource(
    settings: Settings, sf: SessionFactory, name: str, kind: str, port: int, database: str,
    user: str, password: str | None,
) -> None:  # fmt: skip
    """A datasource row as the API makes it (password encrypted with the settings' key)."""
    enc = SecretBox.from_settings(settings).encrypt(password) if password else None
    with sf.begin() as s:
        s.add(Datasource(name=name, kind=kind, host="127.0.0.1", port=port, database=database,
                         username=user, password_enc=enc, options={}))  # fmt: skip


@pytest.fixture
def target(pg_server: PostgresServer) -> Iterator[str]:
    """A second database on the test's PostgreSQL with a small table and a procedure."""
    name = f"dk_target_{next(_numbers)}"
    url = pg_server.create_database(name)
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE items (id int PRIMARY KEY, name text, qty int)"))
        c.execute(text("INSERT INTO items VALUES (1, 'apple', 5), (2, 'pear', 7), (3, 'plum', 9)"))
        c.execute(text("CREATE TABLE audit (what text)"))
        c.execute(text(
            "CREATE PROCEDURE add_mul(IN a int, IN b int, OUT s int, OUT p int) LANGUAGE plpgsql"
            " AS $$ BEGIN s := a + b; p := a * b; END $$"
        ))  # fmt: skip
    eng.dispose()
    yield name
    pg_server.drop_database(name)
