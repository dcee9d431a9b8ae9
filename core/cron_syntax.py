"""Cron syntax: 5-field cron and 6/7-field Quartz expressions parsed into value sets and day rules
(``CronExpr``), with Quartz's acceptance rules and a 422 message naming the field and the rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from core.errors import ValidationError

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
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
YEARS = (1970, 2199)  # Quartz's documented year range
_RANGES = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "year": YEARS,
}
# Quartz's largest step of a "*/s", "/s" or "a/s" item (Quartz checks no step of "a-b/s")
_MAX_STEP = {"second": 59, "minute": 59, "hour": 23, "day-of-month": 31, "month": 12}
_WORD = r"\d+|[A-Z]+"
_ITEM = re.compile(
    rf"^(?:(?P<star>\*)|(?P<lo>{_WORD})(?:-(?P<hi>{_WORD}))?)?(?:(?P<slash>/)(?P<step>\d*))?$"
)
_DOM_SPECIAL = re.compile(r"^(?:L(?:-(?P<off>\d+))?(?P<lw>W)?|(?P<day>\d+)W)$")
_DOW_SPECIAL = re.compile(r"^(?:(?P<last>\d+|[A-Z]+)L|(?P<day>\d+|[A-Z]+)#(?P<nth>\d+)|L)$")


@dataclass(frozen=True)
class MonthDays:
    """The day-of-month field: plain days, ``L-n`` offsets (``L`` = 0), ``nW`` days and ``L-nW``
    offsets (``LW`` = 0); ``any`` when it restricts nothing (``*``, ``?``, every day)."""

    days: frozenset[int] = frozenset()
    last: frozenset[int] = frozenset()
    nearest: frozenset[int] = frozenset()
    last_nearest: frozenset[int] = frozenset()
    any: bool = True


@dataclass(frozen=True)
class WeekDays:
    """The day-of-week field (0 = SUN .. 6 = SAT): plain days, ``d#k`` pairs, ``dL`` days."""

    days: frozenset[int] = frozenset()
    nth: frozenset[tuple[int, int]] = frozenset()
    last: frozenset[int] = frozenset()
    any: bool = True


@dataclass(frozen=True)
class CronExpr:
    """A parsed expression: sorted value tuples, the two day rules, the years (None = any)."""

    source: str
    kind: str  # "cron" | "quartz"
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    dom: MonthDays
    months: frozenset[int]
    dow: WeekDays
    years: tuple[int, ...] | None
    day_or: bool  # 5-field cron with both day fields restricted: a day matches if either does


def invalid(expr: str, message: str, field: str | None = None) -> ValidationError:
    detail: dict[str, Any] = {"code": "invalid_cron", "expr": expr, "message": message}
    if field:
        detail["field"] = field
    return ValidationError(f"invalid cron expression {expr!r}: {message}", [detail])


