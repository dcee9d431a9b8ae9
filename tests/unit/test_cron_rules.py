"""Cron rules without servers: every search is bounded (never-firing and year-restricted expressions
answer at once, no overflow at the end of time), start/step at the field's maximum, wrap-around
ranges, the one "never fires" rule, the window checks, and the refusals where dagkeeper differs
from Quartz (each message says which rule)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from core import cron
from core.errors import ValidationError


def _at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def _walls(expr: str, after: datetime, n: int, tz: str = "UTC") -> list[str]:
    out = []
    for f in cron.fires(expr, tz, after):
        out.append(f.wall.strftime("%Y-%m-%d %a %H:%M:%S"))
        if len(out) == n:
            break
    return out


# -- bounded searches ----------------------------------------------------------------------------

NEVER = [
    "* * * 29 2 ? 2021-2023",  # croniter's case: no 29 February in 2021-2023
    "0 0 0 31 4 ? 2030",
    "0 0 0 ? 2 2#5 2030-2040",  # a fifth Monday in February needs a leap year starting on Monday
    "0 0 0 31W 2,4,6,9,11 ?",
    "0 2 31 2 *",
    "0 0 30 2 *",
    "* * * * * ? 2024",  # only in the past
]


@pytest.mark.parametrize("expr", NEVER)
def test_never_firing_expressions_answer_at_once(expr: str) -> None:
    t0 = time.monotonic()
    assert cron.next_fire(expr, "Europe/Berlin", _at(2026, 1, 1)) is None
    assert list(cron.fires(expr, "UTC", _at(2026, 1, 1))) == []
    assert cron.preview(expr, "UTC", _at(2026, 1, 1), 10) == []
    with pytest.raises(ValidationError) as info:
        cron.preview(expr, "UTC", _at(2026, 1, 1), 10, field="expr")
    assert info.value.details == [{"code": "never_fires", "field": "expr", "expr": expr}]
    assert time.monotonic() - t0 < 0.5


def test_a_search_gives_up_a_hundred_years_after_its_start_or_last_fire() -> None:
    assert cron.next_fire("0 0 0 1 1 ? 2150", "UTC", _at(2026, 1, 1)) is None
    assert cron.next_fire("0 0 0 1 1 ? 2150", "UTC", _at(2060, 1, 1)) == _at(2150, 1, 1)
    # the bound moves with each fire: a yearly schedule runs on past the first hundred years
    got = [f.at.year for f in cron.fires("0 0 0 1 1 ? 2030,2120,2199", "UTC", _at(2026, 1, 1))]
    assert got == [2030, 2120, 2199]


@pytest.mark.parametrize("tz", ["UTC", "Pacific/Kiritimati", "America/New_York"])
def test_no_overflow_at_the_end_of_time(tz: str) -> None:
    years = [f.wall.year for f in cron.fires("@yearly", tz, _at(9990, 6, 1))]
    assert years == list(range(9991, 9999))  # nothing after the wall year 9998
    assert cron.next_fire("* * * * *", tz, datetime.max.replace(tzinfo=UTC)) is None
    first = cron.next_fire("* * * * *", tz, datetime.min.replace(tzinfo=UTC))
    assert first is None or first.year == 1  # no OverflowError either way


# -- start/step at the field's maximum, wrap-around ranges ---------------------------------------


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("59/15 * * * *", ["2026-01-01 Thu 00:59:00", "2026-01-01 Thu 01:59:00"]),
        ("0 59/15 * * * ?", ["2026-01-01 Thu 00:59:00", "2026-01-01 Thu 01:59:00"]),
        ("0 0 0 ? * 7/2", ["2026-01-03 Sat 00:00:00", "2026-01-10 Sat 00:00:00"]),
        ("0 0 23/5 * * ?", ["2026-01-01 Thu 23:00:00", "2026-01-02 Fri 23:00:00"]),
    ],
)
def test_start_step_at_the_fields_maximum_is_that_value_only(expr: str, first: list[str]) -> None:
    assert _walls(expr, _at(2026, 1, 1), 2) == first


@pytest.mark.parametrize(
    ("expr", "n", "want"),
    [
        (
            "58-4 * * * *",
            8,
            ["00:01", "00:02", "00:03", "00:04", "00:58", "00:59", "01:00", "01:01"],
        ),
        ("0 58-4 * * * ?", 3, ["00:01", "00:02", "00:03"]),
        ("0 13-0 * * *", 13, [f"{h:02d}:00" for h in [*range(13, 24), 0, 13]]),
    ],
)
def test_wrap_around_minutes_and_hours(expr: str, n: int, want: list[str]) -> None:
    assert [w[15:20] for w in _walls(expr, _at(2026, 1, 1), n)] == want


@pytest.mark.parametrize(
    ("expr", "days"),
    [
        ("0 0 1 Nov-Mar *", ["2026-02-01", "2026-03-01", "2026-11-01", "2026-12-01", "2027-01-01"]),
        (
            "0 0 0 1 NOV-MAR ?",
            ["2026-02-01", "2026-03-01", "2026-11-01", "2026-12-01", "2027-01-01"],
        ),
        (
            "0 0 1 Apr-Mar/3 *",
            ["2026-04-01", "2026-07-01", "2026-10-01", "2027-01-01", "2027-04-01"],
        ),
        ("0 0 0 30-2 * ?", ["2026-01-02", "2026-01-30", "2026-01-31", "2026-02-01", "2026-02-02"]),
        (
            "0 0 0 ? * FRI-MON",
            ["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05", "2026-01-09"],
        ),
        ("0 0 * * 5-1", ["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05", "2026-01-09"]),
        ("0 0 * * 6-0", ["2026-01-03", "2026-01-04", "2026-01-10", "2026-01-11", "2026-01-17"]),
    ],
)
def test_wrap_around_days_and_months(expr: str, days: list[str]) -> None:
    assert [w[:10] for w in _walls(expr, _at(2026, 1, 1, 12), 5)] == days


def test_year_ranges_do_not_wrap() -> None:
    with pytest.raises(ValidationError, match="year range 2025-2020 runs backwards"):
        cron.parse("0 0 0 1 1 ? 2025-2020")


# -- day rules -----------------------------------------------------------------------------------


def test_five_field_cron_fires_when_either_day_field_matches() -> None:
    # the 13th, and every Friday (2026-02-13 is both: one fire)
    got = [w[:10] for w in _walls("0 0 13 * 5", _at(2026, 2, 1), 4)]
    assert got == ["2026-02-06", "2026-02-13", "2026-02-20", "2026-02-27"]
    got = [w[:10] for w in _walls("0 2 LW * MON", _at(2026, 1, 20), 3)]
    assert got == ["2026-01-26", "2026-01-30", "2026-02-02"]


def test_w_and_l_in_day_of_month_lists() -> None:
    # 2026-02-01 is a Sunday: 1W is Monday the 2nd; L-1W: Feb 27 is a Friday
    assert [w[:10] for w in _walls("0 0 0 1W,15,L-1W * ?", _at(2026, 2, 1), 4)] == [
        "2026-02-02",
        "2026-02-15",
        "2026-02-27",
        "2026-03-02",
    ]
    assert [w[:10] for w in _walls("0 0 1W,L * *", _at(2025, 12, 31), 3)] == [
        "2026-01-01",
        "2026-01-31",
        "2026-02-02",
    ]


def test_last_offset_beyond_the_month_does_not_fire_that_month() -> None:
    # L-30 is day 1 of a 31-day month and nothing in shorter months (as in Quartz)
    got = [w[:10] for w in _walls("0 0 0 L-30 * ?", _at(2026, 1, 15), 3)]
    assert got == ["2026-03-01", "2026-05-01", "2026-07-01"]


# -- the one "never fires" rule and the window -----------------------------------------------------


def test_never_fires_says_the_same_for_post_and_preview() -> None:
    with pytest.raises(ValidationError) as post:
        cron.check_fires("0 2 31 2 *", "UTC", _at(2026, 1, 1), field="cron")
    with pytest.raises(ValidationError) as prev:
        cron.preview("0 2 31 2 *", "UTC", None, 10, field="expr")
    assert post.value.message == "cron: '0 2 31 2 *' never fires (no fire time within 100 years)"
    assert prev.value.message == "expr: '0 2 31 2 *' never fires (no fire time within 100 years)"


def test_check_fires_in_the_window() -> None:
    now = _at(2026, 1, 1)
    assert cron.check_fires("0 3 * * *", "UTC", now) == _at(2026, 1, 1, 3)
    start, end = _at(2026, 3, 1), _at(2026, 3, 1, 2)
    with pytest.raises(ValidationError) as info:
        cron.check_fires("0 3 * * *", "UTC", now, start, end)
    assert info.value.message.startswith("cron: '0 3 * * *' never fires (no fire time before")
    with pytest.raises(ValidationError) as info:
        cron.check_fires("0 3 * * *", "UTC", now, end, start)
    assert info.value.message == "end: the end of the window must be after its start"
    assert info.value.details == [{"code": "invalid_window", "field": "end"}]
    with pytest.raises(ValidationError) as info:
        cron.check_fires("0 3 * * *", "UTC", now, _at(9999, 12, 31, 23))
    assert info.value.message.startswith("start: 9999-12-31T23:00:00+00:00 is outside")


@pytest.mark.parametrize("start", [_at(9999, 12, 31, 23), _at(1, 1, 1), _at(1969, 12, 31)])
def test_preview_start_out_of_range_names_start(start: datetime) -> None:
    with pytest.raises(ValidationError) as info:
        cron.preview("0 3 * * *", "Pacific/Kiritimati", start, 3, field="expr")
    assert info.value.message.startswith("start: ")
    assert info.value.details == [{"code": "out_of_range", "field": "start"}]


def test_fire_times_and_windows_at_the_start_of_time_do_not_overflow() -> None:
    early = datetime.min.replace(tzinfo=UTC)
    assert cron.next_in_window("0 0 1 1 *", "UTC", early, early) == _at(2, 1, 1)
    assert cron.fire_times("0 0 1 1 *", "UTC", early, _at(3, 1, 1), 10)[-1] == _at(3, 1, 1)


# -- deviations from Quartz: refused, saying which rule --------------------------------------------


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("0 0 0 ? * */0", "the step must be at least 1 (Quartz reads a step of 0 as no step)"),
        ("0 0 0 ? * MON/2", "Quartz ignores a step after a name"),
        ("0 0 0 ? JAN-MAR/2 *", "Quartz ignores a step after a name"),
        ("0 0 0 ? * 2#1,6", "dagkeeper refuses 'n#k' in a list"),
        ("0 0 0 ? * 2#1,6#3", "more than one 'n#k'"),
        ("0 0 0 ? * 1-FRI", "mixes a number and a name"),
        ("0 0 0 5X * ?", "day-of-month item '5X' is not valid"),
        ("0 0 0 1-5W * ?", "'W' takes a single day"),
        ("0 0 0 ? * 2-6L", "day-of-week item '2-6L' is not valid"),
        ("0 0 0 ? * MONDAY", "day-of-week value 'MONDAY' is not a number or name"),
        ("0 0 0 *-5 * ?", "day-of-month item '*-5' is not valid"),
        ("0 0 0 ? L * ?", "'?' is only allowed in day-of-month or day-of-week"),
        ("0 0 0 1 L ?", "month value 'L' is not a number or name"),
        ("0 0 0 1 1 ? 2200", "year value 2200 is out of range 1970-2199"),
        ("0 0 0 1 1 ? ?", "'?' is only allowed in day-of-month or day-of-week, not year"),
        ("0 0 0 ?,1 * *", "(and stands alone)"),
    ],
)
def test_refusals_say_which_rule(expr: str, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        cron.parse(expr)
    assert says in info.value.message


def test_five_field_cron_keeps_lists_quartz_refuses() -> None:
    # 5-field cron is not Quartz: '#' and 'L' may stand in day-of-week lists
    got = [w[:10] for w in _walls("0 0 * * 1#1,5L", _at(2026, 1, 1), 3)]
    assert got == ["2026-01-05", "2026-01-30", "2026-02-02"]


def test_nearest_weekday_is_found_from_the_day_after_a_sunday() -> None:
    # 2026-02-15 is a Sunday: 15W fires on Monday the 16th, also when the search starts on the
    # 16th (Quartz's search skips to March there: a documented deviation)
    after = _at(2026, 2, 16)
    assert cron.next_fire("0 15 10 15W * ?", "UTC", after) == _at(2026, 2, 16, 10, 15)


@pytest.mark.parametrize("expr", ["0 0 0 ? * L", "0 0 * * L"])
def test_bare_l_in_day_of_week_is_saturday(expr: str) -> None:
    assert [w[:14] for w in _walls(expr, _at(2026, 1, 1), 2)] == [
        "2026-01-03 Sat",
        "2026-01-10 Sat",
    ]
