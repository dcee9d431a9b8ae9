"""DolphinScheduler-style time expressions (the text inside ``$[...]``): Java date patterns, day/hour
arithmetic and the calendar functions, computed in a workflow's IANA time zone. Pure, no I/O."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from fractions import Fraction
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ValidationError

# Java pattern letters we format; any other ASCII letter outside '...' quotes is an error
# (catches ``YYYY``/``DD`` typos, which mean something else in Java).
_LETTERS = "yMdHhmsS"
_FUNC_RE = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.S)
# a pattern followed by arithmetic: the shortest prefix whose rest is [+-] digits and operators
_ARITH_RE = re.compile(r"^(?P<fmt>.+?)(?P<expr>[+-][0-9\s+\-*/()]*)$", re.S)
_FUNCTIONS = (
    "add_months",
    "this_day",
    "last_day",
    "month_first_day",
    "month_last_day",
    "week_first_day",
    "week_last_day",
    "year_week",
)


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


def format_java(pattern: str, t: datetime) -> str:
    """Format ``t`` with a Java-style pattern: yyyy yy MM M dd d HH H hh h mm m ss s SSS; text in
    '...' is literal ('' is a quote); other non-letters are literal."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "'":
            end = pattern.find("'", i + 1)
            if end < 0:
                raise ValidationError(f"unterminated quote in date pattern {pattern!r}")
            out.append(pattern[i + 1 : end] if end > i + 1 else "'")
            i = end + 1
            continue
        if not ("a" <= c <= "z" or "A" <= c <= "Z"):
            out.append(c)
            i += 1
            continue
        j = i
        while j < n and pattern[j] == c:
            j += 1
        out.append(_field(c, j - i, t, pattern))
        i = j
    return "".join(out)


def _field(letter: str, width: int, t: datetime, pattern: str) -> str:
    if letter not in _LETTERS:
        raise ValidationError(
            f"unsupported letter {letter!r} in date pattern {pattern!r}"
            " (use yyyy, MM, dd, HH, mm, ss; quote literal text as 'text')"
        )
    if letter == "y":
        return f"{t.year % 100:02d}" if width == 2 else f"{t.year:0{width}d}"
    if letter == "S":
        return f"{t.microsecond // 1000:03d}"[:width].ljust(width, "0")
    value = {
        "M": t.month,
        "d": t.day,
        "H": t.hour,
        "h": (t.hour % 12) or 12,
        "m": t.minute,
        "s": t.second,
    }[letter]
    return f"{value:0{width}d}"


# arithmetic ------------------------------------------------------------------------------------


@dataclass
class _Arith:
    text: str
    pos: int = 0

    def parse(self) -> Fraction:
        v = self.sum()
        self.skip()
        if self.pos != len(self.text):
            raise ValueError("trailing text")
        return v

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def sum(self) -> Fraction:
        v = self.product()
        while self.peek() in ("+", "-") and self.peek():
            op = self.text[self.pos]
            self.pos += 1
            v = v + self.product() if op == "+" else v - self.product()
        return v

    def product(self) -> Fraction:
        v = self.unary()
        while self.peek() in ("*", "/") and self.peek():
            op = self.text[self.pos]
            self.pos += 1
            rhs = self.unary()
            if op == "/" and rhs == 0:
                raise ValueError("division by zero")
            v = v * rhs if op == "*" else v / rhs
        return v

    def unary(self) -> Fraction:
        c = self.peek()
        if c in ("+", "-") and c:
            self.pos += 1
            return -self.unary() if c == "-" else self.unary()
        if c == "(":
            self.pos += 1
            v = self.sum()
            if self.peek() != ")":
                raise ValueError("missing ')'")
            self.pos += 1
            return v
        m = re.compile(r"\d{1,9}").match(self.text, self.pos)
        if not m:
            raise ValueError("number expected")
        self.pos = m.end()
        return Fraction(int(m.group()))


def arith(text: str) -> Fraction:
    """Evaluate integer arithmetic with + - * / and parentheses, exactly."""
    return _Arith(text).parse()


def _int_arg(expr: str, text: str) -> int:
    try:
        v = arith(text)
    except ValueError as exc:
        raise ValidationError(f"bad number {text.strip()!r} in $[{expr}]: {exc}") from None
    if v.denominator != 1:
        raise ValidationError(f"$[{expr}]: {text.strip()!r} is not a whole number")
    return int(v)


