"""The cron leader's pure decisions: which due fire times of a schedule to fire under its misfire
policy (FIRE_ALL, FIRE_ONCE, SKIP), from a scan of the fire times between its persisted next fire
time and now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core import cron


@dataclass(frozen=True)
class DueScan:
    """Due fire times of one schedule. ``missed`` are older than the misfire threshold (all of
    them when ``keep_all``, else only the newest); ``next_fire`` is the first time not scanned."""

    missed: tuple[datetime, ...]
    missed_count: int
    fresh: tuple[datetime, ...]
    next_fire: datetime | None


@dataclass(frozen=True)
class FirePlan:
    fire: tuple[datetime, ...]
    skipped: int
    next_fire: datetime | None
    reason: str


def scan_due(
    expr: str,
    tz: str,
    next_fire: datetime,
    now: datetime,
    end: datetime | None,
    threshold_s: float,
    cap: int,
    keep_all: bool,
) -> DueScan:
    """Walk the fire times from ``next_fire`` (inclusive) up to ``now``; stop after ``cap`` kept
    times (the rest waits for the next pass, from the returned ``next_fire``)."""
    late = now - timedelta(seconds=threshold_s)
    missed: list[datetime] = []
    fresh: list[datetime] = []
    count = 0
    nxt: datetime | None = None
    for f in cron.fires(expr, tz, next_fire - timedelta(microseconds=1), end):
        if f.at > now or len(fresh) + (len(missed) if keep_all else 0) >= cap:
            nxt = f.at
            break
        if f.at < late:
            count += 1
            if keep_all:
                missed.append(f.at)
            else:
                missed = [f.at]
        else:
            fresh.append(f.at)
    return DueScan(tuple(missed), count, tuple(fresh), nxt)


def plan(policy: str, scan: DueScan) -> FirePlan:
    """What to fire: fresh times always; missed ones all (FIRE_ALL), the newest (FIRE_ONCE) or
    none (SKIP)."""
    n = scan.missed_count
    if policy == "FIRE_ALL" or n == 0:
        fire = scan.missed + scan.fresh
        reason = f"{len(fire)} due" + (f", {n} missed fired (FIRE_ALL)" if n else "")
        return FirePlan(fire, 0, scan.next_fire, reason)
    if policy == "FIRE_ONCE":
        fire = scan.missed[-1:] + scan.fresh
        reason = f"{n} missed fired once at the newest (FIRE_ONCE), {len(scan.fresh)} on time"
        return FirePlan(fire, n - 1, scan.next_fire, reason)
    reason = f"{n} missed skipped (SKIP), {len(scan.fresh)} on time"
    return FirePlan(scan.fresh, n, scan.next_fire, reason)
