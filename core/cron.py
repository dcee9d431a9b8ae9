"""One cron semantics for dagkeeper: standard 5-field cron and Quartz 6/7-field expressions parsed
into croniter form, and fire-time iteration in an IANA time zone that is exact across DST.

Rules (the README's "Schedules and backfill" repeats them):
- 5 fields = ``minute hour day-of-month month day-of-week`` (day-of-week 0-7, 0 and 7 = SUN).
- 6 or 7 fields = Quartz ``second minute hour day-of-month month day-of-week [year]``
  (day-of-week 1-7 = SUN-SAT; ``?`` = no specific value; ``L``, ``L-n``, ``LW``, ``nW``, ``nL``,
  ``n#k``; year 1970-2099). When both day fields are set, a day matches if either matches.
- A wall time inside a spring-forward gap fires once, at the first valid instant after the gap
  (the transition instant); several gap times collapse into that one fire.
- A wall time repeated by a fall-back transition fires once, at its first occurrence.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from core.errors import ValidationError

GAP = "GAP"
REPEAT = "REPEAT"

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
QUARTZ_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week", "year")
_RANGES = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "year": (1970, 2099),
}
_NUM = r"(?:\d+|[A-Z]{3})"
_ITEM = re.compile(rf"^(?P<base>\*|{_NUM}(?:-{_NUM})?)(?:/(?P<step>\d+))?$")


@dataclass(frozen=True)
class CronExpr:
    """A parsed expression: what croniter runs, plus the day rules croniter lacks."""

    source: str
    kind: str  # "cron" | "quartz"
    engine_expr: str  # croniter syntax
    quartz: bool  # croniter second_at_beginning
    last_day_rule: str | None = None  # "LW" or "L-<n>" (checked per day here)
    years: frozenset[int] | None = None


@dataclass(frozen=True)
class Fire:
    """One fire: the instant (UTC), the wall time the expression named, and a DST flag."""

    at: datetime
    wall: datetime
    dst: str | None = None


def _invalid(expr: str, message: str, field: str | None = None) -> ValidationError:
    detail: dict[str, Any] = {"code": "invalid_cron", "expr": expr, "message": message}
    if field:
        detail["field"] = field
    return ValidationError(f"invalid cron expression {expr!r}: {message}", [detail])


def _value(token: str, field: str, quartz: bool, expr: str) -> int:
    names = _MONTHS if field == "month" else _DAYS if field == "day-of-week" else ""
    if token.isdigit():
        v = int(token)
    elif names and token in names.split("|"):
        v = names.split("|").index(token) + (1 if field == "month" or quartz else 0)
    else:
        raise _invalid(expr, f"{field} value {token!r} is not a number or name", field)
    if field == "day-of-week":
        lo, hi = (1, 7) if quartz else (0, 7)
    else:
        lo, hi = _RANGES[field]
    if not lo <= v <= hi:
        hint = " (Quartz: 1=SUN..7=SAT)" if field == "day-of-week" and quartz else ""
        raise _invalid(expr, f"{field} value {v} is out of range {lo}-{hi}{hint}", field)
    return v


def _check_item(item: str, field: str, quartz: bool, expr: str) -> str:
    """Validate one list item of a field; return it translated to croniter syntax."""
    dow = field == "day-of-week"
    if dow and "#" in item:
        day, _, nth = item.partition("#")
        if not nth.isdigit() or not 1 <= int(nth) <= 5:
            raise _invalid(expr, f"day-of-week {item!r}: '#' needs a week number 1-5", field)
        v = _value(day, field, quartz, expr)
        return f"{(v - 1) % 7 if quartz else v % 7}#{nth}"
    if dow and item.endswith("L") and len(item) > 1:
        v = _value(item[:-1], field, quartz, expr)
        return f"L{(v - 1) % 7 if quartz else v % 7}"
    if dow and item == "L":
        return "6"  # Quartz: a bare L in day-of-week is the last day of the week, SAT
    if field == "day-of-month" and item == "L":
        return item
    if field == "day-of-month" and item.endswith("W"):
        v = _value(item[:-1], field, quartz, expr)
        return f"{v}W"
    m = _ITEM.match(item)
    if m is None:
        raise _invalid(expr, f"{field} item {item!r} is not valid", field)
    base, step = m.group("base"), m.group("step")
    if step is not None and int(step) == 0:
        raise _invalid(expr, f"{field} item {item!r}: the step must be at least 1", field)
    if base == "*":
        return item
    lo_t, _, hi_t = base.partition("-")
    lo = _value(lo_t, field, quartz, expr)
    hi = _value(hi_t, field, quartz, expr) if hi_t else None
    if hi is not None and hi < lo and not dow:
        raise _invalid(expr, f"{field} range {base!r} runs backwards", field)
    if dow and quartz:  # Quartz 1=SUN..7=SAT -> cron 0=SUN..6=SAT
        lo, hi = lo - 1, None if hi is None else hi - 1
    if step is not None and hi is None:  # Quartz/cron "a/s": from a to the field's maximum
        top = 6 if dow else (_RANGES[field][1])
        return f"{lo}-{top}/{step}"
    text = str(lo) if hi is None else f"{lo}-{hi}"
    return text if step is None else f"{text}/{step}"


def _check_field(value: str, field: str, quartz: bool, expr: str) -> str:
    if value == "?":
        if field not in ("day-of-month", "day-of-week"):
            raise _invalid(expr, f"'?' is only allowed in day-of-month or day-of-week, not {field}")
        return "*"
    items = value.split(",")
    if field == "day-of-month" and len(items) > 1 and any(i[-1:] == "W" for i in items):
        raise _invalid(expr, "day-of-month 'W' takes a single day, not a list", field)
    return ",".join(_check_item(i, field, quartz, expr) for i in items)


def _years(value: str, expr: str) -> frozenset[int] | None:
    if value in ("*", "?"):
        return None
    out: set[int] = set()
    for item in value.split(","):
        m = _ITEM.match(item)
        if m is None:
            raise _invalid(expr, f"year item {item!r} is not valid", "year")
        lo_t, _, hi_t = m.group("base").partition("-")
        lo, hi = _RANGES["year"]
        if m.group("base") != "*":
            lo = _value(lo_t, "year", True, expr)
            hi = _value(hi_t, "year", True, expr) if hi_t else (hi if m.group("step") else lo)
        out.update(range(lo, hi + 1, int(m.group("step") or 1)))
    return frozenset(out)


@lru_cache(maxsize=1024)
def parse(expr: str) -> CronExpr:
    """Parse a cron or Quartz expression; ValidationError says what is wrong."""
    source = " ".join(expr.split())
    if not source:
        raise _invalid(expr, "the expression is empty")
    up = source.upper()
    if source.startswith("@"):
        if source.lower() not in _ALIASES:
            raise _invalid(expr, f"unknown alias (known: {', '.join(sorted(_ALIASES))})")
        up = _ALIASES[source.lower()]
    fields = up.split(" ")
    names: tuple[str, ...]
    if len(fields) == 5:
        quartz, names = False, CRON_FIELDS
    elif len(fields) in (6, 7):
        quartz, names = True, QUARTZ_FIELDS
    else:
        raise _invalid(
            expr,
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6-7 Quartz fields"
            f" (second minute hour day-of-month month day-of-week [year]), got {len(fields)}",
        )
    values = dict(zip(names, fields, strict=False))
    dom, dow = values["day-of-month"], values["day-of-week"]
    if quartz and dom == "?" and dow == "?":
        raise _invalid(expr, "'?' may stand in day-of-month or day-of-week, not both")
    rule = None
    if dom == "LW" or re.fullmatch(r"L-\d+", dom):
        if dow not in ("*", "?"):
            raise _invalid(expr, f"day-of-month {dom!r} cannot be combined with a day-of-week")
        if dom != "LW" and not 0 <= int(dom[2:]) <= 30:
            raise _invalid(expr, f"day-of-month {dom!r}: the offset must be 0-30", "day-of-month")
        rule, values["day-of-month"] = dom, "*"
    parts = [_check_field(values[f], f, quartz, expr) for f in names if f != "year" and f in values]
    years = _years(values.get("year", "*"), expr) if quartz else None
    if quartz:
        parts.append(values.get("year", "*"))
    engine = " ".join(parts)
    try:
        croniter(engine, datetime(2000, 1, 1), second_at_beginning=quartz)
    except CroniterError as exc:
        raise _invalid(expr, str(exc).replace(engine.lower(), engine)) from None
    kind = "quartz" if quartz else "cron"
    return CronExpr(source, kind, engine, quartz, rule, years)


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


def _day_ok(rule: str | None, d: date) -> bool:
    if rule is None:
        return True
    last = calendar.monthrange(d.year, d.month)[1]
    if rule == "LW":
        day = last
        while date(d.year, d.month, day).weekday() >= 5:
            day -= 1
        return d.day == day
    return d.day == max(1, last - int(rule[2:]))


def _walls(c: CronExpr, after: datetime) -> Iterator[datetime]:
    """Naive wall times matching ``c`` strictly after the naive ``after``, ascending."""
    start = after
    if c.years is not None:
        ahead = [y for y in c.years if y >= start.year]
        if not ahead:
            return
        if min(ahead) > start.year:
            start = datetime(min(ahead), 1, 1) - timedelta(microseconds=1)
    it = croniter(c.engine_expr, start, second_at_beginning=c.quartz)
    while True:
        try:
            w: datetime = it.get_next(datetime)
        except CroniterBadDateError:
            later = [y for y in c.years or () if y > start.year]
            if not later:
                return
            start = datetime(min(later), 1, 1) - timedelta(microseconds=1)
            it = croniter(c.engine_expr, start, second_at_beginning=c.quartz)
            continue
        if not _day_ok(c.last_day_rule, w.date()):
            start = datetime.combine(w.date(), dtime(23, 59, 59))
            it = croniter(c.engine_expr, start, second_at_beginning=c.quartz)
            continue
        start = w
        yield w


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


def fires(
    expr: str | CronExpr, tz: str | ZoneInfo, after: datetime, until: datetime | None = None
) -> Iterator[Fire]:
    """Fires strictly after the aware instant ``after`` (and not after ``until``), ascending."""
    c = parse(expr) if isinstance(expr, str) else expr
    z = zone(tz) if isinstance(tz, str) else tz
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    last = after
    restart: datetime | None = after.astimezone(z).replace(tzinfo=None)
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


def next_fire(
    expr: str | CronExpr, tz: str | ZoneInfo, after: datetime, until: datetime | None = None
) -> datetime | None:
    """The first fire instant strictly after ``after``, or None when there is none."""
    for f in fires(expr, tz, after, until):
        return f.at
    return None


def preview(
    expr: str, tz: str, start: datetime | None = None, count: int = 10
) -> list[dict[str, Any]]:
    """The next ``count`` fires after ``start`` (default now) as JSON-ready dicts."""
    z = zone(tz)
    begin = start or datetime.now(UTC)
    if begin.tzinfo is None:
        begin = begin.replace(tzinfo=z)
    out: list[dict[str, Any]] = []
    for f in fires(expr, z, begin - timedelta(microseconds=1)):
        out.append(describe(f, z))
        if len(out) >= count:
            break
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


def next_in_window(
    expr: str | CronExpr,
    tz: str | ZoneInfo,
    after: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
) -> datetime | None:
    """The first fire strictly after ``after`` that lies in [start, end], or None."""
    if start is not None and start > after:
        after = start - timedelta(microseconds=1)
    return next_fire(expr, tz, after, end)


def fire_times(
    expr: str | CronExpr, tz: str | ZoneInfo, start: datetime, end: datetime, limit: int
) -> list[datetime]:
    """Every fire in [start, end] (at most ``limit``; ValidationError beyond it)."""
    out: list[datetime] = []
    for f in fires(expr, tz, start - timedelta(microseconds=1), end):
        out.append(f.at)
        if len(out) > limit:
            raise ValidationError(
                f"more than {limit} fire times between {start.isoformat()} and {end.isoformat()}",
                [{"code": "too_many_dates", "limit": limit}],
            )
    return out