class _Field:
    """Parses the items of one field of one expression."""

    def __init__(self, expr: str, name: str, quartz: bool) -> None:
        self.expr, self.name, self.quartz = expr, name, quartz
        self.dow = name == "day-of-week"
        if self.dow:
            self.lo, self.hi = (1, 7) if quartz else (0, 7)
        else:
            self.lo, self.hi = _RANGES[name]

    def fail(self, message: str) -> ValidationError:
        return invalid(self.expr, message, self.name)

    def value(self, token: str) -> int:
        names = _MONTHS if self.name == "month" else _DAYS if self.dow else ()
        if token.isdigit():
            v = int(token)
        elif token in names:
            v = names.index(token) + (1 if self.name == "month" or self.quartz else 0)
        else:
            raise self.fail(f"{self.name} value {token!r} is not a number or name")
        if not self.lo <= v <= self.hi:
            hint = " (Quartz: 1=SUN..7=SAT)" if self.dow and self.quartz else ""
            raise self.fail(f"{self.name} value {v} is out of range {self.lo}-{self.hi}{hint}")
        return v

    def values(self, item: str) -> set[int]:
        """A plain item (``*``, ``n``, ``a-b`` (may wrap around), with an optional ``/step``)."""
        m = _ITEM.match(item)
        if m is None or (
            m.group("star") is None and m.group("lo") is None and not m.group("slash")
        ):
            raise self.fail(f"{self.name} item {item!r} is not valid")
        lo_t, hi_t, step_t = m.group("lo"), m.group("hi"), m.group("step")
        if m.group("slash"):
            if not step_t:
                raise self.fail(f"{self.name} item {item!r}: '/' must be followed by a number")
            step = int(step_t)
            top = _MAX_STEP.get(self.name, 7 if self.dow else None)
            if hi_t is None and top is not None and step > top:
                raise self.fail(f"{self.name} item {item!r}: the step {step} is larger than {top}")
            if step == 0:
                raise self.fail(
                    f"{self.name} item {item!r}: the step must be at least 1"
                    " (Quartz reads a step of 0 as no step)"
                )
            if self.quartz and lo_t is not None and not lo_t.isdigit():
                raise self.fail(
                    f"{self.name} item {item!r}: Quartz ignores a step after a name;"
                    " write the number (e.g. 2/2 for MON/2)"
                )
        else:
            step = 1
        if self.quartz and lo_t and hi_t and lo_t.isdigit() != hi_t.isdigit():
            raise self.fail(
                f"{self.name} range {item!r} mixes a number and a name (Quartz refuses it)"
            )
        cycle_hi = 6 if self.dow and not self.quartz else self.hi
        if lo_t is None:  # "*" or "/s"
            lo, hi = self.lo, cycle_hi
        else:
            lo = self.value(lo_t)
            if hi_t is not None:
                hi = self.value(hi_t)
            elif m.group("slash"):  # "a/s": from a to the field's maximum
                hi = max(lo, cycle_hi)
            else:
                hi = lo
        if hi < lo and self.name == "year":
            raise self.fail(f"year range {lo_t}-{hi_t} runs backwards")
        n = cycle_hi - self.lo + 1
        if hi < lo:  # wrap-around range (58-4, NOV-MAR): continue from the field's minimum
            hi += n
        out = {self.lo + (i - self.lo) % n for i in range(lo, hi + 1, step)}
        if self.dow:  # Quartz 1=SUN..7=SAT and cron 0/7=SUN -> 0=SUN..6=SAT
            out = {(v - 1) % 7 if self.quartz else v % 7 for v in out}
        return out


def _month_days(f: _Field, value: str) -> MonthDays:
    if value in ("*", "?"):
        return MonthDays()
    days: set[int] = set()
    last: set[int] = set()
    nearest: set[int] = set()
    last_nearest: set[int] = set()
    for item in value.split(","):
        m = _DOM_SPECIAL.match(item)
        if m is None:
            if "W" in item or "L" in item:
                raise f.fail(
                    f"day-of-month item {item!r} is not valid ('W' takes a single day"
                    " such as 15W; 'L' stands alone or as L-n, LW, L-nW)"
                )
            days |= f.values(item)
        elif m.group("day") is not None:
            if int(m.group("day")) > 31:
                raise f.fail(f"day-of-month item {item!r}: 'W' needs a day of 1-31")
            nearest.add(f.value(m.group("day")))
        else:
            off = int(m.group("off") or 0)
            if off > 30:
                raise f.fail(f"day-of-month {item!r}: the offset must be 0-30")
            (last_nearest if m.group("lw") else last).add(off)
    full = days == set(range(1, 32)) and not (last or nearest or last_nearest)
    return MonthDays(
        frozenset(days), frozenset(last), frozenset(nearest), frozenset(last_nearest), full
    )


