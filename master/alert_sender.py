"""The alert sender: a thread on every master (beside, never inside, the scheduling loop) that
claims due alert rows, sends each to its channels and marks it; a channel that fails is retried
with exponential backoff up to ``alerts.max_tries``, channels that took the alert are not sent
it again. ``decide`` is the pure part: what a row's try comes to."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from core import metrics
from core.alert_render import AlertView
from core.crypto import SecretBox
from core.errors import ChannelError, DagkeeperError
from core.settings import Settings
from core.states import AlertStatus
from db import alert_outbox as q
from db.engine import SessionFactory, is_outage
from master.alert_channels import SENDERS

log = logging.getLogger(__name__)

SENT = "SENT"  # a channel's entry in ``deliveries`` once it took the alert


def backoff_s(tries: int, base_s: float, max_s: float) -> float:
    """Delay before try ``tries + 1``: base, 2 x base, 4 x base ... at most ``max_s``."""
    return float(min(max_s, base_s * (2 ** max(0, tries - 1))))


def decide(
    channels: list[str], deliveries: dict[str, Any], tries: int, max_tries: int
) -> tuple[AlertStatus, str]:
    """Pure: the row's status after a try whose per-channel outcome is in ``deliveries``
    (channel -> SENT or the error), and a one-line reason."""
    if not channels:
        return AlertStatus.SKIPPED, "no channel to send it to"
    failed = [c for c in channels if deliveries.get(c) != SENT]
    if not failed:
        return AlertStatus.SENT, f"sent to {', '.join(channels)}"
    why = "; ".join(f"{c}: {deliveries.get(c)}" for c in failed)
    if tries >= max_tries:
        return AlertStatus.FAILED, f"gave up after {tries} tries: {why}"
    return AlertStatus.WAIT, f"try {tries} failed: {why}"


@dataclass
class SendPass:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        done = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
        return f"{self.claimed} alert(s): {done}" if self.claimed else "no alert due"


class AlertSender:
    def __init__(self, sf: SessionFactory, settings: Settings, actor: str) -> None:
        self.sf = sf
        self._engine = sf.kw["bind"]
        self.settings = settings
        self.cfg = settings.alerts
        self.actor = actor
        a = settings.api
        self.base_url = self.cfg.base_url or f"http://{a.host}:{a.port}"
        self._box: SecretBox | None = None
        self._outage = False

    def _secrets(self, enc: str | None) -> dict[str, Any]:
        if not enc:
            return {}
        if self._box is None:
            self._box = SecretBox.from_settings(self.settings)
        return dict(json.loads(self._box.decrypt(enc)))

    def run_once(self) -> SendPass:
        """Claim up to ``alerts.batch`` due rows and try each once."""
        p = SendPass()
        # one statement, atomic on its own: autocommit spares an idle poll its BEGIN/COMMIT
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            due = q.claim_due(c, self.cfg.batch, self.cfg.claim_s)
        if not due:
            return p
        p.claimed = len(due)
        groups = sorted({a.group for a in due if a.group})
        with self.sf.begin() as s:
            by_group, glob = q.channels_by_group(s, groups)
        for a in due:
            chans = list(by_group.get(a.group, [])) if a.group else []
            if a.group is None or a.kind in q.CLUSTER_KINDS:
                chans += [g for g in glob if g.id not in {c.id for c in chans}]
            status = self._try(a, chans)
            p.outcomes[status.value] = p.outcomes.get(status.value, 0) + 1
        return p

    def _try(self, a: q.DueAlert, chans: list[q.ChannelRow]) -> AlertStatus:
        view = AlertView(
            a.id, a.kind, a.title, a.content, a.workflow_instance_id, a.workflow,
            a.created_at.isoformat(),
        )  # fmt: skip
        deliveries = dict(a.deliveries)
        for ch in chans:
            if deliveries.get(ch.name) == SENT:
                continue
            try:
                send = SENDERS.get(ch.kind)
                if send is None:
                    raise ChannelError(f"unknown channel kind {ch.kind!r}")
                receipt = send(
                    ch.params, self._secrets(ch.secret_enc), view, self.base_url,
                    self.cfg.send_timeout_s,
                )  # fmt: skip
                deliveries[ch.name] = SENT
                metrics.alert_sent(ch.kind, True)
                log.info("%s: alert %d (%s) -> %s: %s", self.actor, a.id, a.kind, ch.name, receipt)
            except (DagkeeperError, ValueError) as exc:
                msg = exc.message if isinstance(exc, DagkeeperError) else str(exc)
                deliveries[ch.name] = msg[:500]
                metrics.alert_sent(ch.kind, False)
                log.warning(
                    "%s: alert %d (%s) -> %s failed: %s", self.actor, a.id, a.kind, ch.name, msg
                )
        names = [c.name for c in chans]
        status, why = decide(names, deliveries, a.tries, self.cfg.max_tries)
        delay = backoff_s(a.tries, self.cfg.retry_base_s, self.cfg.retry_max_s)
        err = None if status in (AlertStatus.SENT, AlertStatus.SKIPPED) else why
        if status == AlertStatus.SKIPPED:
            err = why
        with self.sf.begin() as s:
            q.mark(s, a.id, status, deliveries, err, delay)
        if status == AlertStatus.WAIT:
            log.info("%s: alert %d: %s; again in %.1fs", self.actor, a.id, why, delay)
        elif status != AlertStatus.SENT:
            log.warning("%s: alert %d %s: %s", self.actor, a.id, status.value, why)
        return status

    def serve(self, stop: threading.Event) -> None:
        """Passes every ``alerts.poll_interval_s`` (at once again after a full batch) until
        ``stop``; PostgreSQL outages are logged once and waited out."""
        log.info("%s: alert sender started", self.actor)
        while not stop.is_set():
            try:
                p = self.run_once()
                if self._outage:
                    log.info("%s: alert sender reaches PostgreSQL again", self.actor)
                self._outage = False
            except Exception as exc:
                if not is_outage(exc):
                    log.exception("%s: alert pass failed", self.actor)
                elif not self._outage:
                    log.warning("%s: alert sender: PostgreSQL unreachable: %s", self.actor,
                                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)  # fmt: skip
                self._outage = True
                stop.wait(self.cfg.poll_interval_s)
                continue
            if p.claimed:
                log.debug("%s: alert pass: %s", self.actor, p.reason)
            if p.claimed < self.cfg.batch:
                stop.wait(self.cfg.poll_interval_s)

    def start(self, stop: threading.Event) -> threading.Thread:
        t = threading.Thread(target=self.serve, args=(stop,), name="alert-sender", daemon=True)
        t.start()
        return t
