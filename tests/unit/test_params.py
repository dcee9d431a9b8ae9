"""Parameters: time expressions (DST in Europe/Berlin, month ends, leap day, weeks), resolution
precedence and cycles, the task environment, and quoted substitution into shell commands."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.errors import ValidationError
from core.params import (
    builtins,
    merge_upstream_outputs,
    params_to_env,
    render_shell,
    resolve_task_params,
)
from core.timeexpr import at_local, evaluate, shift_days

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> datetime:
    """A Berlin wall time (must exist and be unambiguous) as an aware datetime."""
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def ev(expr: str, base: datetime, tz: str = "Europe/Berlin") -> str:
    return evaluate(expr, base, tz)


# built-ins ------------------------------------------------------------------------------------


def test_builtins_use_the_day_before_the_base_day_in_the_workflow_zone() -> None:
    base = datetime(2026, 3, 29, 22, 30, tzinfo=UTC)  # 2026-03-30 00:30 CEST
    assert builtins(base, "Europe/Berlin") == {
        "system.biz.date": "20260329",
        "system.biz.curdate": "20260330",
        "system.datetime": "20260330003000",
    }
    assert builtins(base, "UTC")["system.biz.curdate"] == "20260329"


def test_builtins_across_the_spring_gap_and_a_month_start() -> None:
    # 2026-03-30 is the first day after the gap; 2026-03-01 needs the end of February
    assert builtins(berlin(2026, 3, 30, 2, 30), BERLIN)["system.biz.date"] == "20260329"
    assert builtins(berlin(2028, 3, 1, 0, 0), BERLIN)["system.biz.date"] == "20280229"


# DST: day arithmetic keeps the wall clock, hour arithmetic moves absolute time ----------------


def test_minus_one_day_across_spring_forward_is_yesterday_same_wall_time() -> None:
    base = berlin(2026, 3, 30, 12, 0)  # CEST
    assert ev("yyyy-MM-dd HH:mm:ss-1", base) == "2026-03-29 12:00:00"
    assert ev("yyyy-MM-dd HH:mm:ss-2", base) == "2026-03-28 12:00:00"  # CET
    # only 23 hours of absolute time lie between 03-28 12:00 and 03-29 12:00
    d1 = shift_days(base, -1).astimezone(UTC)
    d2 = shift_days(base, -2).astimezone(UTC)
    assert d1 - d2 == timedelta(hours=23)


def test_day_arithmetic_landing_in_the_spring_gap_moves_forward_by_the_gap() -> None:
    base = berlin(2026, 3, 30, 2, 30)
    assert ev("yyyy-MM-dd HH:mm-1", base) == "2026-03-29 03:30"
    assert at_local(datetime(2026, 3, 29, 2, 30), BERLIN).utcoffset() == timedelta(hours=2)


def test_hour_arithmetic_across_spring_forward_skips_the_missing_hour() -> None:
    base = berlin(2026, 3, 29, 1, 30)  # CET, 00:30 UTC
    assert ev("HH:mm+1/24", base) == "03:30"  # 01:30 UTC is 03:30 CEST
    assert ev("yyyyMMddHHmm-1/24/60", berlin(2026, 3, 29, 3, 0)) == "202603290159"


def test_minus_one_day_across_fall_back_is_yesterday_same_wall_time() -> None:
    base = berlin(2026, 10, 26, 1, 0)  # CET
    assert ev("yyyy-MM-dd HH:mm-1", base) == "2026-10-25 01:00"  # CEST
    d = shift_days(base, -1)
    assert base.astimezone(UTC) - d.astimezone(UTC) == timedelta(hours=25)


def test_day_arithmetic_landing_on_an_ambiguous_time_takes_the_first_occurrence() -> None:
    base = berlin(2026, 10, 26, 2, 30)  # CET, unambiguous
    assert ev("yyyy-MM-dd HH:mm-1", base) == "2026-10-25 02:30"
    d = shift_days(base, -1)
    assert d.utcoffset() == timedelta(hours=2)  # summer time, the earlier of the two
    assert d.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_hour_arithmetic_across_fall_back_repeats_the_wall_hour() -> None:
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert ev("HH:mm", first) == "02:30"
    assert ev("HH:mm+1/24", first) == "02:30"  # 02:30 CET: the repeated hour
    assert ev("HH:mm+2/24", first) == "03:30"
    assert ev("yyyyMMdd HH:mm+7*1", first) == "20261101 02:30"  # a week later, same wall time


# month ends, leap day, years ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expr", "want"),
    [
        (berlin(2026, 1, 31, 9), "add_months(yyyy-MM-dd,1)", "2026-02-28"),
        (berlin(2028, 1, 31, 9), "add_months(yyyy-MM-dd,1)", "2028-02-29"),
        (berlin(2026, 3, 31, 9), "add_months(yyyy-MM-dd,-1)", "2026-02-28"),
        (berlin(2026, 3, 31, 9), "add_months(yyyy-MM-dd HH:mm,-13)", "2025-02-28 09:00"),
        (berlin(2028, 2, 29, 9), "add_months(yyyyMMdd,12)", "20290228"),
        (berlin(2028, 2, 29, 9), "add_months(yyyyMMdd,-12*1)", "20270228"),
        (berlin(2028, 2, 29, 9), "add_months(yyyyMMdd,1)", "20280329"),
        (berlin(2028, 2, 29, 9), "add_months(yyyyMMdd,-1)", "20280129"),
        (berlin(2028, 2, 29, 9), "add_months(yyyyMMdd,48)", "20320229"),
        (berlin(2028, 2, 29, 9), "yyyyMMdd+1", "20280301"),
        (berlin(2028, 3, 1, 9), "yyyyMMdd-1", "20280229"),
        # the month's last day is month_last_day (last_day is DolphinScheduler's "yesterday")
        (berlin(2028, 2, 10, 9), "month_last_day(yyyy-MM-dd)", "2028-02-29"),
        (berlin(2026, 2, 10, 9), "month_last_day(yyyy-MM-dd)", "2026-02-28"),
        (berlin(2026, 12, 31, 9), "month_last_day(yyyy-MM-dd)", "2026-12-31"),
        (berlin(2028, 3, 15, 9), "month_last_day(yyyyMMdd,-1)", "20280229"),
        (berlin(2028, 3, 31, 9), "month_first_day(yyyyMMdd,-1)", "20280201"),
        (berlin(2026, 1, 15, 9), "month_first_day(yyyy-MM-dd,-1)", "2025-12-01"),
        (berlin(2026, 12, 15, 9), "month_last_day(yyyy-MM-dd,1)", "2027-01-31"),
        (berlin(2026, 3, 29, 9), "this_day(yyyy-MM-dd)", "2026-03-29"),
    ],
)
def test_calendar_functions(base: datetime, expr: str, want: str) -> None:
    assert ev(expr, base) == want


def test_month_arithmetic_into_the_spring_gap_is_resolved_forward() -> None:
    assert ev("add_months(yyyy-MM-dd HH:mm,1)", berlin(2026, 2, 28, 23, 0)) == "2026-03-28 23:00"
    # 2026-02-29 does not exist (clamped to 28); 2026-03-29 02:30 does not exist either
    assert ev("add_months(yyyy-MM-dd HH:mm,1)", berlin(2026, 2, 1, 2, 30)) == "2026-03-01 02:30"
    assert ev("add_months(MM-dd HH:mm,-1)", berlin(2026, 4, 29, 2, 30)) == "03-29 03:30"


# weeks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expr", "want"),
    [
        (date(2026, 3, 23), "week_first_day(yyyy-MM-dd,0)", "2026-03-23"),  # a Monday
        (date(2026, 3, 29), "week_first_day(yyyy-MM-dd,0)", "2026-03-23"),  # a Sunday
        (date(2026, 3, 23), "week_last_day(yyyy-MM-dd,0)", "2026-03-29"),
        (date(2026, 3, 29), "week_last_day(yyyy-MM-dd,0)", "2026-03-29"),
        (date(2026, 3, 23), "week_first_day(yyyy-MM-dd,-1)", "2026-03-16"),
        (date(2026, 3, 29), "week_last_day(yyyy-MM-dd,1)", "2026-04-05"),
        (date(2026, 1, 1), "week_first_day(yyyy-MM-dd,0)", "2025-12-29"),
        (date(2026, 3, 23), "yyyyMMdd-7*1", "20260316"),
        (date(2026, 3, 23), "yyyyMMdd+7*2", "20260406"),
    ],
)
def test_week_functions(day: date, expr: str, want: str) -> None:
    assert ev(expr, berlin(day.year, day.month, day.day, 10)) == want


def test_iso_year_week_matches_iso_weeks_by_default() -> None:
    # the ISO rule is iso_year_week; year_week is DolphinScheduler's (test_params_dolphinscheduler)
    d = date(2025, 12, 1)
    while d < date(2028, 2, 1):
        y, w, _ = d.isocalendar()
        got = ev("iso_year_week(yyyy-MM-dd)", berlin(d.year, d.month, d.day, 12))
        assert got == f"{y:04d}-{w:02d}", d
        d += timedelta(days=1)
    assert ev("iso_year_week(yyyyMMdd)", berlin(2027, 1, 1, 12)) == "202653"


def test_iso_year_week_with_sunday_as_first_day() -> None:
    # 2026-01-04 is a Sunday: it starts week 1 when weeks start on Sunday, ends it on Mondays
    assert ev("iso_year_week(yyyy-MM-dd,7)", berlin(2026, 1, 4, 12)) == "2026-01"
    assert ev("iso_year_week(yyyy-MM-dd,7)", berlin(2026, 1, 3, 12)) == "2025-53"
    assert ev("iso_year_week(yyyy-MM-dd,1)", berlin(2026, 1, 4, 12)) == "2026-01"
    assert ev("iso_year_week(yyyy-MM-dd,1)", berlin(2026, 1, 5, 12)) == "2026-02"


# formats and errors --------------------------------------------------------------------------


def test_patterns_and_literals() -> None:
    base = berlin(2026, 7, 4, 8, 5, 9)
    assert ev("yyyy-MM-dd HH:mm:ss", base) == "2026-07-04 08:05:09"
    assert ev("yy/M/d H:m", base) == "26/7/4 8:5"
    assert ev("yyyy-MM-dd'T'HH:mm", base) == "2026-07-04T08:05"
    assert ev("yyyy-MM-dd-1", base) == "2026-07-03"
    assert ev("yyyyMMdd - 1 - (2*3)", base) == "20260627"


@pytest.mark.parametrize(
    "expr",
    ["yyyyMMll", "yyyyMMdd-x1", "yyyyMMdd-1/0", "nope(yyyyMMdd)", "add_months(yyyyMMdd)",
     "add_months(yyyyMMdd,1/2)", "yyyy'MM", "year_week(yyyyMMdd,9)", " "],
)  # fmt: skip
def test_bad_expressions_are_validation_errors_naming_them(expr: str) -> None:
    with pytest.raises(ValidationError) as info:
        ev(expr, berlin(2026, 1, 1))
    assert expr.strip() in info.value.message or "pattern" in info.value.message


def test_unknown_time_zone() -> None:
    with pytest.raises(ValidationError, match="Mars/Olympus"):
        builtins(datetime(2026, 1, 1, tzinfo=UTC), "Mars/Olympus")


# resolution ----------------------------------------------------------------------------------

BASE = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)


def resolve(
    g: dict[str, str] | None = None,
    up: dict[str, str] | None = None,
    st: dict[str, str] | None = None,
    loc: dict[str, str] | None = None,
) -> dict[str, str]:
    return resolve_task_params(g or {}, up or {}, st or {}, loc or {}, BASE, "Europe/Berlin")


def test_precedence_global_upstream_startup_local() -> None:
    layers = {"g": "global", "u": "upstream", "s": "startup", "l": "local"}
    g = {k: "global" for k in layers}
    up = {k: "upstream" for k in ("u", "s", "l")}
    st = {k: "startup" for k in ("s", "l")}
    out = resolve(g, up, st, {"l": "local"})
    assert {k: out[k] for k in layers} == layers


def test_user_parameters_override_builtins_and_see_them() -> None:
    out = resolve({"system.biz.date": "20200101", "d": "${system.biz.date}"})
    assert out["d"] == "20200101"
    assert resolve({"d": "${system.biz.curdate}"})["d"] == "20260330"


def test_references_resolve_across_layers_recursively() -> None:
    out = resolve(
        {"root": "/data", "dir": "${root}/${day}"},
        {"o": "${root}"},  # upstream outputs are data, never templates
        {"day": "$[yyyyMMdd-1]"},
        {"file": "${dir}/part-${o}-${unknown}"},
    )
    assert out["dir"] == "/data/20260329"
    assert out["file"] == "/data/20260329/part-${root}-${unknown}"


def test_references_inside_time_expressions() -> None:
    assert resolve({"n": "3", "d": "$[yyyyMMdd-${n}]"})["d"] == "20260327"


def test_bash_arithmetic_brackets_are_left_alone() -> None:
    assert resolve({"a": "$[1+2] $[$x+1]"})["a"] == "$[1+2] $[$x+1]"


def test_cycles_are_named() -> None:
    with pytest.raises(ValidationError, match=r"\$\{a\} -> \$\{b\} -> \$\{c\} -> \$\{a\}"):
        resolve({"a": "${b}", "b": "x${c}"}, st={"c": "${a}"})
    with pytest.raises(ValidationError, match=r"\$\{self\} -> \$\{self\}"):
        resolve(loc={"self": "${self}:more"})


def test_bad_time_expression_names_the_parameter() -> None:
    with pytest.raises(ValidationError, match=r"parameter 'bad'.*\$\[yyyyMMdd\+q\]"):
        resolve(loc={"ok": "${bad}", "bad": "$[yyyyMMdd+q]"})


def test_depth_and_size_are_bounded() -> None:
    chain = {f"p{i}": f"${{p{i + 1}}}" for i in range(150)}
    with pytest.raises(ValidationError, match="deeper"):
        resolve(chain)
    bomb = {f"b{i}": f"${{b{i + 1}}}${{b{i + 1}}}" for i in range(40)}
    bomb["b40"] = "x"
    with pytest.raises(ValidationError, match="longer"):
        resolve(bomb)


def test_upstream_outputs_merge_in_depends_on_order() -> None:
    outputs = {"a": {"k": "from a", "x": "1"}, "b": {"k": "from b"}, "z": {"k": "not upstream"}}
    assert merge_upstream_outputs(["a", "b"], outputs) == {"k": "from b", "x": "1"}


def test_environment_has_aliases_for_dotted_names() -> None:
    env = params_to_env({"system.biz.date": "20260101", "a-b": "1", "a_b": "2", "9x": "3"})
    assert env["system.biz.date"] == env["system_biz_date"] == "20260101"
    assert env["a_b"] == "2"  # a real parameter wins over an alias
    assert env["_9x"] == "3"
    with pytest.raises(ValidationError):
        params_to_env({"bad": "a\0b"})


# shell rendering -----------------------------------------------------------------------------

EVIL = [
    "; touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "'; touch PWNED; '",
    '"; touch PWNED; "',
    "x\ntouch PWNED",
    "a'b\"c$d\\e`f",
    "\\",
    "",
    "  two  spaces  ",
    "*",
    "$'x'",
    "EOF\ntouch PWNED\nEOF",
]
# a command, and what it prints given that ${v} is substituted by the value V
CONTEXTS: list[tuple[str, str | None]] = [
    ("printf '[%s]' ${v}", "[V]"),
    ('printf "[%s]" "${v}"', "[V]"),
    ("printf '[%s]' '${v}'", "[V]"),
    ('printf "[%s]" "a ${v} b"', "[a V b]"),
    ("printf '[%s]' $'a${v}b'", "[aVb]"),
    ('printf "[%s]" "$(printf %s ${v})"', "[V]"),
    ('printf "[%s]" "$(printf %s "${v}")"', "[V]"),
    ("printf '[%s]' \"`printf %s ${v}`\"", "[V]"),
    ('x=${v}; printf "[%s]" "$x"', "[V]"),
    ('printf "[%s]" "${unset_var:-${v}}"', None),  # bash pairs ' even there: safety only
    ('printf "[%s]" "$(case a in a) printf %s ${v};; esac)"', "[V]"),
    ('printf "[%s]" "$((1<<2))${v}"', "[4V]"),
    ('printf "[%s]" "$(cat <<EOF\n${v}\nEOF\n)"', "[V]"),
    ('printf "[%s]" "$(cat <<\'EOF\'\n${v}\nEOF\n)"', "[V]"),
    ('printf "[%s]" "$(cat <<-EOF\n\t${v}\n\tEOF\n)"', "[V]"),
    ("# it's a comment ${v}\nprintf '[%s]' done", "[done]"),
    ("printf '[%s]' \"${v}\" # it's ${v}", "[V]"),
]


def run_bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=10
    )


@pytest.mark.parametrize(("command", "want"), CONTEXTS)
def test_values_never_run_and_read_back_as_themselves(
    command: str, want: str | None, tmp_path: Path
) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for value in EVIL:
        try:
            script = render_shell(command, {"v": value}, base, "UTC")
        except ValidationError as exc:  # only line breaks into a here-document are refused
            assert "\n" in value and "EOF" in command, exc
            continue
        res = run_bash(script, tmp_path)
        assert not (tmp_path / "PWNED").exists(), (command, value, script)
        if want is not None:
            assert res.stdout == want.replace("V", value), (command, value, script, res.stderr)


def test_render_substitutes_known_dotted_names_and_time_expressions() -> None:
    base = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)
    params = resolve_task_params({}, {}, {}, {}, base, "Europe/Berlin")
    out = render_shell(
        'echo ${system.biz.date} $[yyyyMMdd-1] "$[yyyy-MM-dd HH:mm]" ${x} $[1+2] ${setValue(a=b)}',
        params,
        base,
        "Europe/Berlin",
    )
    assert out == 'echo 20260329 20260329 "2026-03-30 12:00" ${x} $[1+2] ${setValue(a=b)}'


def test_render_quotes_unquoted_time_values_with_spaces() -> None:
    base = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)
    assert render_shell("echo $[yyyy-MM-dd HH:mm]", {}, base, "UTC") == "echo '2026-03-30 10:00'"


def test_render_leaves_comments_alone_and_reports_bad_expressions() -> None:
    base = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)
    assert render_shell("# ${v} $[bad]\necho", {"v": "x y"}, base, "UTC") == "# ${v} $[bad]\necho"
    with pytest.raises(ValidationError, match=r"\$\[yyyyMMdd\+q\]"):
        render_shell("echo $[yyyyMMdd+q]", {}, base, "UTC")
