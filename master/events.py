"""What wakes a master's loop, gathered into one batch per pass (task events, commands, resyncs),
and what one pass did with it: the ``LoopPass`` report whose one-line reason the loop logs."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

from db.notify import Event
from master.runner import StepReport


@dataclass
class Batch:
    """The events of one pass, sorted by what they ask for."""

    count: int = 0
    partial: set[int] = field(default_factory=set)  # instances with known changed attempts
    changed: set[int] = field(default_factory=set)  # those attempts
    reload: set[int] = field(default_factory=set)  # instances whose row may have changed
    commands: bool = False  # the command table has something new
    resync: bool = False  # the listener reconnected: anything may have happened


def gather(events: queue.Queue[Event], timeout: float) -> Batch:
    """Wait up to ``timeout`` for a first event, then take everything already queued."""
    pending: list[Event] = []
    try:
        pending.append(events.get(timeout=timeout))
        while True:
            pending.append(events.get_nowait())
    except queue.Empty:
        pass
    return sort(pending)


def sort(pending: list[Event]) -> Batch:
    """Pure: a task event naming its attempt is a partial step; one without (a stop, a pause,
    a child's end) reloads its instance; commands and resyncs ask for a command pass."""
    b = Batch(count=len(pending))
    for ev in pending:
        if ev.kind == "task" and ev.task_instance_id:
            b.partial.add(ev.instance_id)
            b.changed.add(ev.task_instance_id)
        elif ev.kind == "task":
            b.reload.add(ev.instance_id)
        elif ev.kind == "command":
            b.commands = True
        elif ev.kind == "resync":
            b.commands = b.resync = True
    return b


@dataclass
class LoopPass:
    """What one pass of a master's loop did; ``reason`` says it in one line."""

    events: int = 0
    claimed: list[int] = field(default_factory=list)  # instances taken from commands
    adopted: bool = False  # membership changed: adoption and re-offer ran
    reconciled: bool = False
    reoffered: int = 0  # instances with attempts handed to fault tolerance
    stepped: int = 0
    created: int = 0
    finished: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    queued: int = 0  # held-back attempts queued by the refill
    fired: int = 0  # cron fires (cron leader only)
    safe_mode: str = ""  # why the pass did nothing (fenced, outage)

    def stepped_report(self, r: StepReport) -> None:
        """Add what a runner step did."""
        self.stepped += r.stepped
        self.created += r.created
        self.finished += r.finished
        self.lost += r.lost

    @property
    def acted(self) -> bool:
        return bool(
            self.claimed
            or self.reoffered
            or self.created
            or self.finished
            or self.lost
            or self.queued
            or self.fired
        )

    @property
    def reason(self) -> str:
        if self.safe_mode:
            return f"safe mode: {self.safe_mode}"
        parts = []
        if self.claimed:
            parts.append(f"claimed commands for instances {self.claimed[:10]}")
        if self.reoffered:
            parts.append(f"re-offered lost attempts of {self.reoffered} instance(s)")
        if self.created:
            parts.append(f"{self.created} attempt(s) created")
        if self.finished:
            parts.append(f"instances {self.finished[:10]} finished")
        if self.lost:
            parts.append(f"instances {self.lost[:10]} no longer ours")
        if self.queued:
            parts.append(f"{self.queued} held-back attempt(s) queued")
        if self.fired:
            parts.append(f"{self.fired} cron fire(s)")
        if not parts:
            what = f"{self.events} event(s), {self.stepped} instance step(s)"
            return f"nothing to do ({what})"
        return "; ".join(parts) + f" ({self.events} event(s), {self.stepped} step(s))"
