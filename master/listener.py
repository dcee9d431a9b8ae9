"""PostgreSQL notification wake-ups (channels and payloads: db/notify.py): a thread that turns
notifications into events on a queue, reconnecting with backoff and asking for a full resync after
every reconnect. A task's notification about an instance its owner does not hold is dropped."""

from __future__ import annotations

import logging
import queue
import select
import threading
import time
from collections.abc import Callable

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import make_url

from db.notify import CHANNEL_TASK, LISTEN_SQL, Event, parse_task_payload

log = logging.getLogger(__name__)


def libpq_dsn(sqlalchemy_url: str) -> str:
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class NotifyListener(threading.Thread):
    def __init__(
        self,
        db_url: str,
        events: queue.Queue[Event],
        actor: str,
        wanted: Callable[[int], bool] | None = None,
    ) -> None:
        super().__init__(name=f"listen-{actor}", daemon=True)
        self.dsn = libpq_dsn(db_url)
        self.events = events
        self.actor = actor
        # which instances' attempt notifications matter (the owner's); None = all of them
        self.wanted = wanted
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            conn = None
            try:
                conn = psycopg2.connect(self.dsn, connect_timeout=5)
                conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
                with conn.cursor() as cur:
                    cur.execute(LISTEN_SQL)
                self.ready.set()
                backoff = 0.1
                # Anything may have happened while we were not listening.
                self.events.put(Event("resync"))
                self._pump(conn)
            except psycopg2.Error as exc:
                self.ready.clear()
                log.warning("%s: notification connection failed (%s); retrying", self.actor, exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass

    def _pump(self, conn: psycopg2.extensions.connection) -> None:
        last_check = time.monotonic()
        while not self.stopping.is_set():
            readable, _, _ = select.select([conn], [], [], 1.0)
            if not readable:
                if time.monotonic() - last_check > 10:
                    # Detect a silently dead connection.
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                    last_check = time.monotonic()
                continue
            conn.poll()
            seen_command = False
            while conn.notifies:
                n = conn.notifies.pop(0)
                if n.channel == CHANNEL_TASK:
                    try:
                        ev = parse_task_payload(n.payload)
                    except ValueError:
                        log.warning("%s: bad task notification %r", self.actor, n.payload)
                        continue
                    # an attempt of somebody else's instance: do not wake the loop for it
                    if ev.task_instance_id and self.wanted and not self.wanted(ev.instance_id):
                        continue
                    self.events.put(ev)
                elif not seen_command:
                    seen_command = True
                    self.events.put(Event("command"))