def _split_args(expr: str, inner: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for c in inner:
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        depth += (c == "(") - (c == ")")
        cur.append(c)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def add_days_fraction(t: datetime, days: Fraction) -> datetime:
    """Whole days move the local date (calendar); fractions of a day (N/24, N/24/60) move
    absolute time by that many seconds."""
    if days.denominator == 1:
        return shift_days(t, int(days))
    return shift_seconds(t, round(days * 86400))


def evaluate(expr: str, base: datetime, tz: str | tzinfo) -> str:
    """The value of the time expression ``expr`` (without ``$[ ]``) at ``base`` in ``tz``."""
    t = local_time(base, tz)
    m = _FUNC_RE.match(expr)
    if m and m.group(1) in _FUNCTIONS:
        return _function(expr, m.group(1), _split_args(expr, m.group(2)), t)
    if m:
        raise ValidationError(
            f"unknown function {m.group(1)!r} in $[{expr}] (known: {', '.join(_FUNCTIONS)})"
        )
    fmt, offset = expr, Fraction(0)
    am = _ARITH_RE.match(expr)
    if am:
        try:
            fmt, offset = am.group("fmt").rstrip(), arith(am.group("expr"))
        except ValueError as exc:
            raise ValidationError(
                f"bad arithmetic {am.group('expr').strip()!r} in $[{expr}]: {exc}"
            ) from None
    if not fmt.strip():
        raise ValidationError(f"empty date pattern in $[{expr}]")
    try:
        return format_java(fmt, add_days_fraction(t, offset))
    except ValidationError as exc:
        raise ValidationError(f"bad time expression $[{expr}]: {exc.message}") from None
    except OverflowError:
        raise ValidationError(f"bad time expression $[{expr}]: date out of range") from None


def _function(expr: str, name: str, args: list[str], t: datetime) -> str:
    arity = {"this_day": (1, 1), "last_day": (1, 1), "year_week": (1, 2)}.get(name, (2, 2))
    if not arity[0] <= len(args) <= arity[1] or not args[0]:
        want = "/".join(str(a) for a in sorted(set(arity)))
        raise ValidationError(f"$[{expr}]: {name} takes {want} argument(s)")
    fmt = args[0]
    n = _int_arg(expr, args[1]) if len(args) > 1 else 0
    try:
        if name == "add_months":
            r = shift_months(t, n)
        elif name == "this_day":
            r = t
        elif name in ("last_day", "month_last_day"):
            m = shift_months(t, n) if name == "month_last_day" else t
            r = shift_days(m, calendar.monthrange(m.year, m.month)[1] - m.day)
        elif name == "month_first_day":
            m = shift_months(t, n)
            r = shift_days(m, 1 - m.day)
        elif name == "week_first_day":
            r = shift_days(t, 7 * n - t.weekday())
        elif name == "week_last_day":
            r = shift_days(t, 7 * n + 6 - t.weekday())
        else:
            return _year_week(expr, fmt, n if len(args) > 1 else 1, t)
        return format_java(fmt, r)
    except ValidationError as exc:
        raise ValidationError(f"bad time expression $[{expr}]: {exc.message}") from None
    except OverflowError:
        raise ValidationError(f"bad time expression $[{expr}]: date out of range") from None


def _year_week(expr: str, fmt: str, first_day: int, t: datetime) -> str:
    """Week-based year and week number; weeks start on ``first_day`` (1=Monday … 7=Sunday, 0 is
    Sunday too) and week 1 is the first week with at least 4 days in the new year (ISO when
    Monday). Rendered ``yyyy-ww`` when the pattern contains '-', else ``yyyyww``."""
    if not 0 <= first_day <= 7:
        raise ValidationError(f"$[{expr}]: the first day of the week must be 0..7")
    start = (first_day - 1) % 7  # Python weekday of the first day: Monday=0 … Sunday=6
    d = t.date()

    def week1_start(year: int) -> date:
        jan4 = date(year, 1, 4)  # week 1 holds Jan 4 <=> it has >= 4 days in the year
        return jan4 - timedelta(days=(jan4.weekday() - start) % 7)

    year = d.year
    if d < week1_start(year):
        year -= 1
    elif d >= week1_start(year + 1):
        year += 1
    week = (d - week1_start(year)).days // 7 + 1
    return f"{year:04d}-{week:02d}" if "-" in fmt else f"{year:04d}{week:02d}"
