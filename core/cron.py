"""One cron semantics for dagkeeper: fire times of a parsed expression (core/cron_syntax.py) in an
IANA time zone, exact across DST, every search bounded, and the one "never fires" rule.

Rules (the README's "Schedules and backfill" repeats them):
- 5 fields = ``minute hour day-of-month month day-of-week`` (day-of-week 0-7, 0 and 7 = SUN).
  When both day fields are restricted a day matches if either matches.
- 6 or 7 fields = Quartz ``second minute hour day-of-month month day-of-week [year]``
  (day-of-week 1-7 = SUN-SAT; ``?`` in exactly one day field; ``L``, ``L-n``, ``LW``, ``L-nW``,
  ``nW`` (also in lists), ``nL``, ``n#k``; year 1970-2199).
- A search gives up after ``SEARCH_YEARS`` wall years without a fire, and never goes past
  the wall year ``LAST_YEAR``: an expression that never fires answers at once.
- A wall time inside a spring-forward gap fires once, at the first valid instant after the gap
  (the transition instant); several gap times collapse into that one fire.
- A wall time repeated by a fall-back transition fires once, at its first occurrence.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.cron_syntax import CRON_FIELDS, QUARTZ_FIELDS, CronExpr, MonthDays, WeekDays, parse
from core.errors import ValidationError

__all__ = [
    "CRON_FIELDS",
    "GAP",
    "QUARTZ_FIELDS",
    "REPEAT",
    "SEARCH_YEARS",
    "CronExpr",
    "Fire",
    "check_fires",
    "describe",
    "fire_times",
    "fires",
    "next_fire",
    "next_in_window",
    "parse",
    "preview",
    "resolve",
    "zone",
]

GAP = "GAP"
REPEAT = "REPEAT"
SEARCH_YEARS = 100  # Quartz gives up 100 years ahead as well
LAST_YEAR = 9998  # no wall time after this year is searched (UTC offsets stay within datetime)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # the range a search may start in
LATEST = datetime(LAST_YEAR, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class Fire:
    """One fire: the instant (UTC), the wall time the expression named, and a DST flag."""

    at: datetime
    wall: datetime
    dst: str | None = None


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """An IANA time zone; ValidationError for an unknown name."""
    try:
        if not name or name != name.strip() or ".." in name:
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(
            f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin' or 'UTC')",
            [{"code": "invalid_timezone", "timezone": name}],
        ) from None


# -- days -----------------------------------------------------------------------------------------


def _nearest_weekday(y: int, m: int, day: int, last: int) -> int:
    """Quartz ``W``: the weekday nearest ``day`` without leaving the month."""
    wd = date(y, m, day).weekday()
    if wd == 5:  # Saturday: the Friday before, or Monday the 3rd for the 1st
        return day + 2 if day == 1 else day - 1
    if wd == 6:  # Sunday: the Monday after, or the Friday before for the month's last day
        return day - 2 if day == last else day + 1
    return day


def _dom_ok(r: MonthDays, y: int, m: int, d: int, last: int) -> bool:
    if d in r.days or (last - d) in r.last:
        return True
    if any(n <= last and _nearest_weekday(y, m, n, last) == d for n in r.nearest):
        return True
    return any(
        last - o >= 1 and _nearest_weekday(y, m, last - o, last) == d for o in r.last_nearest
    )


def _dow_ok(r: WeekDays, d: date, last: int) -> bool:
    wd = (d.weekday() + 1) % 7  # 0 = SUN
    if wd in r.days or (wd, (d.day - 1) // 7 + 1) in r.nth:
        return True
    return wd in r.last and d.day + 7 > last


@lru_cache(maxsize=4096)
def _month_days(c: CronExpr, y: int, m: int) -> tuple[int, ...]:
    """The days of month ``m`` of year ``y`` that match both day fields."""
    last = calendar.monthrange(y, m)[1]
    out = []
    for d in range(1, last + 1):
        dom = c.dom.any or _dom_ok(c.dom, y, m, d, last)
        dow = c.dow.any or _dow_ok(c.dow, date(y, m, d), last)
        if (dom or dow) if c.day_or else (dom and dow):
            out.append(d)
    return tuple(out)


def _times(c: CronExpr, after: dtime | None) -> Iterator[tuple[int, int, int]]:
    """(hour, minute, second) of ``c`` strictly after ``after`` (all of a day when None)."""
    h0 = m0 = -1
    if after is not None:
        h0, m0 = after.hour, after.minute
    for h in c.hours[bisect_left(c.hours, h0) :]:
        mins = c.minutes[bisect_left(c.minutes, m0) :] if h == h0 else c.minutes
        for mi in mins:
            if h == h0 and mi == m0 and after is not None:
                secs = c.seconds[bisect_right(c.seconds, after.second) :]
            else:
                secs = c.seconds
            for s in secs:
                yield h, mi, s


def _walls(c: CronExpr, after: datetime) -> Iterator[datetime]:
    """Naive wall times matching ``c`` strictly after the naive ``after``, ascending; gives up
    ``SEARCH_YEARS`` years after ``after`` or the last fire, and after ``LAST_YEAR``."""
    limit = min(after.year + SEARCH_YEARS, LAST_YEAR)
    years = c.years
    y = after.year
    while y <= limit:
        if years is not None:
            i = bisect_left(years, y)
            if i == len(years) or years[i] > limit:
                return
            y = years[i]
        for m in sorted(c.months):
            if (y, m) < (after.year, after.month):
                continue
            for d in _month_days(c, y, m):
                day = date(y, m, d)
                if day < after.date():
                    continue
                for h, mi, s in _times(c, after.time() if day == after.date() else None):
                    yield datetime(y, m, d, h, mi, s)
                    limit = min(y + SEARCH_YEARS, LAST_YEAR)
        y += 1


# -- instants -------------------------------------------------------------------------------------


def resolve(wall: datetime, tz: ZoneInfo) -> tuple[datetime, str | None]:
    """The UTC instant a wall time fires at, and GAP/REPEAT when DST moves it (module rules)."""
    a = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    b = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if a == b:
        return a, None
    if a < b:
        return a, REPEAT
    after = wall.replace(tzinfo=tz, fold=1).utcoffset()
    lo, hi = b, a  # lo is before the transition, hi after it: bisect to the second
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0), GAP


def _wall_of(at: datetime, z: ZoneInfo) -> datetime | None:
    """The naive wall time of an aware instant, None outside the searchable years."""
    try:
        wall = at.astimezone(z).replace(tzinfo=None)
    except (OverflowError, ValueError):
        return None
    return wall if wall.year <= LAST_YEAR else None


def fires(
    expr: str | CronExpr, tz: str | ZoneInfo, after: datetime, until: datetime | None = None
) -> Iterator[Fire]:
    """Fires strictly after the aware instant ``after`` (and not after ``until``), ascending."""
    c = parse(expr) if isinstance(expr, str) else expr
    z = zone(tz) if isinstance(tz, str) else tz
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    last = after
    restart = _wall_of(after, z)
    while restart is not None:
        walls, restart = _walls(c, restart), None
        for w in walls:
            at, flag = resolve(w, z)
            if at <= last:
                continue  # a collapsed gap time, or the second pass of a repeated hour
            if until is not None and at > until:
                return
            yield Fire(at, w, flag)
            last = at
            if flag == GAP:  # the rest of the gap collapses into this fire: jump past it
                restart = at.astimezone(z).replace(tzinfo=None)
                break


def _before(at: datetime) -> datetime:
    """The instant just before ``at`` (``at`` itself at the start of time)."""
    try:
        return at - _MICRO
    except OverflowError:
        return at


def next_fire(
    expr: str | CronExpr, tz: str | ZoneInfo, after: datetime, until: datetime | None = None
) -> datetime | None:
    """The first fire instant strictly after ``after``, or None when there is none."""
    for f in fires(expr, tz, after, until):
        return f.at
    return None


def next_in_window(
    expr: str | CronExpr,
    tz: str | ZoneInfo,
    after: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
) -> datetime | None:
    """The first fire strictly after ``after`` that lies in [start, end], or None."""
    if start is not None and start > after:
        after = _before(start)
    return next_fire(expr, tz, after, end)


def _check_start(at: datetime, field: str) -> None:
    if not EARLIEST <= at < LATEST:
        raise ValidationError(
            f"{field}: {at.isoformat()} is outside the supported range"
            f" {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} (UTC)",
            [{"code": "out_of_range", "field": field}],
        )


def never_fires(expr: str, field: str, end: datetime | None = None) -> ValidationError:
    """The one "never fires" answer of POST /schedules and GET /cron/preview."""
    within = f"before the window's end {end.isoformat()}" if end else f"within {SEARCH_YEARS} years"
    return ValidationError(
        f"{field}: {expr!r} never fires (no fire time {within})",
        [{"code": "never_fires", "field": field, "expr": expr}],
    )


def check_fires(
    expr: str,
    tz: str,
    after: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    field: str = "cron",
) -> datetime:
    """The first fire after ``after`` inside [start, end]; ValidationError naming ``end`` when the
    window ends before it starts, ``start`` out of range, and ``field`` when nothing fires."""
    if start is not None and end is not None and end <= start:
        raise ValidationError(
            "end: the end of the window must be after its start",
            [{"code": "invalid_window", "field": "end"}],
        )
    if start is not None:
        _check_start(start, "start")
    at = next_in_window(expr, tz, after, start, end)
    if at is None:
        raise never_fires(expr, field, end)
    return at


def preview(
    expr: str,
    tz: str,
    start: datetime | None = None,
    count: int = 10,
    field: str | None = None,
) -> list[dict[str, Any]]:
    """The next ``count`` fires from ``start`` (inclusive; default now) as JSON-ready dicts. With
    ``field``, an expression without a fire is refused as in ``check_fires``."""
    z = zone(tz)
    begin = start or datetime.now(UTC)
    if begin.tzinfo is None:
        begin = begin.replace(tzinfo=z)
    if start is not None:
        _check_start(begin, "start")
    out: list[dict[str, Any]] = []
    for f in fires(expr, z, _before(begin)):
        out.append(describe(f, z))
        if len(out) >= count:
            break
    if not out and field is not None:
        raise never_fires(expr, field)
    return out


def describe(f: Fire, z: ZoneInfo) -> dict[str, Any]:
    local = f.at.astimezone(z)
    note = None
    if f.dst == GAP:
        note = (
            f"{f.wall:%H:%M:%S} does not exist on {f.wall:%Y-%m-%d} (DST gap);"
            f" fires at {local:%H:%M:%S %Z}, the first valid instant"
        )
    elif f.dst == REPEAT:
        note = (
            f"{f.wall:%H:%M:%S} occurs twice on {f.wall:%Y-%m-%d} (DST repeat);"
            f" fires once, at the first ({local:%Z})"
        )
    return {
        "time": local.isoformat(),
        "utc": f.at.isoformat(),
        "scheduled_wall_time": f.wall.isoformat(),
        "utc_offset": local.strftime("%z"),
        "dst": f.dst,
        "note": note,
    }


def fire_times(
    expr: str | CronExpr, tz: str | ZoneInfo, start: datetime, end: datetime, limit: int
) -> list[datetime]:
    """Every fire in [start, end] (at most ``limit``; ValidationError beyond it)."""
    out: list[datetime] = []
    for f in fires(expr, tz, _before(start), end):
        out.append(f.at)
        if len(out) > limit:
            raise ValidationError(
                f"more than {limit} fire times between {start.isoformat()} and {end.isoformat()}",
                [{"code": "too_many_dates", "limit": limit}],
            )
    return out