def _week_days(f: _Field, value: str) -> WeekDays:
    if value in ("*", "?"):
        return WeekDays()
    items = value.split(",")
    if f.quartz and len(items) > 1 and "L" in value:
        raise f.fail("Quartz does not support 'L' with other days of the week (use nL alone)")
    if f.quartz and value.count("#") > 1:
        raise f.fail("Quartz does not support more than one 'n#k' day of the week")
    if f.quartz and len(items) > 1 and "#" in value:
        raise f.fail(
            "dagkeeper refuses 'n#k' in a list: Quartz would use only the list's"
            " smallest day; write one n#k"
        )
    days: set[int] = set()
    nth: set[tuple[int, int]] = set()
    last: set[int] = set()
    for item in items:
        m = _DOW_SPECIAL.match(item)
        if m is None:
            days |= f.values(item)
        elif item == "L":  # a bare L in day-of-week is the last day of the week, SAT
            days.add(6)
        elif m.group("last") is not None:
            last |= f.values(m.group("last"))
        else:
            k = int(m.group("nth"))
            if not 1 <= k <= 5:
                raise f.fail(f"day-of-week {item!r}: '#' needs a week number 1-5")
            nth |= {(d, k) for d in f.values(m.group("day"))}
    full = days == set(range(7)) and not (nth or last)
    return WeekDays(frozenset(days), frozenset(nth), frozenset(last), full)


def _split(expr: str) -> tuple[bool, dict[str, str]]:
    source = " ".join(expr.split())
    if not source:
        raise invalid(expr, "the expression is empty")
    up = source.upper()
    if source.startswith("@"):
        if source.lower() not in _ALIASES:
            raise invalid(expr, f"unknown alias (known: {', '.join(sorted(_ALIASES))})")
        up = _ALIASES[source.lower()]
    fields = up.split(" ")
    if len(fields) == 5:
        return False, dict(zip(CRON_FIELDS, fields, strict=True))
    if len(fields) in (6, 7):
        return True, dict(zip(QUARTZ_FIELDS, fields, strict=False))
    raise invalid(
        expr,
        f"expected 5 fields (minute hour day-of-month month day-of-week) or 6-7 Quartz fields"
        f" (second minute hour day-of-month month day-of-week [year]), got {len(fields)}",
    )


def _union(f: _Field, value: str) -> tuple[int, ...]:
    out: set[int] = set()
    for item in value.split(","):
        out |= f.values(item)
    return tuple(sorted(out))


@lru_cache(maxsize=1024)
def parse(expr: str) -> CronExpr:
    """Parse a cron or Quartz expression; ValidationError says what is wrong and which rule."""
    quartz, values = _split(expr)
    for name, value in values.items():
        if "?" in value and (value != "?" or name not in ("day-of-month", "day-of-week")):
            raise invalid(
                expr,
                f"'?' is only allowed in day-of-month or day-of-week, not {name}"
                " (and stands alone)",
                name,
            )
    fields = {n: _Field(expr, n, quartz) for n in values}
    plain = {
        n: _union(fields[n], v)
        for n, v in values.items()
        if n not in ("day-of-month", "day-of-week")
    }
    dom_v, dow_v = values["day-of-month"], values["day-of-week"]
    dom, dow = _month_days(fields["day-of-month"], dom_v), _week_days(fields["day-of-week"], dow_v)
    if quartz and dom_v == "?" and dow_v == "?":
        raise invalid(expr, "'?' may stand in day-of-month or day-of-week, not both")
    if quartz and "?" not in (dom_v, dow_v):
        raise invalid(
            expr,
            "Quartz requires '?' in exactly one of day-of-month and day-of-week"
            " (e.g. '0 0 12 * * ?' or '0 0 12 ? * MON')",
            "day-of-week",
        )
    return CronExpr(
        source=" ".join(expr.split()),
        kind="quartz" if quartz else "cron",
        seconds=plain.get("second", (0,)),
        minutes=plain["minute"],
        hours=plain["hour"],
        dom=dom,
        months=frozenset(plain["month"]),
        dow=dow,
        years=None if values.get("year", "*") == "*" else plain["year"],
        day_or=not quartz and not dom.any and not dow.any,
    )
