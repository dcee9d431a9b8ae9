"""DolphinScheduler's time expressions (the text inside ``$[...]``): a java.time pattern with day,
hour and minute arithmetic, or a calendar function (add_months, last_day, month_begin, week_end,
year_week, timestamp…), evaluated at a run's base time in its IANA zone. Pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from fractions import Fraction

from core.datepattern import format_java
from core.errors import ValidationError
from core.timefuncs import CALENDAR, epoch_seconds, iso_year_week, year_week
from core.timefuncs import add_days_fraction as add_days_fraction
from core.timefuncs import at_local as at_local
from core.timefuncs import local_time as local_time
from core.timefuncs import shift_days as shift_days
from core.timefuncs import shift_months as shift_months
from core.timefuncs import shift_seconds as shift_seconds
from core.timefuncs import zone as zone

_FUNC_RE = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.S)
# a pattern followed by arithmetic: the shortest prefix whose rest is [+-] digits and operators
_ARITH_RE = re.compile(r"^(?P<fmt>.+?)(?P<expr>[+-][0-9\s+\-*/()]*)$", re.S)
_WEEKS = {"year_week": year_week, "iso_year_week": iso_year_week}
FUNCTIONS = (*CALENDAR, *_WEEKS, "timestamp")


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


def _split_args(inner: str) -> list[str]:
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


def _unquoted(fmt: str) -> str:
    """``fmt`` without its '...' literals."""
    return re.sub(r"'[^']*'", "", fmt)


def _instant(expr: str, text: str, t: datetime) -> tuple[datetime, str]:
    """The date-time and pattern of a pattern-with-arithmetic or calendar function ``text``."""
    m = _FUNC_RE.match(text)
    if m and m.group(1) in CALENDAR:
        name, args = m.group(1), _split_args(m.group(2))
        least, most, fn = CALENDAR[name]
        if not least <= len(args) <= most or not args[0]:
            want = str(least) if least == most else f"{least} or {most}"
            raise ValidationError(f"$[{expr}]: {name} takes {want} argument(s)")
        return fn(t, _int_arg(expr, args[1]) if len(args) > 1 else 0), args[0]
    if m and m.group(1) in FUNCTIONS:
        raise ValidationError(f"$[{expr}]: {m.group(1)} cannot be nested here")
    fmt, offset, absolute = text, Fraction(0), False
    am = _ARITH_RE.match(text)
    if am:
        try:
            fmt, offset = am.group("fmt").rstrip(), arith(am.group("expr"))
            absolute = "/" in am.group("expr")
        except ValueError as exc:
            raise ValidationError(
                f"bad arithmetic {am.group('expr').strip()!r} in $[{expr}]: {exc}"
            ) from None
    if not fmt.strip():
        raise ValidationError(f"empty date pattern in $[{expr}]")
    fm = _FUNC_RE.match(fmt)
    if fm and fm.group(1) in FUNCTIONS:
        raise ValidationError(
            f"$[{expr}]: no arithmetic after a function (DolphinScheduler refuses it too);"
            " give the offset as its argument, e.g. week_end(yyyyMMdd,-1)"
        )
    if "+" in _unquoted(fmt):
        raise ValidationError(
            f"$[{expr}]: '+' outside quotes must start day arithmetic (+N, +N/24, +N/24/60);"
            " quote a literal plus as '+'"
        )
    return add_days_fraction(t, offset, absolute), fmt


def _evaluate(expr: str, t: datetime) -> str:
    m = _FUNC_RE.match(expr)
    name = m.group(1) if m else ""
    if m and name == "timestamp":
        when, fmt = _instant(expr, m.group(2).strip(), t)
        assert t.tzinfo is not None
        try:
            return str(epoch_seconds(format_java(fmt, when), t.tzinfo))
        except ValueError as exc:
            raise ValidationError(f"$[{expr}]: {exc}") from None
    if m and name in _WEEKS:
        args = _split_args(m.group(2))
        if not 1 <= len(args) <= 2 or not args[0]:
            raise ValidationError(f"$[{expr}]: {name} takes 1 or 2 argument(s)")
        try:
            return _WEEKS[name](args[0], _int_arg(expr, args[1]) if len(args) > 1 else 1, t)
        except ValueError as exc:
            raise ValidationError(f"$[{expr}]: {exc}") from None
    try:
        when, fmt = _instant(expr, expr, t)
        return format_java(fmt, when)
    except ValidationError:
        if m and name not in FUNCTIONS:
            raise ValidationError(
                f"unknown function {name!r} in $[{expr}] (known: {', '.join(FUNCTIONS)})"
            ) from None
        raise


def evaluate(expr: str, base: datetime, tz: str | tzinfo) -> str:
    """The value of the time expression ``expr`` (without ``$[ ]``) at ``base`` in ``tz``."""
    t = local_time(base, tz)
    try:
        return _evaluate(expr, t)
    except ValidationError as exc:
        if f"$[{expr}]" in exc.message:
            raise
        raise ValidationError(f"bad time expression $[{expr}]: {exc.message}") from None
    except OverflowError:
        raise ValidationError(f"bad time expression $[{expr}]: date out of range") from None
