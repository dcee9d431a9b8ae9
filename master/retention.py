"""The retention the cron leader runs (``cron.purge_older_than_days``, every
``cron.purge_interval_s``): ``db.purge`` in a thread of its own, so that a long purge never
holds up the master's loop, stopping between batches once leadership is lost."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from core.settings import CronSettings
from db import purge
from db.engine import SessionFactory

log = logging.getLogger(__name__)


def due(settings: CronSettings, last: float | None, now: float, busy: bool) -> tuple[bool, str]:
    """Pure: whether the leader starts a purge now, and why (not)."""
    if settings.purge_older_than_days <= 0:
        return False, "retention off"
    if busy:
        return False, "a purge is running"
    if last is not None and now - last < settings.purge_interval_s:
        return False, f"next purge in {settings.purge_interval_s - (now - last):.0f}s"
    return True, f"purging what ended over {settings.purge_older_than_days} day(s) ago"


class Retention:
    def __init__(
        self,
        sf: SessionFactory,
        settings: CronSettings,
        actor: str,
        is_leader: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sf, self.settings, self.actor = sf, settings, actor
        self.is_leader = is_leader
        self.clock = clock
        self.last: float | None = None
        self.thread: threading.Thread | None = None
        self.report: purge.PurgeReport | None = None

    def tick(self) -> bool:
        """Called on the leader's passes: start a purge when one is due; True if it did."""
        busy = self.thread is not None and self.thread.is_alive()
        now = self.clock()
        start, why = due(self.settings, self.last, now, busy)
        if not start:
            return False
        self.last = now
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.purge_older_than_days)
        log.info("%s: %s (before %s)", self.actor, why, cutoff.isoformat())
        self.thread = threading.Thread(
            target=self._run, args=(cutoff,), name="retention", daemon=True
        )
        self.thread.start()
        return True

    def _run(self, cutoff: datetime) -> None:
        try:
            self.report = purge.run(
                self.sf, cutoff, keep_going=self.is_leader, actor=f"{self.actor} retention"
            )
        except Exception:  # logged here; the next interval tries again
            log.exception("%s: retention purge failed", self.actor)
