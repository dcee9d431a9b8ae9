"""Time expressions beyond DolphinScheduler's own tests: java.time pattern letters (expected values
printed by Java 17's DateTimeFormatter, en_US), DolphinScheduler's minute truncation and digit
rules, timestamp() across DST, and the documented deviations (calendar days across DST, a literal
'+', bad arguments refused rather than read as Monday or 0)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from core.errors import ValidationError
from core.params import render_shell, resolve_task_params
from core.timeexpr import evaluate


def at(*args: int, tz: str = "UTC") -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))  # type: ignore[misc]


def ev(expr: str, base: datetime) -> str:
    assert base.tzinfo is not None
    return evaluate(expr, base, base.tzinfo)


def expand_text(text: str, base: datetime) -> str:
    assert base.tzinfo is not None
    return resolve_task_params({}, {}, {}, {"_t": text}, base, base.tzinfo)["_t"]


# java.time letters: each expected value is what LocalDateTime.format printed for the pattern ----

FRI = at(2022, 8, 26, 7, 5, 9, 123456)


@pytest.mark.parametrize(
    ("pattern", "base", "want"),
    [
        ("EEE, d MMM yyyy HH:mm", FRI, "Fri, 26 Aug 2022 07:05"),
        ("EEEE MMMM", FRI, "Friday August"),
        ("EEEEE MMMMM", FRI, "F A"),
        ("yyyyDDD", FRI, "2022238"),
        ("D DD", at(2022, 1, 5, 7, 5, 9), "5 05"),
        ("h:mm a", at(2022, 8, 26, 19, 5, 9), "7:05 PM"),
        ("K k", at(2022, 8, 26, 0, 5, 9), "0 24"),
        ("QQQ QQQQ q", FRI, "Q3 3rd quarter 3"),
        ("uuuu G GGGG", FRI, "2022 AD Anno Domini"),
        ("HH:mm:ss.SSS SSSSSS n", FRI, "07:05:09.123 123456 123456000"),
        ("A", FRI, "25509123"),
        ("YYYY-ww e c W F", at(2022, 12, 27, 10), "2022-53 3 3 5 6"),  # en_US: Sunday first
        ("YYYY-ww e", at(2023, 1, 1, 10), "2023-01 1"),
        ("yyyy-MM-dd'T'HH:mm 'o''clock' ''", FRI, "2022-08-26T07:05 o'clock '"),
        ("yyyy[-MM][ XXX]", FRI, "2022-08"),  # optional sections; a zone inside prints nothing
        ("ppd|pppMMM", at(2022, 8, 6, 7, 5, 9), " 6|Aug"),
        ("yy yyyyy y", FRI, "22 02022 2022"),
        ("yyyy(MM)", FRI, "2022(08)"),  # not a function: a pattern with brackets
    ],
)
def test_java_pattern_letters(pattern: str, base: datetime, want: str) -> None:
    assert ev(pattern, base) == want


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("yyyyMMdd HH:mm z", "zone letter 'z'"),  # Java: Unable to extract ZoneId
        ("yyyyMMdd{", "reserved character"),
        ("yyyyMMll", "unknown pattern letter 'l'"),
        ("EEEEEE", "too many pattern letters"),
        ("yyyy]", "without '['"),
        ("pp'x'", "pad letter"),
    ],
)
def test_patterns_java_refuses_are_errors_naming_the_expression(pattern: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        ev(pattern, FRI)
    assert f"$[{pattern}]" in info.value.message and reason in info.value.message


# arithmetic ----------------------------------------------------------------------------------

MIDNIGHT = at(2022, 8, 26)


def test_fractional_days_truncate_to_whole_minutes() -> None:
    assert ev("HHmmss+1/7", MIDNIGHT) == "032500"  # 205 minutes, not 03:25:42
    assert ev("yyyyMMddHHmmss-1/7", MIDNIGHT) == "20220825203500"  # -205 minutes
    assert ev("HHmmss+1/24/60/2", MIDNIGHT) == "000000"  # half a minute is no minute
    assert ev("HHmmss+3/24/60", at(2022, 8, 26, 0, 0, 42)) == "000342"  # seconds are kept


def test_digits_only_are_themselves_and_a_single_digit_is_left_alone() -> None:
    assert expand_text("$[12] $[2024] $[1] $[0] $[1+2]", MIDNIGHT) == "12 2024 $[1] $[0] $[1+2]"
    assert render_shell("echo $[12] $[1]", {}, MIDNIGHT, "UTC") == "echo 12 $[1]"


def test_a_plus_outside_quotes_must_start_arithmetic() -> None:
    with pytest.raises(ValidationError, match=r"\$\[yyyy\+MM\].*'\+'"):
        ev("yyyy+MM", MIDNIGHT)  # DolphinScheduler would print 2022+08
    assert ev("yyyy'+'MM", MIDNIGHT) == "2022+08"
    assert ev("yyyyMMdd+1+2", MIDNIGHT) == "20220829"  # the whole sum, three days


def test_dst_days_are_calendar_days_not_24_hours() -> None:
    # the README's two examples: DolphinScheduler steps 24 hours and gives 20260328 and 02:30
    spring = datetime(2026, 3, 29, 22, 30, tzinfo=ZoneInfo("UTC"))  # 03-30 00:30 CEST
    assert evaluate("yyyyMMdd-1", spring, "Europe/Berlin") == "20260329"
    autumn = datetime(2026, 10, 26, 0, 30, tzinfo=ZoneInfo("UTC"))  # 10-26 01:30 CET
    assert evaluate("yyyy-MM-dd HH:mm:ss-1", autumn, "Europe/Berlin") == "2026-10-25 01:30:00"
    # hours are absolute: 23 hours before 01:30 CET is 02:30 CET, the repeated hour; a count
    # written with '/' is absolute even when whole: 24/24 is DolphinScheduler's 24-hour day
    assert evaluate("yyyyMMdd-24/24", spring, "Europe/Berlin") == "20260328"
    assert evaluate("yyyy-MM-dd HH:mm:ss-24/24", autumn, "Europe/Berlin") == "2026-10-25 02:30:00"
    assert evaluate("yyyy-MM-dd HH:mm-23/24", autumn, "Europe/Berlin") == "2026-10-25 02:30"


# timestamp -----------------------------------------------------------------------------------


def test_timestamp_of_wall_times_in_a_dst_gap_and_overlap() -> None:
    # Java's LocalDateTime.atZone: a gap time moves forward, an overlap takes the earlier offset
    gap = at(2026, 3, 29, 1, 30, tz="Europe/Berlin")
    assert ev("timestamp(yyyyMMdd023000)", gap) == "1774747800"  # 03:30 CEST
    overlap = at(2026, 10, 25, 9, tz="Europe/Berlin")
    assert ev("timestamp(yyyyMMdd023000)", overlap) == "1792888200"  # 02:30 CEST
    assert ev("timestamp(yyyyMMddHHmmss-1/24)", at(2022, 8, 26, 8, tz="Asia/Shanghai")) == str(
        1661472000 - 3600
    )


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("timestamp(yyyyMMdd)", "yyyyMMddHHmmss"),
        ("timestamp(yyyy-MM-dd HH:mm:ss)", "yyyyMMddHHmmss"),
        ("timestamp(yyyyMM99HHmmss)", "day is out of range"),
        ("timestamp(timestamp(yyyyMMddHHmmss))", "cannot be nested"),
        ("timestamp(year_week(yyyyMMdd))", "cannot be nested"),
        ("month_begin(yyyyMMdd)", "takes 2 argument"),
        ("week_end(yyyyMMdd)", "takes 2 argument"),
        ("last_day(yyyyMMdd,1)", "takes 1 argument"),
        ("year_week(yyyy-MM-dd,8)", "0..7"),
        ("iso_year_week(yyyy-MM-dd,-1)", "0..7"),
        ("add_month(yyyyMMdd,1)", "unknown function 'add_month'"),
        ("month_begin(yyyyMMdd,1/2)", "not a whole number"),
    ],
)
def test_function_errors_name_the_expression(expr: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        ev(expr, MIDNIGHT)
    assert f"$[{expr}]" in info.value.message and reason in info.value.message


def test_one_argument_forms_mean_this_month_and_this_week() -> None:
    base = at(2022, 8, 26, 9)
    assert ev("month_first_day(yyyy-MM-dd)", base) == "2022-08-01"
    assert ev("month_last_day(yyyy-MM-dd)", base) == "2022-08-31"
    assert ev("week_first_day(yyyy-MM-dd)", base) == "2022-08-22"
    assert ev("week_last_day(yyyy-MM-dd)", base) == "2022-08-28"
    assert ev("month_end(yyyy-MM-dd,1)", base) == "2022-09-01"
    assert ev("week_begin(yyyy-MM-dd,-1)", base) == "2022-08-21"
