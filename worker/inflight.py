"""The attempts this worker holds, from claim to lease release: the claim pass, outcomes coming
back from the runner threads (release the lease, put the key back, or keep a fenced report until
the session is safe), kill requests, the self-fence, abandoning them with a lost session."""

from __future__ import annotations

import queue
from collections import Counter

from core import metrics
from worker import WorkerLog
from worker.attempt import AttemptHandle, Cancel, Outcome
from worker.ports import AttemptRunner, ClaimSource, KillInbox


class InFlight:
    """``held``: task instance id -> handle, for every lease this session holds."""

    def __init__(self, executor: AttemptRunner, stats: Counter[str], log: WorkerLog) -> None:
        self.executor = executor
        self.stats = stats
        self.log = log
        self.held: dict[int, AttemptHandle] = {}
        self.fenced: list[AttemptHandle] = []
        self._done: queue.SimpleQueue[AttemptHandle] = queue.SimpleQueue()

    def on_done(self, h: AttemptHandle) -> None:
        """A runner thread: the attempt has its outcome (the caller wakes the loop)."""
        self._done.put(h)

    def claim(
        self, fetcher: ClaimSource, limit: int, lease_data: bytes, epoch: int, timeout: float
    ) -> int:
        """Claim up to ``limit`` attempts and start them; how many were claimed. A short wait
        per claim: the loop must stay free to fence (an unanswered claim is checked later)."""
        claims = fetcher.claim(limit, lease_data, epoch, timeout)
        for c in claims:
            self.held[c.task_instance_id] = self.executor.submit(c)
            self.log.debug("claimed task %d from %s", c.task_instance_id, c.group)
        self.stats["claimed"] += len(claims)
        metrics.CLAIMS.inc(len(claims))
        return len(claims)

    def finish(self, fetcher: ClaimSource | None, session_ok: bool) -> int:
        """Act on the outcomes that came back; how many. ``fetcher`` is None only once the
        session is gone, and the leases with it."""
        n = 0
        while True:
            try:
                h = self._done.get_nowait()
            except queue.Empty:
                break
            if self.held.get(h.ti_id) is not h:
                continue  # abandoned with a lost session: its lease is gone already
            del self.held[h.ti_id]
            n += 1
            outcome = h.outcome or Outcome.FINISHED
            self.stats[outcome.value] += 1
            if h.state and outcome is Outcome.FINISHED:
                self.stats[h.state.value] += 1
                metrics.task_ended(h.attempt.type if h.attempt else "", h.state.value)
            if fetcher and outcome in (Outcome.FINISHED, Outcome.SKIPPED):
                fetcher.release_later(h.ti_id)
            elif fetcher and outcome is Outcome.UNCLAIM:
                fetcher.put_back_later(h.claim)
            elif outcome is Outcome.FENCED:
                self.fenced.append(h)
        # a fenced attempt whose session survived: our token is still good, report it
        if self.fenced and session_ok and fetcher is not None:
            self.resume_fenced(fetcher)
        return n

    def resume_fenced(self, fetcher: ClaimSource) -> None:
        """Report the attempts killed by the fence (their session survived), then release."""
        for h in self.fenced:
            self.executor.report(h)
            fetcher.release_later(h.ti_id)
        self.fenced.clear()

    def flush(self, fetcher: ClaimSource, timeout: float, wait_s: float = 0.0) -> int:
        """Lease bookkeeping; claims a connection loss interrupted but that did succeed are
        started now. How many of those."""
        adopted = fetcher.flush(self.held, timeout, wait_s)
        for claim in adopted:
            self.held[claim.task_instance_id] = self.executor.submit(claim)
        return len(adopted)

    def kill_requested(self, inbox: KillInbox) -> int:
        """Kill requests: an attempt we hold is cancelled (SIGTERM, SIGKILL after the grace;
        reported KILL); every request is then deleted. How many were cancelled."""
        killed = inbox.handle(self.held, self.log)
        for h in killed:
            self.executor.cancel(h, Cancel.KILL)
        self.stats["kill_requests"] += len(killed)
        return len(killed)

    def cancel_all(self, reason: Cancel) -> int:
        for h in self.held.values():
            self.executor.cancel(h, reason)
        return len(self.held)

    def withdraw_all(self) -> None:
        """Stopping: attempts not spawned yet are never spawned (their keys go back)."""
        for h in self.held.values():
            self.executor.withdraw(h)

    def abandon_all(self) -> int:
        """The session is lost with every lease: SIGKILL each attempt, write nothing about it."""
        n = len(self.held)
        for h in self.held.values():
            self.executor.abandon(h)
        self.stats["abandoned"] += n
        self.held.clear()
        self.fenced.clear()
        return n
