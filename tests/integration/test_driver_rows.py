"""``db.engine.driver_rows``, the worker's hot-path statements on the driver's cursor: values are
bound (never spliced), results come back as tuples, and a dropped connection is an outage
(``DBAPIError`` with ``connection_invalidated``) exactly as SQLAlchemy's own statements are."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from core.errors import DatabaseUnavailable
from db.engine import db_errors, driver_rows, is_outage


def test_values_are_bound_and_rows_are_tuples(engine: Engine) -> None:
    with engine.connect() as conn:
        hostile = "x'); DROP TABLE task_instance; --"
        result = driver_rows(
            conn, "SELECT %(v)s, %(n)s + 1, %(a)s", {"v": hostile, "n": 41, "a": [1, 2]}
        )
        assert result.rows == [(hostile, 42, [1, 2])]
        assert conn.execute(text("SELECT to_regclass('task_instance') IS NOT NULL")).scalar()
        assert driver_rows(conn, "SELECT 1 WHERE false", {}).rows == []


def test_a_bad_statement_is_an_error_but_not_an_outage(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(ProgrammingError) as err:
        driver_rows(conn, "SELECT no_such_column FROM task_instance", {})
    assert not is_outage(err.value)


def test_a_dropped_connection_is_an_outage_and_is_invalidated(engine: Engine) -> None:
    with engine.connect() as victim, engine.connect() as killer:
        pid = driver_rows(victim, "SELECT pg_backend_pid()", {}).rows[0][0]
        killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as err:
            driver_rows(victim, "SELECT 1", {})
        assert err.value.connection_invalidated and is_outage(err.value)
        assert victim.invalidated
        with pytest.raises(DatabaseUnavailable, match="PostgreSQL unreachable"), db_errors("test"):
            raise err.value
