"""Master lifecycle: registration and heartbeat, the event loop (commands, task events, timers,
membership changes, reconciliation) and self-fencing on ZooKeeper session loss."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from kazoo.recipe.watchers import ChildrenWatch
from sqlalchemy.exc import SQLAlchemyError

from coord.queue import TaskQueue
from coord.zk import SESSION_CONNECTED, SESSION_LOST, SESSION_SUSPENDED, ZkClient, zk_errors
from core.errors import CoordinationUnavailable, DatabaseUnavailable
from core.settings import Settings
from db.engine import db_errors, make_engine, make_session_factory
from db.epochs import next_epoch
from master.cron import CronLeader
from master.events import Batch, LoopPass, gather
from master.listener import Event, NotifyListener
from master.ports import Commands, DbCommands, Failover, ZkFailover
from master.runner import Identity, WorkflowRunner

log = logging.getLogger(__name__)

REGISTER_RETRY_S = 1.0  # how often a master without an epoch (no PostgreSQL) tries again
OUTAGE_RETRY_S = 1.0  # how long the loop waits after a pass that met an outage
OUTAGE_LOG_EVERY_S = 10.0  # an outage is logged when it starts, then this often


class MasterServer:
    """One master. The collaborators (``zk``, ``runner``, ``cron``, ``listener``, ``commands``,
    ``failover``) are built from the settings unless given (unit tests pass fakes)."""

    def __init__(
        self,
        settings: Settings,
        master_id: str | None = None,
        *,
        zk: ZkClient | None = None,
        runner: WorkflowRunner | None = None,
        cron: CronLeader | None = None,
        listener: NotifyListener | None = None,
        commands: Commands | None = None,
        failover: Failover | None = None,
    ) -> None:
        self.settings = settings
        self.master_id = master_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.engine = make_engine(settings.db, pre_ping=False)  # a failed pass is retried
        self.sf = make_session_factory(self.engine)
        self.zk = zk or ZkClient(settings.zk, name=f"master {self.master_id}")
        self.queue = TaskQueue(self.zk.client, self.zk.paths)
        self.runner = runner or WorkflowRunner(
            self.sf,
            self.queue,
            self.zk,
            kill_grace_s=settings.master.kill_grace_s,
            queue_high_water=settings.master.queue_high_water,
        )
        self.events: queue.Queue[Event] = queue.Queue()
        self.listener = listener or NotifyListener(
            settings.db.url, self.events, f"master {self.master_id}", self.runner.owned.__contains__
        )
        self.cron = cron or CronLeader(self.sf, self.zk, self.master_id, settings.cron)
        self.commands: Commands = commands or DbCommands(self.sf)
        self.failover: Failover = failover or ZkFailover(
            self.sf, self.zk, self.queue, settings.zk.session_timeout_s
        )
        self.epoch = 0
        self.started_at = datetime.now(UTC)
        self.fenced = True
        self._membership_changed = threading.Event()
        self._groups_changed = threading.Event()  # set by kazoo: new worker groups to watch
        self._group_watches: dict[str, ChildrenWatch] = {}
        self._outage: str | None = None  # the outage the loop is in (safe mode), if any
        self._outage_logged = 0.0
        self._last_poll = 0.0
        self._last_heartbeat = 0.0
        self._last_reconcile = 0.0
        self._watches: dict[str, ChildrenWatch] = {}
        self._reregister = False  # a new session: register with a new epoch, then adopt
        self._next_register = 0.0

    @property
    def actor(self) -> str:
        return f"master {self.master_id}@{self.epoch}"

    # lifecycle ---------------------------------------------------------------------------
    def start(self, stop: threading.Event | None = None) -> None:
        """Connect and register (retrying while PostgreSQL cannot hand out an epoch, until
        ``stop`` is set), then watch membership and adopt orphaned instances."""
        self.zk.start()
        while True:
            try:
                self._register()
                break
            except SQLAlchemyError as exc:
                log.error(
                    "master %s: no epoch from PostgreSQL (%s); retrying registration",
                    self.master_id,
                    str(exc).splitlines()[0],
                )
                if stop is None:
                    time.sleep(REGISTER_RETRY_S)
                elif stop.wait(REGISTER_RETRY_S):
                    raise CoordinationUnavailable(
                        f"master {self.master_id}: stopped before it could register"
                    ) from exc
        self._watch()
        self.listener.start()
        self.listener.ready.wait(timeout=10)
        try:
            self._adopt()
        except Exception as exc:  # PostgreSQL went away again: the loop adopts once it is back
            log.error(
                "%s: first adoption failed (%s); the loop retries it",
                self.actor,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            self._membership_changed.set()

    def stop(self) -> None:
        log.info("%s: stopping", self.actor)
        self.cron.resign()
        self.listener.stop()
        self.zk.stop()
        self.engine.dispose()

    def _register(self) -> None:
        """A new epoch from PostgreSQL (never reused, not even after ZooKeeper is wiped), then
        the ephemeral znode carrying it. Raises SQLAlchemyError without PostgreSQL."""
        epoch = next_epoch(self.sf)
        data = self._heartbeat_data() | {"epoch": epoch}
        self.zk.register(self.zk.paths.master(self.master_id), data, epoch)
        self.epoch = epoch
        self.runner.identity = Identity(self.master_id, self.epoch)
        self.fenced = False
        log.info("%s: registered at %s", self.actor, self.zk.paths.master(self.master_id))

    def _still_registered(self) -> bool:
        """Our znode, with our epoch, survived the disconnection (same session)."""
        if self.epoch == 0:
            return False
        try:
            return self.zk.member_epoch(self.zk.paths.master(self.master_id)) == self.epoch
        except Exception as exc:  # cannot tell: register anew (a new epoch is always safe)
            log.warning("%s: cannot read our registration (%s)", self.actor, exc)
            return False

    def _try_reregister(self) -> None:
        """After a new session: drop everything, register with a new epoch and adopt. Without
        PostgreSQL (no epoch) or ZooKeeper, stay fenced and try again a second later."""
        if not self.zk.connected.is_set() or time.monotonic() < self._next_register:
            return
        self.runner.drop_all()
        self.epoch = 0
        try:
            self.zk.ensure_roots()  # a new session: the ensemble may have been wiped
            self.queue.forget_paths()
            self._register()
        except Exception as exc:  # PostgreSQL or ZooKeeper away: fenced until it works
            log.error(
                "master %s: cannot re-register (%s); retrying",
                self.master_id,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            self.fenced = True
            self._next_register = time.monotonic() + REGISTER_RETRY_S
            return
        self._reregister = False
        self._watch()
        self._membership_changed.set()
        self._adopt()

    def _watch(self) -> None:
        """(Re)install the membership watches that are not alive (a watch ends for good when
        its path is missing after a new session, e.g. on a wiped ZooKeeper)."""
        paths = self.zk.paths
        for path, cb in (
            (paths.masters(), self._on_members),
            (paths.workers_root(), self._on_worker_groups),
        ):
            w = self._watches.get(path)
            if w is None or w._stopped:
                self._watches[path] = self.zk.watch_children(path, cb)
        self._groups_changed.set()

    def _watch_groups(self) -> None:
        """One children watch per worker group, installed by the loop (never in a callback)
        for groups that have none alive; a group's watch wakes the loop on every join/leave."""
        if not self._groups_changed.is_set():
            return
        self._groups_changed.clear()
        for g in self.zk.children(self.zk.paths.workers_root()):
            w = self._group_watches.get(g)
            if w is None or w._stopped:
                self._group_watches[g] = self.zk.watch_children(
                    self.zk.paths.workers(g), self._on_members
                )

    def _heartbeat_data(self) -> dict[str, Any]:
        return {
            "id": self.master_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "epoch": self.epoch,
            "start_time": self.started_at.isoformat(),
            "heartbeat": datetime.now(UTC).isoformat(),
            "instances": len(self.runner.owned),
            "load": os.getloadavg()[0],
            "metrics_port": self.settings.metrics.port or None,  # master/daemon.py binds it
        }

    # kazoo callbacks: never block --------------------------------------------------------
    def _on_members(self, _children: list[str]) -> None:
        self._membership_changed.set()
        self.events.put(Event("wake"))

    def _on_worker_groups(self, _groups: list[str]) -> None:
        self._groups_changed.set()
        self._membership_changed.set()
        self.events.put(Event("wake"))

    # the loop ----------------------------------------------------------------------------
    def _handle_session_events(self) -> None:
        while True:
            try:
                ev = self.zk.events.get_nowait()
            except queue.Empty:
                break
            if ev == SESSION_SUSPENDED:
                log.warning("%s: ZooKeeper connection suspended; pausing", self.actor)
                self.fenced = True
            elif ev == SESSION_LOST:
                log.error("%s: ZooKeeper session lost; dropping ownership", self.actor)
                self.fenced = True
                self.runner.drop_all()
                self.epoch = 0
                self._reregister = True
            elif ev == SESSION_CONNECTED and self.fenced and not self._reregister:
                if self._still_registered():
                    log.info("%s: ZooKeeper connection resumed", self.actor)
                    self.fenced = False
                else:
                    self._reregister = True
        if self.fenced and self._outage and not self._reregister and self.zk.connected.is_set():
            # fenced by an outage met mid-pass (no session event may follow): leave safe mode
            # once the session is usable and still ours, else register anew
            if self._still_registered():
                log.info("%s: ZooKeeper answers again; leaving safe mode", self.actor)
                self.fenced = False
                self._outage = None
            else:
                self._reregister = True
        if self._reregister:
            self._try_reregister()

    def _adopt(self) -> None:
        adopted = self.failover.adopt(self.master_id, self.epoch)
        ids = self.runner.load_owned()
        if adopted:
            self.runner.requeue_submitted()
        self.runner.step(set(ids))

    def run_once(self, timeout: float = 0.5) -> LoopPass:
        """One pass as named steps: session events, then (unless fenced) wait for events, claim
        commands, handle membership changes, reconcile, step what changed, refill the queue,
        heartbeat and cron. ZooKeeper and PostgreSQL outages raise CoordinationUnavailable and
        DatabaseUnavailable (``serve_forever`` puts the node into its safe mode). Returns what
        the pass did, with a one-line reason."""
        self._handle_session_events()
        if self.fenced:
            time.sleep(min(timeout, 0.2))
            return LoopPass(safe_mode="fenced: no usable ZooKeeper session")
        with zk_errors(self.actor), db_errors(self.actor):
            batch = gather(self.events, self._wait_s(timeout))
            p = LoopPass(events=batch.count)
            now = time.monotonic()
            if batch.reload:
                self.runner.load_owned(sorted(batch.reload))
            dirty = set(batch.reload)
            dirty |= self._claim(p, batch, now)
            dirty |= self._membership(p)
            dirty |= self._reconcile(p, batch, now)
            dirty |= self.runner.due_timers(datetime.now(UTC))
            self._step(p, batch, dirty)
            p.queued += self.runner.refill(kick=bool(batch.changed or batch.reload))
            self._heartbeat(now)
            cron = self.cron.tick()  # cron fires and backfill slots, on the elected master only
            p.fired = len(cron.fired) if cron is not None else 0
        self._outage = None
        return p

    def _wait_s(self, timeout: float) -> float:
        """How long to wait for events: until the next timer, refill or paced step is due."""
        nxt = self.runner.next_timer()
        if nxt is not None:
            timeout = max(0.0, min(timeout, (nxt - datetime.now(UTC)).total_seconds()))
        wait = self.runner.refill_wait()  # held-back attempts, paced steps of large instances
        return timeout if wait is None else min(timeout, wait)

    def _claim(self, p: LoopPass, batch: Batch, now: float) -> set[int]:
        """Claim commands when woken for them, or every poll interval as a fallback."""
        m = self.settings.master
        if not batch.commands and now - self._last_poll < m.command_poll_interval_s:
            return set()
        self._last_poll = now
        claimed = self.commands.claim(self.master_id, self.epoch, m.commands_per_claim)
        if not claimed:
            return set()
        p.claimed = claimed
        return set(self.runner.load_owned(claimed))

    def _membership(self, p: LoopPass) -> set[int]:
        """A master or worker joined or left: watch new groups, adopt, re-offer lost attempts."""
        self._watch_groups()
        if not self._membership_changed.is_set():
            return set()
        self._membership_changed.clear()
        p.adopted = True
        self._adopt()
        lost = self._reoffer()
        p.reoffered += len(lost)
        return lost

    def _reconcile(self, p: LoopPass, batch: Batch, now: float) -> set[int]:
        """Every reconcile interval (or after the listener reconnected): reload what we own,
        queue what was never queued, promote stalled serial runs, re-offer lost attempts."""
        if (
            not batch.resync
            and now - self._last_reconcile < self.settings.master.reconcile_interval_s
        ):
            return set()
        self._last_reconcile = now
        p.reconciled = True
        dirty = set(self.runner.load_owned())
        p.queued += self.runner.requeue_submitted()
        promoted = self.commands.promote_stalled(self.master_id, self.epoch)
        if promoted:
            dirty.update(self.runner.load_owned(promoted))
        lost = self._reoffer()
        p.reoffered += len(lost)
        return dirty | lost

    def _step(self, p: LoopPass, batch: Batch, dirty: set[int]) -> None:
        """Step the dirty instances in full, then the paced ones with task events."""
        if dirty:
            p.stepped_report(self.runner.step(dirty))
        partial, changed = self.runner.pace(batch.partial - dirty, batch.changed, dirty)
        if partial:
            p.stepped_report(self.runner.step(partial, changed))

    def _heartbeat(self, now: float) -> None:
        if now - self._last_heartbeat >= self.settings.master.heartbeat_interval_s:
            self._last_heartbeat = now
            self.zk.set_json(self.zk.paths.master(self.master_id), self._heartbeat_data())

    def _reoffer(self) -> set[int]:
        return self.failover.reoffer(list(self.runner.owned), self.actor)

    def serve_forever(self, stop: threading.Event) -> None:
        """Run passes until ``stop``; an outage is caught here, once per pass, and puts the node
        into its safe mode: without ZooKeeper it is fenced (acts on nothing until its session is
        usable again); without PostgreSQL it retries each second (every write is fenced by its
        epoch, so a late one changes nothing). Acting passes are logged at INFO."""
        while not stop.is_set():
            try:
                p = self.run_once(0.5)
            except CoordinationUnavailable as exc:
                self.fenced = True
                self._enter_outage(str(exc))
                stop.wait(OUTAGE_RETRY_S)
                continue
            except DatabaseUnavailable as exc:
                self._enter_outage(str(exc))
                stop.wait(OUTAGE_RETRY_S)
                continue
            except Exception:  # a bug, not an outage: say so loudly, keep serving the others
                log.exception("%s: loop pass failed; retrying", self.actor)
                stop.wait(OUTAGE_RETRY_S)
                continue
            if p.acted:
                log.info("%s: %s", self.actor, p.reason)
            else:
                log.debug("%s: %s", self.actor, p.reason)

    def _enter_outage(self, why: str) -> None:
        now = time.monotonic()
        if self._outage is None or now - self._outage_logged >= OUTAGE_LOG_EVERY_S:
            log.error("%s: safe mode: %s", self.actor, why)
            self._outage_logged = now
        self._outage = why
