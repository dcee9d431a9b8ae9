"""java.time ``DateTimeFormatter`` patterns applied to a local date-time, as DolphinScheduler formats
``$[...]`` (English text, en_US week rules for Y/w/W/e/c), and week numbering rules. Pure, no I/O."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from core.errors import ValidationError

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
QUARTERS = ("1st quarter", "2nd quarter", "3rd quarter", "4th quarter")
# the locale's week rules for the localized letters (Y w W e c): en_US, the JDK's default on a
# server whose LANG is C or en_US: weeks start on Sunday, week 1 is the one holding January 1st
LOCALE_FIRST_DAY, LOCALE_MIN_DAYS = 6, 1  # Python weekday (Monday=0 … Sunday=6), minimal days
_ZONE_LETTERS = "VvzOXxZ"
_RESERVED = "#{}"
_MAX_COUNT = {"G": 5, "M": 5, "L": 5, "Q": 5, "q": 5, "E": 5, "e": 5, "c": 5, "a": 1, "F": 1,
              "d": 2, "h": 2, "H": 2, "k": 2, "K": 2, "m": 2, "s": 2, "D": 3, "w": 2, "W": 1,
              "S": 9}  # fmt: skip


def week1_start(year: int, first_day: int, min_days: int) -> date:
    """The first day of week 1 of ``year``: the first week (starting on Python weekday
    ``first_day``) that has at least ``min_days`` days in the year."""
    anchor = date(year, 1, min_days)  # week 1 is the week holding January ``min_days``
    return anchor - timedelta(days=(anchor.weekday() - first_day) % 7)


def week_based(d: date, first_day: int, min_days: int) -> tuple[int, int]:
    """(week-based year, week of that year) of ``d`` under the given week rules."""
    year = d.year
    if d < week1_start(year, first_day, min_days):
        year -= 1
    elif year < 9999 and d >= week1_start(year + 1, first_day, min_days):
        year += 1
    return year, (d - week1_start(year, first_day, min_days)).days // 7 + 1


def week_of_month(d: date, first_day: int, min_days: int) -> int:
    """The week of the month of ``d`` (week 0 is a first partial week shorter than ``min_days``)."""
    first = d.replace(day=1)
    lead = (first.weekday() - first_day) % 7  # days of the month's first week before the 1st
    week1 = 1 - lead if 7 - lead >= min_days else 8 - lead  # day of month where week 1 starts
    return (d.day - week1) // 7 + 1


def _num(value: int, min_width: int, sign_exceeds: bool = False) -> str:
    text = f"{abs(value):0{min_width}d}"
    if value < 0:
        return "-" + text
    return "+" + text if sign_exceeds and len(text) > min_width else text


def _text(names: tuple[str, ...], index: int, count: int) -> str:
    name = names[index]
    return name[:3] if count <= 3 else name if count == 4 else name[0]


def _field(letter: str, count: int, t: datetime) -> str:
    """One field of ``t``: ``letter`` repeated ``count`` times (the count was checked)."""
    if letter in "yu":
        if count == 2:
            return f"{t.year % 100:02d}"
        return _num(t.year, count, sign_exceeds=count >= 4)
    if letter == "Y":
        year = week_based(t.date(), LOCALE_FIRST_DAY, LOCALE_MIN_DAYS)[0]
        return f"{year % 100:02d}" if count == 2 else _num(year, count, sign_exceeds=count >= 4)
    if letter == "G":
        return "AD" if count <= 3 else "Anno Domini" if count == 4 else "A"
    if letter in "MLQq":
        value = t.month if letter in "ML" else (t.month - 1) // 3 + 1
        if count <= 2:
            return _num(value, count)
        if letter in "ML":
            return _text(MONTHS, t.month - 1, count)
        return f"Q{value}" if count == 3 else QUARTERS[value - 1] if count == 4 else str(value)
    if letter in "Eec":
        if letter == "E" or count >= 3:
            return _text(DAYS, t.weekday(), max(count, 3) if letter == "E" else count)
        return _num((t.weekday() - LOCALE_FIRST_DAY) % 7 + 1, count)
    if letter == "w":
        return _num(week_based(t.date(), LOCALE_FIRST_DAY, LOCALE_MIN_DAYS)[1], count)
    if letter == "W":
        return str(week_of_month(t.date(), LOCALE_FIRST_DAY, LOCALE_MIN_DAYS))
    if letter == "S":
        return f"{t.microsecond * 1000:09d}"[:count]
    if letter == "B":
        return _day_period(t.hour * 60 + t.minute, narrow=count == 5)
    value = {
        "d": t.day,
        "D": t.timetuple().tm_yday,
        "F": (t.day - 1) % 7 + 1,  # as Java 8-19: ALIGNED_DAY_OF_WEEK_IN_MONTH
        "a": 0,
        "H": t.hour,
        "k": t.hour or 24,
        "K": t.hour % 12,
        "h": (t.hour % 12) or 12,
        "m": t.minute,
        "s": t.second,
        "A": ((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + t.microsecond // 1000,
        "n": t.microsecond * 1000,
        "N": (((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond) * 1000,
        "g": t.toordinal() - 678576,  # modified Julian day
    }[letter]
    if letter == "a":
        return "AM" if t.hour < 12 else "PM"
    return _num(value, count)


def _day_period(minute: int, narrow: bool) -> str:
    """English day periods (``B``), by minute of the day, as Java 16+ prints them."""
    if minute in (0, 720):
        return ("mi" if narrow else "midnight") if minute == 0 else ("n" if narrow else "noon")
    hour = minute // 60
    if 6 <= hour < 12:
        return "in the morning"
    return (
        "in the afternoon"
        if 12 <= hour < 18
        else "in the evening"
        if 18 <= hour < 21
        else "at night"
    )


def _check(letter: str, count: int, pattern: str) -> None:
    if not (letter in _MAX_COUNT or letter in "yuYAnNgB" + _ZONE_LETTERS):
        raise ValidationError(f"unknown pattern letter {letter!r} in date pattern {pattern!r}")
    if (
        count > _MAX_COUNT.get(letter, 19)
        or (letter == "c" and count == 2)
        or (letter == "B" and count not in (1, 4, 5))
    ):
        raise ValidationError(f"too many pattern letters {letter * count!r} in {pattern!r}")


def format_java(pattern: str, t: datetime) -> str:
    """Format the wall-clock time ``t`` with a java.time pattern, as ``LocalDateTime.format`` does:
    every letter of DateTimeFormatter (``yyyy MM dd HH mm ss SSS``, ``E`` day names, ``D`` day of
    year, ``MMM`` month names, ``a`` AM/PM, ``Q`` quarters…); text in '...' (``''`` is a quote),
    ``[...]`` optional sections, ``p`` padding. Zone letters fail, as for a local time in Java
    (inside ``[...]`` they print nothing); a letter Java does not know is an error."""
    out: list[str] = []
    sections: list[list[int]] = []  # open [...]: [output length at '[', failed]
    i, n, pad = 0, len(pattern), 0
    while i < n:
        c = pattern[i]
        if "a" <= c <= "z" or "A" <= c <= "Z":
            j = i
            while j < n and pattern[j] == c:
                j += 1
            count, i = j - i, j
            if c == "p":
                if i >= n or not ("a" <= pattern[i] <= "z" or "A" <= pattern[i] <= "Z"):
                    raise ValidationError(f"pad letter 'p' must precede a field in {pattern!r}")
                pad = count
                continue
            _check(c, count, pattern)
            pad, width = 0, pad
            if sections and sections[-1][1]:
                continue
            if c in _ZONE_LETTERS:
                if not sections:
                    raise ValidationError(
                        f"zone letter {c!r} in date pattern {pattern!r}: DolphinScheduler formats"
                        " a local time, which has no zone"
                    )
                del out[sections[-1][0] :]  # as Java: the whole optional section prints nothing
                sections[-1][1] = 1
                continue
            text = _field(c, count, t)
            if len(text) > width > 0:
                raise ValidationError(f"{text!r} is wider than its padding in {pattern!r}")
            out.append(text.rjust(width))
            continue
        literal: str | None = c
        if c == "'":
            j = i + 1
            while j < n and not (pattern[j] == "'" and pattern[j + 1 : j + 2] != "'"):
                j += 2 if pattern[j] == "'" else 1
            if j >= n:
                raise ValidationError(f"unterminated quote in date pattern {pattern!r}")
            literal, i = (pattern[i + 1 : j].replace("''", "'") if j > i + 1 else "'"), j
        elif c == "[":
            sections.append([len(out), 0])
            literal = None
        elif c == "]":
            if not sections:
                raise ValidationError(f"']' without '[' in date pattern {pattern!r}")
            sections.pop()
            literal = None
        elif c in _RESERVED:
            raise ValidationError(f"reserved character {c!r} in date pattern {pattern!r}")
        if literal is not None and not (sections and sections[-1][1]):
            out.append(literal)
        i += 1
    return "".join(out)
