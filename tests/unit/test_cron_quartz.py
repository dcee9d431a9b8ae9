"""Quartz fidelity: the applicable cases of Quartz's own CronExpressionTest (quartz-scheduler/quartz,
quartz/src/test/java/org/quartz/CronExpressionTest.java), written as our cases with their expected
fire times; each test names the Quartz test method it ports.

Quartz's ``isSatisfiedBy(t)`` is ``getTimeAfter(t - 1 s) == t``; ``_satisfied`` is the same with
``next_fire`` in UTC. Not ported, as dagkeeper has no counterpart: the serialization checks
(``verifyMatch``, the serialized half of testQuartz571), testQtz395 (a Java copy constructor) and the
``getTimeBefore`` half of testGetTimeBefore (dagkeeper has no previous-fire search). Where
dagkeeper's answer differs from Quartz, the README's deviations list says so."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from core import cron
from core.errors import ValidationError


def _at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def _satisfied(expr: str, *when: int) -> bool:
    t = _at(*when)
    return cron.next_fire(expr, "UTC", t - timedelta(seconds=1)) == t


def _next(expr: str, after: datetime, n: int) -> list[datetime]:
    out = []
    for f in cron.fires(expr, "UTC", after):
        out.append(f.at)
        if len(out) == n:
            break
    return out


def _refused(expr: str) -> str:
    with pytest.raises(ValidationError) as info:
        cron.parse(expr)
    assert info.value.details[0]["code"] == "invalid_cron"
    return info.value.message


# -- fire times ----------------------------------------------------------------------------------


def test_is_satisfied_by() -> None:  # testIsSatisfiedBy
    e = "0 15 10 * * ? 2005"
    for when in [(6, 1), (6, 30), (3, 1), (3, 31), (2, 1), (2, 28)]:
        assert _satisfied(e, 2005, *when, 10, 15, 0), when
    assert not _satisfied(e, 2006, 6, 30, 10, 15, 0)
    for month in (6, 3, 2):
        assert not _satisfied(e, 2005, month, 1, 10, 16, 0)
        assert not _satisfied(e, 2005, month, 1, 10, 14, 0)
    e = "0 15 10 12 * ? 2005"
    assert _satisfied(e, 2005, 12, 12, 10, 15, 0)
    assert not _satisfied(e, 2005, 12, 11, 10, 15, 0)
    assert not _satisfied(e, 2005, 12, 13, 10, 15, 0)


@pytest.mark.parametrize(
    ("expr", "yes", "no"),
    [
        ("0 15 10 L * ? 2005", (2005, 12, 31), (2005, 12, 30)),
        ("0 15 10 L * ? 2005", (2005, 9, 30), (2005, 9, 29)),
        ("0 15 10 L 2 ? 2005", (2005, 2, 28), (2005, 2, 27)),
        ("0 15 10 L 2 ? 2004", (2004, 2, 29), (2004, 2, 28)),
    ],
)
def test_is_satisfied_by_last_day_of_month(
    expr: str, yes: tuple[int, int, int], no: tuple[int, int, int]
) -> None:  # testIsSatisfiedByLastDayOfMonth
    assert _satisfied(expr, *yes, 10, 15, 0)
    assert not _satisfied(expr, *no, 10, 15, 0)


@pytest.mark.parametrize(
    ("expr", "month", "yes", "no"),
    [
        ("0 15 10 L-2 * ? 2005", (2005, 12), 29, (28, 30, 31)),
        ("0 15 10 L-1 * ? 2005", (2005, 9), 29, (27, 28, 30)),
        ("0 15 10 L-3 2 ? 2005", (2005, 2), 25, (24, 26, 28)),
        ("0 15 10 L-3 2 ? 2000", (2000, 2), 26, (25, 27, 29)),
    ],
)
def test_is_satisfied_by_last_day_of_month_with_offset(
    expr: str, month: tuple[int, int], yes: int, no: tuple[int, ...]
) -> None:  # testIsSatisfiedByLastDayOfMonthWithOffset
    assert _satisfied(expr, *month, yes, 10, 15, 0)
    for d in no:
        assert not _satisfied(expr, *month, d, 10, 15, 0), d


@pytest.mark.parametrize(
    ("expr", "yes", "no"),
    [
        ("L-2", [(10, 29), (2, 26), (6, 28)], [(10, 28), (2, 25), (6, 27)]),
        # L-5W: Oct 26 is a Tuesday; Sep 25 (30 - 5) is a Saturday, so Friday the 24th
        ("L-5W", [(10, 26), (9, 24)], [(10, 25), (10, 27), (9, 23), (9, 25)]),
        ("L-1", [(10, 30)], []),
        # L-1W: Oct 30 is a Saturday, so Friday the 29th
        ("L-1W", [(10, 29)], []),
        ("1,L", [(10, 1), (10, 31), (2, 1), (2, 28)], [(10, 30), (2, 27)]),
        ("L-1W,L-1", [(10, 29), (10, 30), (2, 26), (2, 27)], []),
        # 2W: Oct 2 is a Saturday, so Friday Oct 1; Nov 2 is a Tuesday
        ("2W,16", [(10, 1), (10, 16), (11, 2), (11, 16)], [(10, 2)]),
    ],
)
def test_last_day_offset(
    expr: str, yes: list[tuple[int, int]], no: list[tuple[int, int]]
) -> None:  # testLastDayOffset
    e = f"0 15 10 {expr} * ? 2010"
    for m, d in yes:
        assert _satisfied(e, 2010, m, d, 10, 15, 0), (m, d)
    for m, d in no:
        assert not _satisfied(e, 2010, m, d, 10, 15, 0), (m, d)


def test_month_name_with_trailing_space_parses_and_fires() -> None:  # testQuartz571
    assert _next("19 15 10 4 Apr ? ", _at(2026, 1, 1), 2) == [
        _at(2026, 4, 4, 10, 15, 19),
        _at(2027, 4, 4, 10, 15, 19),
    ]


@pytest.mark.parametrize(
    ("expr", "day"),
    [
        ("0 0 0 L-2 * ? *", lambda y, m, last: last - 2),  # testQtz259
        (
            "0 0 0 LW * ? *",
            lambda y, m, last: max(  # testQtz259LW: last weekday
                d for d in range(last - 2, last + 1) if date(y, m, d).weekday() < 5
            ),
        ),
    ],
)
def test_last_day_rules_never_repeat_a_fire_time(expr: str, day: object) -> None:
    times = _next(expr, _at(2026, 1, 1), 26)
    assert len(set(times)) == 26
    for t in times:
        last = (date(t.year + t.month // 12, t.month % 12 + 1, 1) - timedelta(days=1)).day
        assert t.day == day(t.year, t.month, last), t  # type: ignore[operator]


def test_first_weekday_and_last_day_of_month() -> None:  # test1420
    start = _at(2025, 11, 18, 10, 15)
    first = [(2025, 12, 1), (2026, 1, 1), (2026, 2, 2), (2026, 3, 2), (2026, 4, 1), (2026, 5, 1)]
    first += [(2026, 6, 1), (2026, 7, 1), (2026, 8, 3), (2026, 9, 1), (2026, 10, 1)]
    first += [(2026, 11, 2), (2026, 12, 1)]
    assert _next("0 0 0 1W * ?", start, 13) == [_at(*d) for d in first]
    last = [(2025, 11, 30), (2025, 12, 31)] + [
        (2026, m, (date(2026 + m // 12, m % 12 + 1, 1) - timedelta(days=1)).day)
        for m in range(1, 13)
    ]
    assert _next("59 59 23 L * ?", start, 14) == [_at(*d, 23, 59, 59) for d in last]
    assert last[3] == (2026, 2, 28)


@pytest.mark.parametrize(
    ("expr", "gaps"),
    [
        ("* * * * * ? *", [1, 1]),
        ("0 * * * * ? *", [60, 60]),
        ("0/15 * * * * ? *", [15, 15]),
        ("0 0 5 * * ? *", [86400, 86400]),
        ("0 0 0 * * ? *", [86400, 86400]),
        ("0/30 1 2 * * ? *", [30, 86400 - 30]),
    ],
)
def test_fires_at_fixed_intervals(expr: str, gaps: list[int]) -> None:  # testGetTimeBefore
    times = _next(expr, _at(2026, 1, 1), 3)
    assert [int((b - a).total_seconds()) for a, b in zip(times, times[1:], strict=False)] == gaps


def test_year_only_in_the_future_or_only_in_the_past() -> None:  # testGetTimeBefore
    assert cron.next_fire("* * * * * ? 2028", "UTC", _at(2026, 1, 1)) == _at(2028, 1, 1)
    assert cron.next_fire("* * * * * ? 2024", "UTC", _at(2026, 1, 1)) is None


def test_last_weekday_of_month_in_day_of_week() -> None:  # testQuartz640 ('5L' is supported)
    assert _next("0 43 9 ? * 5L", _at(2026, 1, 1), 3) == [
        _at(2026, 1, 29, 9, 43),
        _at(2026, 2, 26, 9, 43),
        _at(2026, 3, 26, 9, 43),
    ]


# -- what Quartz refuses -------------------------------------------------------------------------


def test_too_many_fields() -> None:  # testTooManyTokens
    assert "got 8" in _refused("0 15 10 * * ? 2005 *")


def test_unknown_month_names() -> None:  # testQuartz574
    assert "month value 'FOO' is not a number or name" in _refused("* * * * Foo ? ")
    assert "month value 'FOO' is not a number or name" in _refused("* * * * Jan-Foo ? ")


@pytest.mark.parametrize("expr", ["0 0 * * * *", "0 0 * 4 * *", "0 0 * * * 4"])
def test_question_mark_in_exactly_one_day_field(expr: str) -> None:  # testQuartz621
    msg = _refused(expr)
    assert "Quartz requires '?' in exactly one of day-of-month and day-of-week" in msg


@pytest.mark.parametrize("expr", ["0 43 9 ? * SAT,SUN,L", "0 43 9 ? * 6,7,L"])
def test_l_with_other_days_of_the_week(expr: str) -> None:  # testQuartz640
    assert "'L' with other days of the week" in _refused(expr)


def test_w_with_a_day_beyond_31() -> None:  # testQtz96
    assert "'W' needs a day of 1-31" in _refused("0/5 * * 32W 1 ?")


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        # testSecRangeIntervalAfterSlash
        ("/120 0 8-18 ? * 2-6", "second item '/120': the step 120 is larger than 59"),
        ("0/120 0 8-18 ? * 2-6", "second item '0/120': the step 120 is larger than 59"),
        ("/ 0 8-18 ? * 2-6", "'/' must be followed by a number"),
        ("0/ 0 8-18 ? * 2-6", "'/' must be followed by a number"),
        ("/60 0 8-18 ? * 2-6", "the step 60 is larger than 59"),
        # testMinRangeIntervalAfterSlash
        ("0 /120 8-18 ? * 2-6", "minute item '/120': the step 120 is larger than 59"),
        ("0 0/120 8-18 ? * 2-6", "the step 120 is larger than 59"),
        ("0 / 8-18 ? * 2-6", "minute item '/': '/' must be followed by a number"),
        ("0 0/ 8-18 ? * 2-6", "'/' must be followed by a number"),
        ("0 /60 8-18 ? * 2-6", "the step 60 is larger than 59"),
        # testHourRangeIntervalAfterSlash
        ("0 0 /120 ? * 2-6", "hour item '/120': the step 120 is larger than 23"),
        ("0 0 0/120 ? * 2-6", "the step 120 is larger than 23"),
        ("0 0 / ? * 2-6", "hour item '/': '/' must be followed by a number"),
        ("0 0 0/ ? * 2-6", "'/' must be followed by a number"),
        ("0 0 /24 ? * 2-6", "the step 24 is larger than 23"),
        # testDayOfMonthRangeIntervalAfterSlash
        ("0 0 0 /120 * 2-6", "day-of-month item '/120': the step 120 is larger than 31"),
        ("0 0 0 0/120 * 2-6", "the step 120 is larger than 31"),
        ("0 0 0 / * 2-6", "day-of-month item '/': '/' must be followed by a number"),
        ("0 0 0 0/ * 2-6", "'/' must be followed by a number"),
        # testMonthRangeIntervalAfterSlash
        ("0 0 0 ? /120 2-6", "month item '/120': the step 120 is larger than 12"),
        ("0 0 0 ? 0/120 2-6", "the step 120 is larger than 12"),
        ("0 0 0 ? / 2-6", "month item '/': '/' must be followed by a number"),
        ("0 0 0 ? 0/ 2-6", "'/' must be followed by a number"),
        ("0 0 0 ? /13 2-6", "the step 13 is larger than 12"),
        # testDayOfWeekRangeIntervalAfterSlash
        ("0 0 0 ? * /120", "day-of-week item '/120': the step 120 is larger than 7"),
        ("0 0 0 ? * 0/120", "the step 120 is larger than 7"),
        ("0 0 0 ? * /", "day-of-week item '/': '/' must be followed by a number"),
        ("0 0 0 ? * 0/", "'/' must be followed by a number"),
    ],
)
def test_range_interval_after_slash(expr: str, says: str) -> None:
    assert says in _refused(expr)


@pytest.mark.parametrize("expr", ["* * * * * ?", "0 * 5 * * ?", "0 15 10 L-1W,L-1 * ? 2010"])
def test_valid_expressions(expr: str) -> None:  # testIsValidExpression
    assert cron.parse(expr).kind == "quartz"


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("Ralf 30 * * * ?", "second value 'RALF' is not a number or name"),
        ("0 30 Ralf * * ?", "hour value 'RALF' is not a number or name"),
        ("kilroy was here", "got 3"),
        ("L 30 * * * ?", "second value 'L' is not a number or name"),
    ],
)
def test_invalid_expressions(expr: str, says: str) -> None:  # testIsValidExpression
    assert says in _refused(expr)
