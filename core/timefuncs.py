"""Wall-clock arithmetic in an IANA zone (calendar days and months, absolute minutes) and the
DolphinScheduler calendar functions of ``$[...]`` (month/week boundaries, year_week, timestamp).
Pure, no I/O."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from fractions import Fraction
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.datepattern import week_based
from core.errors import ValidationError


@lru_cache(maxsize=256)
def zone(name: str) -> tzinfo:
    """The IANA zone ``name``; a ValidationError naming it if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(f"unknown time zone {name!r}") from None


def local_time(base: datetime, tz: str | tzinfo) -> datetime:
    """``base`` (aware; naive means UTC) as wall-clock time in ``tz``."""
    z = zone(tz) if isinstance(tz, str) else tz
    if base.tzinfo is None:
        base = base.replace(tzinfo=UTC)
    return base.astimezone(z)


def at_local(wall: datetime, z: tzinfo) -> datetime:
    """Attach zone ``z`` to a naive wall time, deterministically: a time in a spring-forward gap
    moves forward by the gap (02:30 -> 03:30 CEST); an ambiguous fall-back time takes the earlier
    offset (the first occurrence, summer time). Both as java.time's ZonedDateTime.of does."""
    aware = wall.replace(tzinfo=z, fold=0)
    return aware.astimezone(UTC).astimezone(z)


def shift_days(t: datetime, days: int) -> datetime:
    """Move the local date by ``days`` keeping the wall-clock time (calendar arithmetic)."""
    assert t.tzinfo is not None
    return at_local(t.replace(tzinfo=None) + timedelta(days=days), t.tzinfo)


def shift_months(t: datetime, months: int) -> datetime:
    """Move the local month by ``months``, clamping the day (Mar 31 - 1 month = Feb 28/29)."""
    assert t.tzinfo is not None
    m = t.year * 12 + (t.month - 1) + months
    y, mo = divmod(m, 12)
    if not 1 <= y <= 9999:
        raise ValidationError(f"date out of range after adding {months} months")
    day = min(t.day, calendar.monthrange(y, mo + 1)[1])
    return at_local(t.replace(tzinfo=None, year=y, month=mo + 1, day=day), t.tzinfo)


def shift_seconds(t: datetime, seconds: int) -> datetime:
    """Move absolute time (hours, minutes): the wall clock may jump across a DST change."""
    assert t.tzinfo is not None
    return (t.astimezone(UTC) + timedelta(seconds=seconds)).astimezone(t.tzinfo)


def add_days_fraction(t: datetime, days: Fraction, absolute: bool = False) -> datetime:
    """Whole days move the local date (calendar); a fraction of a day (N/24, N/24/60), or any
    count when ``absolute`` (it was written with a '/', e.g. 24/24), moves absolute time by that
    many whole minutes, truncated toward zero as DolphinScheduler does (``+1/7`` is 205 minutes,
    not 205 min 42.9 s)."""
    if days.denominator == 1 and not absolute:
        return shift_days(t, int(days))
    return shift_seconds(t, 60 * int(days * 1440))


# the calendar functions: (t, n) -> the date-time to format ----------------------------------


def _month_start(t: datetime) -> datetime:
    return shift_days(t, 1 - t.day)


def _month_end(t: datetime) -> datetime:
    return shift_days(t, calendar.monthrange(t.year, t.month)[1] - t.day)


def _monday(t: datetime) -> datetime:
    return shift_days(t, -t.weekday())


def _sunday(t: datetime) -> datetime:
    return shift_days(t, 6 - t.weekday())


Shift = Callable[[datetime, int], datetime]
# name -> (least, most arguments, the function of (t, n)); n is 0 when the argument is left out
CALENDAR: dict[str, tuple[int, int, Shift]] = {
    "add_months": (2, 2, shift_months),
    "this_day": (1, 1, lambda t, n: t),
    "last_day": (1, 1, lambda t, n: shift_days(t, -1)),  # DolphinScheduler's: yesterday
    "month_first_day": (1, 2, lambda t, n: _month_start(shift_months(t, n))),
    "month_last_day": (1, 2, lambda t, n: _month_end(shift_months(t, n))),
    "week_first_day": (1, 2, lambda t, n: shift_days(_monday(t), 7 * n)),
    "week_last_day": (1, 2, lambda t, n: shift_days(_sunday(t), 7 * n)),
    "month_begin": (2, 2, lambda t, n: shift_days(_month_start(t), n)),
    "month_end": (2, 2, lambda t, n: shift_days(_month_end(t), n)),
    "week_begin": (2, 2, lambda t, n: shift_days(_monday(t), n)),
    "week_end": (2, 2, lambda t, n: shift_days(_sunday(t), n)),
}


def first_weekday(code: int) -> int:
    """DolphinScheduler's first-day-of-week argument (1=Monday … 7=Sunday, 0 is Monday too) as a
    Python weekday (Monday=0 … Sunday=6). A number outside 0..7 is refused (it would quietly be
    Monday in DolphinScheduler)."""
    if not 0 <= code <= 7:
        raise ValueError("the first day of the week must be 0..7 (1=Monday … 7=Sunday)")
    return max(code, 1) - 1


def year_week(fmt: str, first_day: int, t: datetime) -> str:
    """DolphinScheduler's ``year_week``: the calendar year of ``t`` and java.util.Calendar's
    WEEK_OF_YEAR (weeks start on ``first_day``, week 1 has at least 4 days of the new year), so
    2021-01-01 is ``2021-53`` and 2019-12-30 ``2019-01``. ``yyyy-ww`` when the pattern has a '-',
    else ``yyyyww``."""
    week = week_based(t.date(), first_weekday(first_day), 4)[1]
    return f"{t.year}-{week:02d}" if "-" in fmt else f"{t.year}{week:02d}"


def iso_year_week(fmt: str, first_day: int, t: datetime) -> str:
    """The week-based year and its week (ISO 8601 when weeks start on Monday): 2021-01-01 is
    ``2020-53`` and 2019-12-30 ``2020-01``. Rendered as ``year_week`` is."""
    year, week = week_based(t.date(), first_weekday(first_day), 4)
    return f"{year:04d}-{week:02d}" if "-" in fmt else f"{year:04d}{week:02d}"


def epoch_seconds(text: str, z: tzinfo) -> int:
    """``$[timestamp(...)]``: the formatted ``text`` read back as ``yyyyMMddHHmmss`` wall time in
    zone ``z`` (a day past the month's end is clamped, as java.time's SMART parsing does), as Unix
    epoch seconds."""
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise ValueError(f"timestamp needs a yyyyMMddHHmmss value, got {text!r}")
    y, mo, d, h, mi, s = int(text[:4]), *(int(text[i : i + 2]) for i in range(4, 14, 2))
    if 1 <= mo <= 12 and 29 <= d <= 31:
        d = min(d, calendar.monthrange(max(y, 1), mo)[1])
    try:
        wall = datetime(y, mo, d, h, mi, s)
    except ValueError as exc:
        raise ValueError(f"timestamp of {text!r}: {exc}") from None
    return int(at_local(wall, z).timestamp())
