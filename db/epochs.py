"""Node epochs from PostgreSQL: every registration of a master or a worker takes the next value
of one sequence, so an epoch (and with it a worker's lease token) never repeats, not even when
ZooKeeper's data is wiped and its zxids start again."""

from __future__ import annotations

from sqlalchemy import Engine, text

from db.engine import SessionFactory

SEQUENCE = "node_epoch_seq"
_NEXT = text(f"SELECT nextval('{SEQUENCE}')")


def next_epoch(bind: Engine | SessionFactory) -> int:
    """A new epoch, greater than every epoch handed out before. Raises when PostgreSQL cannot
    be reached (a node cannot register, nor work, without it)."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            return int(conn.execute(_NEXT).scalar_one())
    with bind.begin() as s:
        return int(s.execute(_NEXT).scalar_one())
