"""Engine and session factory; the one place that opens PostgreSQL connections."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import DbSettings

SessionFactory = sessionmaker[Session]

# NOTIFY channels: the API/cron wake masters; workers wake the owning master.
CHANNEL_COMMAND = "dagkeeper_command"
CHANNEL_TASK = "dagkeeper_task"


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
        pool_size=size,
        max_overflow=size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        future=True,
    )


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)
