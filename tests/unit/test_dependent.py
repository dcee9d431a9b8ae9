"""DEPENDENT's pure logic: every date window (DST days in Europe/Berlin and America/New_York
included), the field validator and its registration, and the AND/OR evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core import dependent as dep
from core.errors import ValidationError
from core.spec import parse_workflow_spec
from core.task_types import validate_task

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def z(s: str) -> datetime:
    """An ISO instant in UTC (``2026-03-29T01:00``)."""
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def local(s: str, tz: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(tz), fold=fold)


def span(name: str, base: datetime, tz: str = "UTC") -> tuple[datetime, datetime]:
    w = dep.window(name, base, tz)
    assert w.start.tzinfo is not None and w.start.utcoffset() == timedelta(0)
    assert w.start < w.end and w.name == name
    return w.start, w.end


# --- windows in UTC: every name ----------------------------------------------------------------

BASE = z("2026-05-13T10:20:30")  # a Wednesday


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        ("today", "2026-05-13T00:00", "2026-05-14T00:00"),
        ("yesterday", "2026-05-12T00:00", "2026-05-13T00:00"),
        ("last1Days", "2026-05-12T00:00", "2026-05-13T00:00"),
        ("last1Day", "2026-05-12T00:00", "2026-05-13T00:00"),
        ("last3Days", "2026-05-10T00:00", "2026-05-13T00:00"),
        ("last7Days", "2026-05-06T00:00", "2026-05-13T00:00"),
        ("currentHour", "2026-05-13T10:00", "2026-05-13T11:00"),
        ("last1Hour", "2026-05-13T09:00", "2026-05-13T10:00"),
        ("last1Hours", "2026-05-13T09:00", "2026-05-13T10:00"),
        ("last3Hours", "2026-05-13T07:00", "2026-05-13T10:00"),
        ("last24Hours", "2026-05-12T10:00", "2026-05-13T10:00"),
        ("thisWeek", "2026-05-11T00:00", "2026-05-18T00:00"),
        ("lastWeek", "2026-05-04T00:00", "2026-05-11T00:00"),
        ("lastMonday", "2026-05-04T00:00", "2026-05-05T00:00"),
        ("lastTuesday", "2026-05-05T00:00", "2026-05-06T00:00"),
        ("lastWednesday", "2026-05-06T00:00", "2026-05-07T00:00"),
        ("lastThursday", "2026-05-07T00:00", "2026-05-08T00:00"),
        ("lastFriday", "2026-05-08T00:00", "2026-05-09T00:00"),
        ("lastSaturday", "2026-05-09T00:00", "2026-05-10T00:00"),
        ("lastSunday", "2026-05-10T00:00", "2026-05-11T00:00"),
        ("thisMonth", "2026-05-01T00:00", "2026-06-01T00:00"),
        ("lastMonth", "2026-04-01T00:00", "2026-05-01T00:00"),
        ("lastMonthBegin", "2026-04-01T00:00", "2026-04-02T00:00"),
        ("lastMonthEnd", "2026-04-30T00:00", "2026-05-01T00:00"),
    ],
)
def test_every_window_in_utc(name: str, start: str, end: str) -> None:
    assert span(name, BASE) == (z(start), z(end))


def test_window_is_half_open() -> None:
    w = dep.window("yesterday", BASE, "UTC")
    assert w.contains(z("2026-05-12T00:00")) and w.contains(z("2026-05-12T23:59:59.999999"))
    assert not w.contains(z("2026-05-13T00:00")) and not w.contains(z("2026-05-11T23:59:59"))


def test_weeks_are_iso_weeks_starting_monday() -> None:
    monday, sunday = z("2026-05-11T00:00"), z("2026-05-17T23:59")
    assert span("thisWeek", monday) == span("thisWeek", sunday)
    assert span("thisWeek", sunday)[0] == monday
    # a Sunday's lastWeek is the week before its Monday, not the 7 days before it
    assert span("lastWeek", sunday) == (z("2026-05-04T00:00"), monday)


def test_months_across_years_and_leap_february() -> None:
    jan = z("2026-01-10T12:00")
    assert span("lastMonth", jan) == (z("2025-12-01T00:00"), z("2026-01-01T00:00"))
    assert span("thisMonth", z("2025-12-31T23:00")) == (z("2025-12-01"), z("2026-01-01"))
    leap = z("2024-03-05T00:00")
    assert span("lastMonthEnd", leap) == (z("2024-02-29T00:00"), z("2024-03-01T00:00"))
    assert span("lastMonth", leap) == (z("2024-02-01T00:00"), z("2024-03-01T00:00"))
    assert span("lastMonthEnd", z("2025-03-05")) == (z("2025-02-28"), z("2025-03-01"))


def test_days_are_local_days_of_the_workflow_time_zone() -> None:
    # 23:30 UTC on June 30 is already July 1 in Berlin (CEST, +2)
    base = z("2026-06-30T23:30")
    assert span("today", base, BERLIN) == (z("2026-06-30T22:00"), z("2026-07-01T22:00"))
    assert span("today", base) == (z("2026-06-30T00:00"), z("2026-07-01T00:00"))
    assert span("thisMonth", base, BERLIN)[0] == z("2026-06-30T22:00")  # July 1, local midnight
    # New York (EDT, -4): 02:00 UTC on May 13 is still May 12
    assert span("today", z("2026-05-13T02:00"), NEW_YORK) == (
        z("2026-05-12T04:00"),
        z("2026-05-13T04:00"),
    )


# --- DST -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "base", "start", "end", "hours"),
    [
        # spring forward: the local day of the change has 23 hours
        (BERLIN, "2026-03-30T10:00", "2026-03-28T23:00", "2026-03-29T22:00", 23),
        (NEW_YORK, "2026-03-09T10:00", "2026-03-08T05:00", "2026-03-09T04:00", 23),
        # fall back: 25 hours
        (BERLIN, "2026-10-26T10:00", "2026-10-24T22:00", "2026-10-25T23:00", 25),
        (NEW_YORK, "2026-11-02T10:00", "2026-11-01T04:00", "2026-11-02T05:00", 25),
    ],
)
def test_yesterday_on_a_dst_day(tz: str, base: str, start: str, end: str, hours: int) -> None:
    s, e = span("yesterday", local(base, tz), tz)
    assert (s, e) == (z(start), z(end))
    assert e - s == timedelta(hours=hours)
    assert span("today", local(base, tz) - timedelta(days=1), tz) == (s, e)


def test_weeks_and_months_with_a_dst_change_are_calendar_units() -> None:
    # the ISO week of 2026-03-23 holds Berlin's spring change: 7 days minus an hour
    s, e = span("thisWeek", local("2026-03-25T12:00", BERLIN), BERLIN)
    assert (s, e) == (z("2026-03-22T23:00"), z("2026-03-29T22:00"))
    assert e - s == timedelta(days=7, hours=-1)
    # March in New York: from EST midnight to EDT midnight
    s, e = span("lastMonth", local("2026-04-15T09:00", NEW_YORK), NEW_YORK)
    assert (s, e) == (z("2026-03-01T05:00"), z("2026-04-01T04:00"))
    # the week of New York's fall back has an extra hour
    s, e = span("lastWeek", local("2026-11-04T09:00", NEW_YORK), NEW_YORK)
    assert (s, e) == (z("2026-10-26T04:00"), z("2026-11-02T05:00"))
    assert e - s == timedelta(days=7, hours=1)
    # lastSunday = the day of the change, 23 hours long
    s, e = span("lastSunday", local("2026-04-01T09:00", BERLIN), BERLIN)
    assert (s, e) == (z("2026-03-28T23:00"), z("2026-03-29T22:00"))


def test_hours_are_elapsed_hours_across_dst() -> None:
    # 04:30 CEST on the spring day (02:30 UTC): three real hours back from 04:00 CEST
    base = local("2026-03-29T04:30", BERLIN)
    assert span("last3Hours", base, BERLIN) == (z("2026-03-28T23:00"), z("2026-03-29T02:00"))
    # New York fall back: 01:30 happens twice; each one's own hour
    first = local("2026-11-01T01:30", NEW_YORK, fold=0)  # EDT, 05:30 UTC
    second = local("2026-11-01T01:30", NEW_YORK, fold=1)  # EST, 06:30 UTC
    assert span("currentHour", first, NEW_YORK) == (z("2026-11-01T05:00"), z("2026-11-01T06:00"))
    assert span("currentHour", second, NEW_YORK) == (z("2026-11-01T06:00"), z("2026-11-01T07:00"))
    assert span("last2Hours", second, NEW_YORK) == (z("2026-11-01T04:00"), z("2026-11-01T06:00"))
    # Berlin's repeated 02:xx in autumn, given as UTC instants
    assert span("currentHour", z("2026-10-25T01:30"), BERLIN) == (
        z("2026-10-25T01:00"),
        z("2026-10-25T02:00"),
    )


def test_hours_follow_local_hours_in_a_half_hour_zone() -> None:
    # Asia/Kolkata is +05:30: the local hour 16:00-17:00 is 10:30-11:30 UTC
    base = z("2026-05-13T11:00")
    assert span("currentHour", base, "Asia/Kolkata") == (
        z("2026-05-13T10:30"),
        z("2026-05-13T11:30"),
    )


def test_unknown_windows_and_naive_base_are_refused() -> None:
    for bad in ("tomorrow", "last0Days", "lastHours", "Today", "last99999Days", ""):
        assert dep.window_problem(bad), bad
        with pytest.raises(ValueError):
            dep.window(bad, BASE, "UTC")
    with pytest.raises(ValueError, match="aware"):
        dep.window("today", datetime(2026, 1, 1), "UTC")


# --- validation --------------------------------------------------------------------------------


def task(**fields: Any) -> dict[str, Any]:
    return {
        "name": "wait",
        "type": "DEPENDENT",
        "dependencies": {
            "relation": "AND",
            "groups": [{"relation": "OR", "items": [{"workflow": "up", "window": "yesterday"}]}],
        },
        **fields,
    }


def fields_of(t: dict[str, Any]) -> dict[str, str]:
    return dict(dep.validate(t))


def test_a_valid_task_has_no_problems_and_parses() -> None:
    t = task(check_interval_s=2, dependence_timeout_s=60)
    t["dependencies"]["groups"].append(
        {"items": [{"workflow": 7, "task": " load ", "window": "last3Hours"}]}
    )
    assert dep.validate(t) == []
    d = dep.parse(t)
    assert d.relation == "AND" and d.check_interval_s == 2 and d.timeout_s == 60
    assert d.groups[0] == dep.Group("OR", (dep.Item("up", None, "yesterday"),))
    assert d.groups[1] == dep.Group("AND", (dep.Item(7, "load", "last3Hours"),))


def test_defaults_and_timeout_fallback() -> None:
    d = dep.parse(task())
    assert d.check_interval_s == dep.DEFAULT_CHECK_INTERVAL_S and d.timeout_s is None
    assert dep.parse(task(timeout_s=30)).timeout_s == 30
    assert dep.parse(task(timeout_s=30, dependence_timeout_s=5)).timeout_s == 5


def test_problems_name_the_field() -> None:
    assert fields_of({"name": "x"}) == {"dependencies": "is required"}
    assert "must be an object" in fields_of(task(dependencies=[1]))["dependencies"]
    bad = task(check_interval_s=0, dependence_timeout_s=-1)
    bad["dependencies"] = {
        "relation": "XOR",
        "groups": [
            {"relation": "and", "items": []},
            "nope",
            {
                "items": [
                    {"task": "", "window": "tomorrow"},
                    {"workflow": True, "window": "today", "date": "x"},
                    {"workflow": "ok"},
                ]
            },
        ],
    }
    got = fields_of(bad)
    assert set(got) == {
        "check_interval_s",
        "dependence_timeout_s",
        "dependencies.relation",
        "dependencies.groups[0].items",
        "dependencies.groups[1]",
        "dependencies.groups[2].items[0].workflow",
        "dependencies.groups[2].items[0].task",
        "dependencies.groups[2].items[0].window",
        "dependencies.groups[2].items[1].workflow",
        "dependencies.groups[2].items[1]",
        "dependencies.groups[2].items[2].window",
    }
    assert "tomorrow" in got["dependencies.groups[2].items[0].window"]
    assert "date" in got["dependencies.groups[2].items[1]"]
    with pytest.raises(ValueError, match="dependencies.relation"):
        dep.parse(bad)


def test_validator_is_registered_for_the_spec() -> None:
    found = validate_task("wait", "dependent", task(dependencies={"groups": []}))
    assert [p["field"] for p in found] == ["dependencies.groups"]
    assert "task 'wait': dependencies.groups" in found[0]["message"]
    bad = {"name": "wf", "tasks": [task(check_interval_s="soon")]}
    with pytest.raises(ValidationError, match="task 'wait': check_interval_s"):
        parse_workflow_spec(bad)
    ok = parse_workflow_spec({"name": "wf", "tasks": [task()]})
    assert ok.task("wait").type == "DEPENDENT"


# --- AND / OR --------------------------------------------------------------------------------


def resolved(iid: int) -> dep.Resolved:
    t = z("2026-05-12T00:00")
    return dep.Resolved(iid, 1, t, t, "SUCCESS", t + timedelta(minutes=1))


def results(d: dep.Dependencies, found: dict[tuple[int, int], int]) -> list[dep.ItemResult]:
    out = []
    for gi, g in enumerate(d.groups):
        for ii, it in enumerate(g.items):
            w = dep.window(it.window, BASE, "UTC")
            hit = found.get((gi, ii))
            out.append(dep.ItemResult(gi, ii, it, w, resolved(hit) if hit else None))
    return out


def two_groups(top: str, first: str, second: str) -> dep.Dependencies:
    item = {"workflow": "up", "window": "yesterday"}
    return dep.parse(
        task(
            dependencies={
                "relation": top,
                "groups": [
                    {"relation": first, "items": [item, {**item, "workflow": "other"}]},
                    {"relation": second, "items": [{**item, "task": "t"}]},
                ],
            }
        )
    )


@pytest.mark.parametrize(
    ("top", "first", "found", "passed"),
    [
        ("AND", "OR", {(0, 1): 1, (1, 0): 2}, True),  # OR: one of two items is enough
        ("AND", "OR", {(0, 0): 1}, False),  # AND: the second group is missing
        ("AND", "AND", {(0, 0): 1, (1, 0): 2}, False),  # AND group waits for both items
        ("AND", "AND", {(0, 0): 1, (0, 1): 3, (1, 0): 2}, True),
        ("OR", "AND", {(1, 0): 2}, True),  # OR of groups: one group is enough
        ("OR", "AND", {(0, 0): 1}, False),
        ("OR", "OR", {}, False),
    ],
)
def test_and_or(top: str, first: str, found: dict[tuple[int, int], int], passed: bool) -> None:
    d = two_groups(top, first, "AND")
    out = dep.evaluate(d, list(reversed(results(d, found))))
    assert out.passed is passed
    assert [(r.group, r.index) for r in out.results] == [(0, 0), (0, 1), (1, 0)]
    if passed:
        assert out.reason.startswith("dependencies met")
        recorded = dep.resolved_output(out)
        assert sorted(r["instance_id"] for r in recorded) == sorted(found.values())
        assert all(r["window"] == "yesterday" for r in recorded)
        assert recorded[0]["window_start"] == "2026-05-12T00:00:00+00:00"
    else:
        assert out.reason.startswith("waiting for a successful run of")
        assert "yesterday [2026-05-12T00:00:00+00:00, 2026-05-13T00:00:00+00:00)" in out.reason


def test_waiting_reason_names_only_what_blocks() -> None:
    d = two_groups("AND", "OR", "AND")
    out = dep.evaluate(d, results(d, {(0, 0): 1}))
    assert "workflow 'up' task 't'" in out.reason
    assert "workflow 'other'" not in out.reason  # its OR group already passed


def test_base_time_prefers_the_schedule_time() -> None:
    s, st, now = z("2026-01-01"), z("2026-01-05"), z("2026-01-09")
    assert dep.base_time(s, st, now) == s
    assert dep.base_time(None, st, now) == st
    assert dep.base_time(None, None, now) == now


def test_missing_names_the_blocking_items() -> None:
    d = two_groups("AND", "OR", "AND")
    out = dep.evaluate(d, results(d, {}))
    assert out.missing.count("workflow") == 3 and out.reason.endswith(out.missing)
    assert dep.evaluate(d, results(d, {(0, 0): 1, (1, 0): 2})).missing == ""


def test_checks_run_on_a_grid_from_the_attempt_start() -> None:
    from master.dependent import next_check

    start = z("2026-05-13T10:00")
    assert next_check(start, 10, start) == start + timedelta(seconds=10)
    assert next_check(start, 10, start + timedelta(seconds=9.9)) == start + timedelta(seconds=10)
    assert next_check(start, 10, start + timedelta(seconds=10)) == start + timedelta(seconds=20)
    # polled early for another reason, or adopted long after the start: still on the grid
    assert next_check(start, 10, start + timedelta(seconds=95)) == start + timedelta(seconds=100)
    assert next_check(start, 0.5, start - timedelta(seconds=3)) == start + timedelta(seconds=0.5)
