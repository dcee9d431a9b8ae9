"""DolphinScheduler's own placeholder and parameter test cases, restated for dagkeeper: each case
names the DolphinScheduler test it comes from (TimePlaceholderUtilsTest, ParameterUtilsTest,
DateUtilsTest, BusinessTimeUtils as those tests use it) and expects DolphinScheduler's value, or
is marked as one of the deviations the README's Parameters section lists.

Not applicable here: ParameterUtilsTest.expandListParameter (SQL list binding of the SQL task
type), testHandleEscapes (a SQL-task escape helper), DateUtilsTest's duration, start/end of day
and hour and timezone-transform helpers (no ``$[...]`` form uses them), and
TimePlaceholderResolverExpandServiceTest (an extension hook that expands nothing)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from core.errors import ValidationError
from core.params import builtins, render_shell, resolve_task_params
from core.timeexpr import evaluate

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(*args: int, tz: str = "Asia/Shanghai") -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))  # type: ignore[misc]


def ev(expr: str, base: datetime) -> str:
    assert base.tzinfo is not None
    return evaluate(expr, base, base.tzinfo)


def expand_text(text: str, base: datetime, **params: str) -> str:
    """``text`` as a task-local parameter's template, resolved like any task's parameters."""
    assert base.tzinfo is not None
    return resolve_task_params({}, {}, {}, {**params, "_t": text}, base, base.tzinfo)["_t"]


# task-api TimePlaceholderUtilsTest: base 2022-08-26 00:00:00 (a Friday) --------------------

AUG26 = at(2022, 8, 26)


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("this_day(yyyy-MM-dd)", "2022-08-26"),  # timePlaceHolderForThisDay
        ("this_day(yyyyMMdd)", "20220826"),
        ("last_day(yyyy-MM-dd)", "2022-08-25"),  # timePlaceHolderForLastDay: the day before
        ("last_day(yyyyMMdd)", "20220825"),
        ("year_week(yyyy-MM-dd)", "2022-34"),  # timePlaceHolderForYearWeekDay (Monday first)
        ("year_week(yyyyMMdd)", "202234"),
        ("year_week(yyyy-MM-dd,5)", "2022-35"),  # weeks starting on Friday
        ("year_week(yyyyMMdd,5)", "202235"),
        ("month_first_day(yyyy-MM-dd,-1)", "2022-07-01"),  # timePlaceHolderForMonthFirstDay
        ("month_first_day(yyyyMMdd,-1)", "20220701"),
        ("month_last_day(yyyy-MM-dd,-1)", "2022-07-31"),  # timePlaceHolderForMonthLastDay
        ("month_last_day(yyyyMMdd,-1)", "20220731"),
        ("week_first_day(yyyy-MM-dd,0)", "2022-08-22"),  # timePlaceHolderForWeekFirstDay
        ("week_first_day(yyyyMMdd,0)", "20220822"),
        ("week_last_day(yyyy-MM-dd,0)", "2022-08-28"),  # timePlaceHolderForWeekLastDay
        ("week_last_day(yyyyMMdd,0)", "20220828"),
        # the examples of DolphinScheduler's built-in parameter guide, same base day
        ("week_first_day(yyyy-MM-dd,-1)", "2022-08-15"),
        ("week_last_day(yyyy-MM-dd,-1)", "2022-08-21"),
    ],
)
def test_time_placeholder_utils_business_functions(expr: str, want: str) -> None:
    assert ev(expr, AUG26) == want
    assert expand_text(f"$[{expr}]", AUG26) == want  # the same through parameter resolution


def test_guide_month_last_day_example() -> None:
    # built-in parameter guide: month_last_day(yyyy-MM-dd,-1) at 2022-08-28 is 2022-07-31
    assert ev("month_last_day(yyyy-MM-dd,-1)", at(2022, 8, 28)) == "2022-07-31"


def test_get_place_holder_time_refuses_arithmetic_after_a_function() -> None:
    # getPlaceHolderTime: "week_last_day(yyyy-MM-dd,0) - 1" is an unsupported expression
    with pytest.raises(ValidationError, match=r"week_last_day\(yyyy-MM-dd,0\) - 1"):
        ev("week_last_day(yyyy-MM-dd,0) - 1", AUG26)


def test_business_time_of_the_placeholder_tests() -> None:
    # TimePlaceholderUtilsTest's timeParams = BusinessTimeUtils.getBusinessTime(COMPLEMENT_DATA,
    # 2022-08-26 00:00:00): the day before, the day, the date-time
    assert builtins(AUG26, SHANGHAI) == {
        "system.biz.date": "20220825",
        "system.biz.curdate": "20220826",
        "system.datetime": "20220826000000",
    }


# year_week: values computed with java.util.Calendar (minimal days 4), as DolphinScheduler does -


@pytest.mark.parametrize(
    ("day", "first", "want"),
    [
        ((2022, 8, 28), "0", "2022-34"),  # a Sunday; 0 is Monday as in DolphinScheduler
        ((2021, 1, 1), "", "2021-53"),  # the calendar year, with the week of the year before
        ((2019, 12, 30), "", "2019-01"),  # the calendar year, with week 1 of the next year
        ((2022, 8, 28), "7", "2022-35"),  # weeks starting on Sunday
        ((2020, 12, 31), "", "2020-53"),
    ],
)
def test_year_week_follows_calendar_week_of_year(
    day: tuple[int, int, int], first: str, want: str
) -> None:
    expr = f"year_week(yyyy-MM-dd{',' + first if first else ''})"
    assert ev(expr, at(*day, 12)) == want


# common TimePlaceholderUtilsTest (before 2022-10): Asia/Shanghai, 2017-01-01 01:01:01 (Sunday) --

JAN1 = at(2017, 1, 1, 1, 1, 1)


def test_replace_placeholders_month_and_week_boundaries() -> None:
    # replacePlaceholdersT, first assertion
    text = (
        "$[yyyy]test1$[yyyy:***]$[yyyy-MM-dd-1],$[month_begin(yyyyMMdd, 1)],"
        "$[month_end(yyyyMMdd, -1)],$[week_begin(yyyyMMdd, 1)],$[week_end(yyyyMMdd, -1)]"
    )
    assert (
        expand_text(text, JAN1) == "2017test12017:***2016-12-31,20170102,20170130,20161227,20161231"
    )


def test_replace_placeholders_timestamps() -> None:
    # replacePlaceholdersT, second assertion: epoch seconds of the formatted Shanghai wall time
    text = (
        "$[timestamp(yyyyMMdd00mmss)],$[timestamp(month_begin(yyyyMMddHHmmss, 1))],"
        "$[timestamp(month_end(yyyyMMddHHmmss, -1))],$[timestamp(week_begin(yyyyMMddHHmmss, 1))],"
        "$[timestamp(week_end(yyyyMMdd000000, -1))],$[timestamp(yyyyMMddHHmmss)]"
    )
    want = "1483200061,1483290061,1485709261,1482771661,1483113600,1483203661"
    assert expand_text(text, JAN1) == want


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("yyyy", "2017"),  # calcMinutesT
        ("yyyyMMddHHmmss+7*1", "20170108010101"),
        ("yyyyMMddHHmmss-7*1", "20161225010101"),
        ("yyyyMMddHHmmss+1", "20170102010101"),
        ("yyyyMMddHHmmss-1", "20161231010101"),
        ("yyyyMMddHHmmss+1/24", "20170101020101"),
        ("yyyyMMddHHmmss-1/24", "20170101000101"),
        ("add_months(yyyyMMddHHmmss,12*1)", "20180101010101"),  # calcMonthsT
        ("add_months(yyyyMMddHHmmss,-12*1)", "20160101010101"),
        ("yyyyMMdd", "20170101"),  # testGetPlaceHolderTime
    ],
)
def test_calc_minutes_and_months(expr: str, want: str) -> None:
    assert ev(expr, JAN1) == want


# task-api ParameterUtilsTest -----------------------------------------------------------------


def test_convert_parameter_placeholders_leaves_plain_text() -> None:
    # testConvertParameterPlaceholders: text without placeholders comes back as it is
    assert (
        expand_text("test_parameter", JAN1, testParameter2="${testParameter}") == "test_parameter"
    )


def test_convert_parameter_placeholders2() -> None:
    # testConvertParameterPlaceholders2: system.datetime 20201201123000; a single digit in $[ ]
    # stays as it is, everything else is a time expression
    text = (
        "${user} is userName, '$[1]' '$[add_months(yyyyMMdd,12*2)]' '$[add_months(yyyyMMdd,-12*2)]'"
        " '$[add_months(yyyyMMdd,3)]' '$[add_months(yyyyMMdd,-4)]' '$[yyyyMMdd+7*2]' '$[yyyyMMdd-7*2]'"
        "  '$[yyyyMMdd+3]'  '$[0]' '$[yyyyMMdd-3]' '$[HHmmss+2/24]' '$[HHmmss-1/24]'"
        " '$[HHmmss+3/24/60]' '$[HHmmss-2/24/60]'  '$[3]'"
    )
    want = (
        "Kris is userName, '$[1]' '20221201' '20181201' '20210301' '20200801' '20201215' '20201117'"
        "  '20201204'  '$[0]' '20201128' '143000' '113000' '123300' '122800'  '$[3]'"
    )
    assert expand_text(text, at(2020, 12, 1, 12, 30), user="Kris") == want


def test_basic_built_in_parameters_in_a_command() -> None:
    # testBasicBuiltInParameterPlaceholders (a DolphinScheduler contributor branch): base
    # 2022-08-12 00:00:00
    base = at(2022, 8, 12)
    params = resolve_task_params({}, {}, {}, {}, base, SHANGHAI)
    command = "echo ${system.datetime}, ${system.biz.curdate}, ${system.biz.date}"
    assert (
        render_shell(command, params, base, SHANGHAI) == "echo 20220812000000, 20220812, 20220811"
    )


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        # testExtendedBuiltInParameterPlaceholdersToBenchmarkVariable
        ("yyyyMMddHHmmss", "20220811070101"),
        ("yyyy-MM-dd HH:mm:ss", "2022-08-11 07:01:01"),
        ("HH:mm:ss", "07:01:01"),
        # testExtendedBuiltInParameterPlaceholders4
        ("add_months(yyyy-MM-dd,12*1)", "2023-08-11"),
        ("add_months(yyyyMMdd,-1)", "20220711"),
        ("yyyy-MM-dd+7*1", "2022-08-18"),
        ("yyyyMMdd-7*1", "20220804"),
        ("HH:mm:ss+2/24", "09:01:01"),
        ("HH mm ss+2/24", "09 01 01"),
        ("HHmmss-2/24", "050101"),
        ("HHmmss+2/24/60", "070301"),
        ("HHmmss-2/24/60", "065901"),
    ],
)
def test_extended_built_in_parameters(expr: str, want: str) -> None:
    # the same contributor branch's ParameterUtilsTest, system.datetime 20220811070101
    assert ev(expr, at(2022, 8, 11, 7, 1, 1)) == want


def test_sql_with_a_json_path_bracket_is_left_alone() -> None:
    # testExtendedBuiltInParameterPlaceholders4: '$[' ... ']' in SQL text is not a time expression
    sql = "select JSON_EXTRACT(json_val, CONCAT('$[', id - 1, '].input1')) from test"
    assert expand_text(sql, at(2022, 8, 11, 7, 1, 1)) == sql


# DateUtilsTest: the date helpers behind the functions ------------------------------------------


@pytest.mark.parametrize(
    ("base", "expr", "want"),
    [
        ((2019, 2, 1), "week_first_day(yyyy-MM-dd HH:mm:ss)", "2019-01-28 00:00:00"),  # testWeek
        ((2019, 1, 28), "week_last_day(yyyy-MM-dd HH:mm:ss)", "2019-02-03 00:00:00"),
        ((2019, 1, 31), "yyyy-MM-dd HH:mm:ss+1", "2019-02-01 00:00:00"),  # getSomeDay
        ((2019, 1, 31), "yyyy-MM-dd HH:mm:ss-31", "2018-12-31 00:00:00"),
        ((2019, 1, 31), "month_first_day(yyyy-MM-dd HH:mm:ss)", "2019-01-01 00:00:00"),
        ((2019, 1, 31, 1, 59), "month_first_day(yyyy-MM-dd HH:mm:ss)", "2019-01-01 01:59:00"),
        ((2019, 1, 31, 11, 59, 59), "month_last_day(yyyy-MM-dd HH:mm:ss)", "2019-01-31 11:59:59"),
        ((2019, 1, 2, 11, 59, 59), "month_last_day(yyyy-MM-dd HH:mm:ss)", "2019-01-31 11:59:59"),
        ((2019, 2, 2, 11, 59, 59), "month_end(yyyy-MM-dd HH:mm:ss,0)", "2019-02-28 11:59:59"),
        ((2020, 2, 2, 11, 59, 59), "month_last_day(yyyy-MM-dd HH:mm:ss)", "2020-02-29 11:59:59"),
    ],
)
def test_date_utils_helpers(base: tuple[int, ...], expr: str, want: str) -> None:
    assert ev(expr, at(*base)) == want


def test_timezone_and_timestamps() -> None:
    # testTimezone: the same wall time in UTC and in Shanghai is 8 hours apart
    utc = ev("timestamp(yyyyMMddHHmmss)", at(2019, 1, 28, tz="UTC"))
    sh = ev("timestamp(yyyyMMddHHmmss)", at(2019, 1, 28))
    assert int(utc) - int(sh) == 8 * 3600
    # testDateToTimeStamp: 21:00 in Beijing and 22:00 in Tokyo are one instant
    assert ev("timestamp(yyyyMMddHHmmss)", at(2022, 9, 29, 21)) == "1664456400"
    assert ev("timestamp(yyyyMMddHHmmss)", at(2022, 9, 29, 22, tz="Asia/Tokyo")) == "1664456400"
