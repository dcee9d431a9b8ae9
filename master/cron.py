"""The cron leader: every master is a candidate (an ephemeral sequential znode under
ZkPaths.cron_election()); the lowest one fires due schedules and reconciles backfills. Each fire
is one transaction with the advanced next fire time, and leadership is re-checked before it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kazoo.client import KazooState
from kazoo.exceptions import NoNodeError

from coord.zk import ZkClient
from core.errors import NotFound, ValidationError
from core.settings import CronSettings
from db import schedules as q_schedules
from db.engine import SessionFactory
from master import alerting, backfill
from master.cron_plan import plan, scan_due
from master.retention import Retention

log = logging.getLogger(__name__)

DUE_BATCH = 100


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _seq(name: str) -> str:
    return name[-10:]


@dataclass
class CronPass:
    """What one pass did (for tests and the log)."""

    leader: bool = False
    fired: list[tuple[int, datetime, int]] = field(default_factory=list)  # schedule, time, inst.
    skipped: int = 0
    backfill_submitted: list[int] = field(default_factory=list)


class CronLeader:
    """Run by each master's loop (``tick``) or by tests (``run_once(now)``); never blocks on ZK
    watches: candidacy and leadership are read synchronously on each pass."""

    def __init__(
        self,
        sf: SessionFactory,
        zk: ZkClient,
        master_id: str,
        settings: CronSettings,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.sf = sf
        self.zk = zk
        self.master_id = master_id
        self.settings = settings
        self.clock = clock
        self.node: str | None = None
        self.was_leader = False
        self._last_tick = 0.0
        self.retention = Retention(sf, settings, self.actor, self.is_leader)  # the daily purge

    @property
    def actor(self) -> str:
        return f"cron {self.master_id}"

    # election ----------------------------------------------------------------------------
    def _ensure_candidate(self) -> None:
        client = self.zk.client
        if self.node is not None:
            stat = client.exists(self.node)
            if stat is not None and stat.ephemeralOwner == self.zk.session_id:
                return
            self.node = None
        base = self.zk.paths.cron_election()
        client.ensure_path(base)
        self.node = client.create(
            f"{base}/{self.master_id}__", self.master_id.encode(), ephemeral=True, sequence=True
        )
        log.info("%s: candidate for cron leader as %s", self.actor, self.node)

    def is_leader(self) -> bool:
        """True only while our session is connected and our znode is the lowest contender."""
        client = self.zk.client
        if self.node is None or client.state != KazooState.CONNECTED:
            return False
        try:
            children = client.get_children(self.zk.paths.cron_election())
        except NoNodeError:
            return False
        if not children:
            return False
        return min(children, key=_seq) == self.node.rsplit("/", 1)[1]

    def resign(self) -> None:
        """Leave the election (on a graceful stop), so another master takes over at once."""
        if self.node is not None:
            try:
                self.zk.client.delete(self.node)
            except Exception:  # the session may be gone already: the znode goes with it
                log.debug("%s: could not delete %s", self.actor, self.node, exc_info=True)
            self.node = None
        self.was_leader = False

    # the loop ----------------------------------------------------------------------------
    def tick(self) -> CronPass | None:
        """Called from the master's loop: a pass every tick interval; errors are logged here
        (an outage makes this pass a no-op, the next one tries again)."""
        if not self.settings.enabled:
            return None
        now_m = time.monotonic()
        if now_m - self._last_tick < self.settings.tick_interval_s:
            return None
        self._last_tick = now_m
        try:
            return self.run_once(self.clock())
        except Exception:
            log.exception("%s: pass failed; retrying on the next tick", self.actor)
            self.was_leader = False
            return None

    def run_once(self, now: datetime | None = None) -> CronPass:
        now = now or self.clock()
        out = CronPass()
        self._ensure_candidate()
        out.leader = self.is_leader()
        if out.leader != self.was_leader:
            log.info(
                "%s: %s cron leader", self.actor, "became" if out.leader else "is no longer the"
            )
            self.was_leader = out.leader
        if not out.leader:
            return out
        with self.sf.begin() as s:
            due = q_schedules.due_ids(s, now, DUE_BATCH)
        for sid in due:
            if not self._fire_schedule(sid, now, out):
                break
        out.backfill_submitted = backfill.reconcile(self.sf, self.actor, self.is_leader)
        self.retention.tick()
        return out

    def _fire_schedule(self, schedule_id: int, now: datetime, out: CronPass) -> bool:
        """Fire one schedule's due times (several passes while FIRE_ALL catches up); False when
        leadership was lost."""
        while True:
            with self.sf.begin() as s:
                row = q_schedules.lock_due(s, schedule_id, now)
                if row is None:
                    return True
                assert row.next_fire_time is not None
                try:
                    scan = scan_due(
                        row.cron,
                        row.timezone,
                        row.next_fire_time,
                        now,
                        row.end_time,
                        self.settings.misfire_threshold_s,
                        self.settings.max_catchup,
                        keep_all=row.misfire == "FIRE_ALL",
                    )
                except ValidationError as exc:
                    log.error("%s: schedule %d disabled: %s", self.actor, schedule_id, exc)
                    row.enabled, row.next_fire_time = False, None
                    return True
                p = plan(row.misfire, scan)
                if not self.is_leader():  # checked last, right before the writes commit
                    log.warning("%s: lost leadership before firing %d", self.actor, schedule_id)
                    return False
                try:
                    fired = [(t, q_schedules.fire(s, row, t)) for t in p.fire]
                except NotFound:
                    log.warning("%s: schedule %d: workflow gone; disabled", self.actor, row.id)
                    row.enabled, row.next_fire_time = False, None
                    return True
                row.next_fire_time = p.next_fire
                workflow_id = row.workflow_id
                alerting.fires(s, row.id, workflow_id, row.misfire, scan.missed, scan.missed_count,
                               len(scan.fresh), len(p.fire), p.skipped)  # fmt: skip
            for t, iid in fired:
                if iid is not None:
                    out.fired.append((schedule_id, t, iid))
            out.skipped += p.skipped
            log.info(
                "%s: schedule %d (workflow %d): %s; instances %s; next fire %s",
                self.actor,
                schedule_id,
                workflow_id,
                p.reason,
                [i for _, i in fired][:10],
                p.next_fire.isoformat() if p.next_fire else "none (window over)",
            )
            if p.next_fire is None or p.next_fire > now:
                return True
