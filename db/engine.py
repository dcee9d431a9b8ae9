"""Engine and session factory; the one place that opens PostgreSQL connections."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import DatabaseUnavailable
from core.settings import DbSettings

SessionFactory = sessionmaker[Session]


def make_engine(
    db: DbSettings | str, pool_size: int | None = None, pre_ping: bool = True
) -> Engine:
    """A pooled engine. ``pre_ping`` tests every checkout with a round trip; a loop that retries
    a failed pass anyway (the master) turns it off: a connection broken by a PostgreSQL restart
    then fails one pass, and SQLAlchemy drops the whole pool with it."""
    url = db if isinstance(db, str) else db.url
    size = pool_size or (5 if isinstance(db, str) else db.pool_size)
    return create_engine(
        url,
        # the password (from its file) and TLS options beside the URL: never in a URL or a log
        connect_args={} if isinstance(db, str) else db.connect_args(),
        pool_size=size,
        max_overflow=size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        future=True,
    )


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


def is_outage(exc: BaseException) -> bool:
    """PostgreSQL is unreachable or dropped the connection (as opposed to a bad statement)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@contextmanager
def db_errors(actor: str) -> Iterator[None]:
    """Turn a PostgreSQL outage raised inside the block into one ``DatabaseUnavailable``."""
    try:
        yield
    except DBAPIError as exc:
        if not is_outage(exc):
            raise
        first = str(exc.orig or exc).strip().splitlines()
        raise DatabaseUnavailable(
            f"{actor}: PostgreSQL unreachable ({first[0] if first else type(exc).__name__})"
        ) from exc


def driver_rows(s: Session | Connection, sql: str, params: Mapping[str, Any]) -> DriverResult:
    """Run ``sql`` (``%(name)s`` placeholders, values bound by the driver, never spliced) on the
    DBAPI cursor of ``s``'s connection, skipping SQLAlchemy's statement machinery: the worker's
    hot path runs a few of these per task, hundreds of times a second. A driver error comes out
    as SQLAlchemy's (``DBAPIError``, ``connection_invalidated`` on a dropped connection, which is
    invalidated), so ``is_outage`` and ``db_errors`` see it as they see any other."""
    conn = s.connection() if isinstance(s, Session) else s
    fairy = conn.connection
    cur = fairy.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description is not None else []
        return DriverResult(list(rows), cur.rowcount)
    except conn.dialect.loaded_dbapi.Error as exc:
        dropped = conn.dialect.is_disconnect(exc, fairy.dbapi_connection, cur)
        if dropped:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql, dict(params), exc, conn.dialect.loaded_dbapi.Error, connection_invalidated=dropped
        ) from exc
    finally:
        with suppress(Exception):  # a dropped connection may refuse even this
            cur.close()


@dataclass(frozen=True)
class DriverResult:
    """The rows (tuples) a ``driver_rows`` statement returned and its row count."""

    rows: list[tuple[Any, ...]]
    rowcount: int
