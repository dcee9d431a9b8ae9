"""Cron semantics without servers: 5-field and Quartz forms, L/W/#, validation messages, DST gaps
and repeats in Europe/Berlin and America/New_York, and the misfire plans of the cron leader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core import cron
from core.errors import ValidationError
from master.cron_plan import plan, scan_due

BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")


def _local(expr: str, tz: ZoneInfo, after: datetime, n: int) -> list[str]:
    out = []
    for f in cron.fires(expr, tz, after):
        out.append(f.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S%z"))
        if len(out) == n:
            break
    return out


def _utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


# -- parsing ------------------------------------------------------------------------------------


def test_dolphinscheduler_quartz_daily_at_two_equals_five_field_form() -> None:
    after = _utc(2026, 1, 1)
    quartz = _local("0 0 2 * * ? *", BERLIN, after, 3)
    assert quartz == _local("0 2 * * *", BERLIN, after, 3)
    assert quartz[0] == "2026-01-01 02:00:00+0100"
    assert cron.parse("0 0 2 * * ? *").kind == "quartz"
    assert cron.parse("0 2 * * *").kind == "cron"


def test_quartz_day_of_week_is_one_based_sunday() -> None:
    # Quartz 2-6 = MON-FRI; cron 1-5 = MON-FRI
    after = _utc(2026, 1, 1)  # a Thursday
    q = _local("0 0 12 ? * 2-6", ZoneInfo("UTC"), after, 6)
    c = _local("0 12 * * 1-5", ZoneInfo("UTC"), after, 6)
    assert q == c
    assert all(datetime.strptime(x[:10], "%Y-%m-%d").weekday() < 5 for x in q)
    # Quartz 1 = Sunday, cron 0 (and 7) = Sunday
    assert _local("0 0 0 ? * 1", ZoneInfo("UTC"), after, 1) == ["2026-01-04 00:00:00+0000"]
    assert _local("0 0 * * 7", ZoneInfo("UTC"), after, 1) == ["2026-01-04 00:00:00+0000"]


@pytest.mark.parametrize(
    ("expr", "first_three"),
    [
        # last day of the month
        ("0 0 3 L * ?", ["2026-01-31", "2026-02-28", "2026-03-31"]),
        # last weekday of the month (2026-01-31 is a Saturday, 2026-05-31 a Sunday)
        ("0 0 3 LW * ?", ["2026-01-30", "2026-02-27", "2026-03-31"]),
        # two days before the last day
        ("0 0 3 L-2 * ?", ["2026-01-29", "2026-02-26", "2026-03-29"]),
        # nearest weekday to the 15th (2026-02-15 and 2026-03-15 are Sundays)
        ("0 0 3 15W * ?", ["2026-01-15", "2026-02-16", "2026-03-16"]),
        # third Friday (Quartz 6 = FRI)
        ("0 0 3 ? * 6#3", ["2026-01-16", "2026-02-20", "2026-03-20"]),
        # last Friday (Quartz 6L)
        ("0 0 3 ? * 6L", ["2026-01-30", "2026-02-27", "2026-03-27"]),
        # the same in 5-field cron: FRI#3 and 5#3
        ("0 3 * * FRI#3", ["2026-01-16", "2026-02-20", "2026-03-20"]),
        # a Quartz year field
        ("0 0 3 1 1 ? 2028-2030", ["2028-01-01", "2029-01-01", "2030-01-01"]),
    ],
)
def test_special_day_forms(expr: str, first_three: list[str]) -> None:
    got = [x[:10] for x in _local(expr, ZoneInfo("UTC"), _utc(2026, 1, 1), 3)]
    assert got == first_three


def test_one_w_does_not_cross_into_the_previous_month() -> None:
    # 2026-08-01 is a Saturday: Quartz fires on Monday the 3rd, not Friday 31 July
    got = _local("0 0 3 1W * ?", ZoneInfo("UTC"), _utc(2026, 7, 15), 1)
    assert got == ["2026-08-03 03:00:00+0000"]


def test_per_second_quartz_schedule() -> None:
    got = _local("* * * * * ?", ZoneInfo("UTC"), _utc(2026, 1, 1, 0, 0, 0), 3)
    assert got == [
        "2026-01-01 00:00:01+0000",
        "2026-01-01 00:00:02+0000",
        "2026-01-01 00:00:03+0000",
    ]


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("61 * * * *", "minute value 61 is out of range 0-59"),
        ("* * * *", "expected 5 fields"),
        ("0 0 2 ? * 8", "day-of-week value 8 is out of range 1-7 (Quartz: 1=SUN..7=SAT)"),
        ("0 0 2 ? * ?", "not both"),
        ("0 0 2 * * ? 2200", "year value 2200 is out of range 1970-2199"),
        ("? * * * *", "'?' is only allowed in day-of-month or day-of-week"),
        ("0 */0 * * *", "the step must be at least 1"),
        ("0 0 2 1-5W * ?", "'W' takes a single day"),
        ("0 2 * FOO *", "month value 'FOO' is not a number or name"),
        ("0 0 2 LW * MON", "Quartz requires '?' in exactly one of day-of-month and day-of-week"),
        ("", "empty"),
        ("@fortnightly", "unknown alias"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expr: str, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        cron.parse(expr)
    assert says in info.value.message
    assert info.value.details[0]["code"] == "invalid_cron"


def test_unknown_time_zone() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        cron.zone("Mars/Olympus")


def test_expression_that_never_fires_has_no_next_time() -> None:
    assert cron.next_fire("0 2 31 2 *", "UTC", _utc(2026, 1, 1)) is None


# -- DST ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * ?"])
def test_berlin_spring_gap_fires_once_at_the_first_valid_instant(expr: str) -> None:
    fires = list(cron.fires(expr, BERLIN, _utc(2026, 3, 27), _utc(2026, 3, 31)))
    local = [f.at.astimezone(BERLIN).strftime("%m-%d %H:%M%z") for f in fires]
    assert local == ["03-27 02:30+0100", "03-28 02:30+0100", "03-29 03:00+0200", "03-30 02:30+0200"]
    assert [f.dst for f in fires] == [None, None, cron.GAP, None]
    assert fires[2].at == _utc(2026, 3, 29, 1, 0)  # the transition instant
    assert fires[2].wall == datetime(2026, 3, 29, 2, 30)


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * ?"])
def test_berlin_autumn_repeat_fires_once(expr: str) -> None:
    fires = list(cron.fires(expr, BERLIN, _utc(2026, 10, 24), _utc(2026, 10, 27)))
    assert [f.at for f in fires] == [
        _utc(2026, 10, 24, 0, 30),
        _utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first of the two 02:30s
        _utc(2026, 10, 26, 1, 30),
    ]
    assert [f.dst for f in fires] == [None, cron.REPEAT, None]


def test_sub_hourly_schedule_collapses_gap_and_skips_second_pass_of_repeat() -> None:
    spring = _local("*/20 * * * *", BERLIN, _utc(2026, 3, 29, 0, 30), 4)
    assert spring == [
        "2026-03-29 01:40:00+0100",
        "2026-03-29 03:00:00+0200",  # 02:00, 02:20, 02:40 collapse into one fire, with 03:00
        "2026-03-29 03:20:00+0200",
        "2026-03-29 03:40:00+0200",
    ]
    autumn = _local("*/30 * * * *", BERLIN, _utc(2026, 10, 24, 23, 45), 5)
    assert autumn == [
        "2026-10-25 02:00:00+0200",
        "2026-10-25 02:30:00+0200",
        "2026-10-25 03:00:00+0100",  # no second 02:00/02:30 (+0100)
        "2026-10-25 03:30:00+0100",
        "2026-10-25 04:00:00+0100",
    ]


def test_starting_inside_the_repeated_hour_does_not_refire_its_first_pass() -> None:
    # 02:10 CET (+0100) is the second 02:10 of 2026-10-25; 02:30 fired already at +0200
    after = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1)
    assert cron.next_fire("30 2 * * *", BERLIN, after) == _utc(2026, 10, 26, 1, 30)


def test_new_york_gap_and_repeat() -> None:
    spring = list(cron.fires("0 30 2 * * ?", NY, _utc(2026, 3, 7, 12), _utc(2026, 3, 9, 12)))
    assert [(f.at.astimezone(NY).strftime("%d %H:%M%z"), f.dst) for f in spring] == [
        ("08 03:00-0400", cron.GAP),
        ("09 02:30-0400", None),
    ]
    autumn = list(cron.fires("30 1 * * *", NY, _utc(2026, 10, 31, 12), _utc(2026, 11, 2, 12)))
    assert [(f.at.astimezone(NY).strftime("%d %H:%M%z"), f.dst) for f in autumn] == [
        ("01 01:30-0400", cron.REPEAT),
        ("02 01:30-0500", None),
    ]


def test_preview_shows_dst_flags_and_notes() -> None:
    items = cron.preview("0 30 2 * * ?", "Europe/Berlin", _utc(2026, 3, 28, 12), 2)
    assert items[0]["dst"] == "GAP" and items[0]["time"] == "2026-03-29T03:00:00+02:00"
    assert "does not exist" in items[0]["note"]
    assert items[1]["dst"] is None and items[1]["time"] == "2026-03-30T02:30:00+02:00"
    items = cron.preview("30 2 * * *", "Europe/Berlin", _utc(2026, 10, 25), 1)
    assert items[0]["dst"] == "REPEAT" and "occurs twice" in items[0]["note"]


# -- misfire plans ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "fired", "skipped"),
    [("FIRE_ALL", 11, 0), ("FIRE_ONCE", 2, 9), ("SKIP", 1, 10)],
)
def test_misfire_policies_after_ten_minutes_down(policy: str, fired: int, skipped: int) -> None:
    nxt = _utc(2026, 5, 1, 10, 0)
    now = _utc(2026, 5, 1, 10, 10, 30)  # 10:00..10:09 are late by > 60 s, 10:10 is on time
    scan = scan_due("* * * * *", "UTC", nxt, now, None, 60, 1000, keep_all=policy == "FIRE_ALL")
    p = plan(policy, scan)
    assert len(p.fire) == fired and p.skipped == skipped
    assert p.fire[-1] == _utc(2026, 5, 1, 10, 10)
    if policy == "FIRE_ONCE":
        assert p.fire[0] == _utc(2026, 5, 1, 10, 9)  # the newest missed time
    assert p.next_fire == _utc(2026, 5, 1, 10, 11)


def test_fire_all_catch_up_is_chunked_and_respects_the_window_end() -> None:
    nxt = _utc(2026, 5, 1, 0, 0)
    now = _utc(2026, 5, 1, 1, 0)
    scan = scan_due("* * * * *", "UTC", nxt, now, None, 60, 25, keep_all=True)
    assert len(plan("FIRE_ALL", scan).fire) == 25 and scan.next_fire == nxt + timedelta(minutes=25)
    end = _utc(2026, 5, 1, 0, 4)
    scan = scan_due("* * * * *", "UTC", nxt, now, end, 60, 1000, keep_all=True)
    assert len(scan.missed) == 5 and scan.next_fire is None
