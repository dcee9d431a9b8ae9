"""The worker loop's decisions, pure: how many attempts a pass may claim and why (``claim_limit``),
the safe mode an outage puts the worker in, and ``Pass``, what one pass did in one line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pass:
    """What one ``run_once`` did, and why (``reason``: one line, logged at INFO when it acted)."""

    claimed: int = 0  # attempts claimed from the queues
    finished: int = 0  # attempts whose outcome came back (final state written, put back...)
    killed: int = 0  # attempts cancelled: kill requests and the self-fence
    abandoned: int = 0  # attempts dropped with a lost session
    events: tuple[str, ...] = ()  # what happened to the session (suspended, re-registered...)
    reason: str = ""

    @property
    def acted(self) -> bool:
        return bool(self.claimed or self.finished or self.killed or self.abandoned or self.events)


@dataclass(frozen=True)
class ClaimView:
    """What the claim decision looks at; ``session`` is "" when the session is usable, else
    why it is not."""

    capacity: int
    running: int
    session: str
    safe_mode: str | None
    draining: str | None = None  # why, while a drain request stands (``worker.drain``)


def claim_limit(view: ClaimView) -> tuple[int, str]:
    """How many attempts to claim now, and the reason."""
    if view.draining is not None:
        return 0, view.draining
    if view.safe_mode is not None:
        return 0, f"safe mode, not claiming: {view.safe_mode}"
    if view.session:
        return 0, f"not claiming: {view.session}"
    free = view.capacity - view.running
    if free <= 0:
        return 0, f"at capacity ({view.running} of {view.capacity} running)"
    return free, f"{free} free slots"


def claimed_reason(limit: int, claimed: int) -> str:
    if claimed:
        return f"claimed {claimed} of {limit} free slots"
    return f"nothing to claim ({limit} free slots)"


# A safe mode that goes on for the same reason is said again (at WARNING) this often.
SAFE_MODE_REMIND_S = 30.0


class SafeMode:
    """An outage (ZooKeeper or PostgreSQL) stops claims until ``until``; times are the loop
    clock's. ``enter`` tells whether to say so: a new safe mode, a new reason, or the same one
    not said for SAFE_MODE_REMIND_S."""

    def __init__(self) -> None:
        self.until = 0.0
        self.reason: str | None = None
        self._said: tuple[str, float] | None = None  # (reason, when) last said

    def enter(self, reason: str, now: float, hold_s: float) -> bool:
        was = self.reason is not None  # not yet over (``leave_if_over``)
        self.until = max(self.until, now + hold_s)
        self.reason = reason
        said = self._said
        if was and said is not None and said[0] == reason and now - said[1] < SAFE_MODE_REMIND_S:
            return False
        self._said = (reason, now)
        return True

    def active(self, now: float) -> str | None:
        """The reason while in safe mode, else None."""
        return self.reason if self.reason is not None and now < self.until else None

    def leave_if_over(self, now: float) -> str | None:
        """The reason of a safe mode that is over now (once), else None."""
        if self.reason is None or now < self.until:
            return None
        reason, self.reason, self._said = self.reason, None, None
        return reason

    def left_s(self, now: float) -> float:
        return max(0.0, self.until - now) if self.reason is not None else 0.0
