"""The DEPENDENT task's pure logic: its fields and their validator, the date windows (relative to
the run's base time, in the workflow's time zone) and the AND/OR evaluation of resolved items.

Which upstream run counts (the one rule; the README repeats it): for an item ``{workflow, task?,
window}`` the candidates are the instances of that workflow whose base time -- ``schedule_time``,
or ``start_time`` for an unscheduled run -- lies in the window ``[start, end)``. Without ``task``
a candidate counts when the instance ended ``SUCCESS``; with ``task`` it counts when the latest
attempt of that task in the instance is ``SUCCESS`` or ``FORCED_SUCCESS`` (whatever the instance
does meanwhile). Of the candidates that count, the one with the latest base time wins (then the
highest instance id). A failed or running candidate never fails the item: it waits until a run
counts or the task's timeout runs out."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

TYPE = "DEPENDENT"
RELATIONS = ("AND", "OR")
DEFAULT_CHECK_INTERVAL_S = 10.0
MIN_CHECK_INTERVAL_S = 0.1
MAX_N = 10_000  # lastNHours / lastNDays
# the output key holding what the dependency resolved to (``__`` keys never become parameters)
RESOLVED_KEY = "__resolved"

_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_LAST_N = re.compile(r"^last(\d+)(Hour|Hours|Day|Days)$")
FIXED_WINDOWS = (
    "currentHour",
    "today",
    "yesterday",
    "thisWeek",
    "lastWeek",
    "thisMonth",
    "lastMonth",
    "lastMonthBegin",
    "lastMonthEnd",
    *(f"last{d}" for d in _DAY_NAMES),
)

FieldProblem = tuple[str, str]


# -- windows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) in UTC."""

    name: str
    start: datetime
    end: datetime

    def contains(self, t: datetime) -> bool:
        return self.start <= t < self.end


def window_problem(name: Any) -> str | None:
    """Why ``name`` is not a window we know, or None."""
    if not isinstance(name, str) or not name:
        return "must be a window name such as today, yesterday, last3Hours, thisWeek"
    if name in FIXED_WINDOWS:
        return None
    m = _LAST_N.match(name)
    if m:
        n = int(m.group(1))
        return None if 1 <= n <= MAX_N else f"N in {name} must be between 1 and {MAX_N}"
    return f"unknown window {name!r} (known: {', '.join(FIXED_WINDOWS)}, lastNHours, lastNDays)"


def _day_start(d: date, tz: ZoneInfo) -> datetime:
    """The first instant of local date ``d`` (a midnight inside a DST gap maps to the gap's end,
    a repeated midnight to its first occurrence)."""
    return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)


def _days(a: date, b: date, tz: ZoneInfo, name: str) -> Window:
    return Window(name, _day_start(a, tz), _day_start(b, tz))


def _month_start(d: date, delta: int) -> date:
    m = d.year * 12 + d.month - 1 + delta
    return date(m // 12, m % 12 + 1, 1)


def window(name: str, base: datetime, timezone: str) -> Window:
    """The window ``name`` relative to ``base`` (an aware instant) in IANA zone ``timezone``.

    Days, weeks (ISO, Monday first) and months are calendar units of local time, so a DST day
    spans 23 or 25 hours; hours are elapsed hours back from the start of the base's local hour.
    Raises ValueError for an unknown name."""
    problem = window_problem(name)
    if problem:
        raise ValueError(problem)
    if base.tzinfo is None:
        raise ValueError("base time must be timezone-aware")
    tz = ZoneInfo(timezone)
    local = base.astimezone(tz)
    today = local.date()
    m = _LAST_N.match(name)
    if name == "currentHour" or (m and m.group(2).startswith("Hour")):
        hour = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        if name == "currentHour":
            return Window(name, hour, hour + timedelta(hours=1))
        assert m is not None
        return Window(name, hour - timedelta(hours=int(m.group(1))), hour)
    if m:  # lastNDays: the N whole days before today
        return _days(today - timedelta(days=int(m.group(1))), today, tz, name)
    if name == "today":
        return _days(today, today + timedelta(days=1), tz, name)
    if name == "yesterday":
        return _days(today - timedelta(days=1), today, tz, name)
    monday = today - timedelta(days=today.weekday())
    if name == "thisWeek":
        return _days(monday, monday + timedelta(days=7), tz, name)
    if name == "lastWeek":
        return _days(monday - timedelta(days=7), monday, tz, name)
    if name.startswith("last") and name[4:] in _DAY_NAMES:
        d = monday - timedelta(days=7) + timedelta(days=_DAY_NAMES.index(name[4:]))
        return _days(d, d + timedelta(days=1), tz, name)
    first = today.replace(day=1)
    if name == "thisMonth":
        return _days(first, _month_start(first, 1), tz, name)
    prev = _month_start(first, -1)
    if name == "lastMonth":
        return _days(prev, first, tz, name)
    if name == "lastMonthBegin":
        return _days(prev, prev + timedelta(days=1), tz, name)
    # lastMonthEnd
    last = prev.replace(day=calendar.monthrange(prev.year, prev.month)[1])
    return _days(last, first, tz, name)


# -- the spec -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    workflow: str | int  # an int is a workflow id, a string its name
    task: str | None
    window: str


@dataclass(frozen=True)
class Group:
    relation: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Dependencies:
    relation: str
    groups: tuple[Group, ...]
    check_interval_s: float
    timeout_s: float | None


def _relation_problem(v: Any) -> str | None:
    if v is None or (isinstance(v, str) and v.upper() in RELATIONS):
        return None
    return "must be AND or OR"


def _positive(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v > 0


def validate(t: Mapping[str, Any]) -> list[FieldProblem]:
    """(field, problem) pairs for a DEPENDENT task's fields; the field is a path such as
    ``dependencies.groups[0].items[1].window``."""
    out: list[FieldProblem] = []
    ci = t.get("check_interval_s")
    if ci is not None and not (_positive(ci) and ci >= MIN_CHECK_INTERVAL_S):
        out.append(("check_interval_s", f"must be a number of seconds >= {MIN_CHECK_INTERVAL_S}"))
    to = t.get("dependence_timeout_s")
    if to is not None and not _positive(to):
        out.append(("dependence_timeout_s", "must be a positive number of seconds"))
    deps = t.get("dependencies")
    if deps is None:
        return [*out, ("dependencies", "is required")]
    if not isinstance(deps, dict):
        return [*out, ("dependencies", "must be an object {relation, groups}")]
    if (p := _relation_problem(deps.get("relation"))) is not None:
        out.append(("dependencies.relation", p))
    unknown = sorted(set(deps) - {"relation", "groups"})
    if unknown:
        out.append(("dependencies", f"unknown field(s) {', '.join(unknown)}"))
    groups = deps.get("groups")
    if not isinstance(groups, list) or not groups:
        return [*out, ("dependencies.groups", "must be a non-empty list of groups")]
    for gi, g in enumerate(groups):
        gp = f"dependencies.groups[{gi}]"
        if not isinstance(g, dict):
            out.append((gp, "must be an object {relation, items}"))
            continue
        if (p := _relation_problem(g.get("relation"))) is not None:
            out.append((f"{gp}.relation", p))
        unknown = sorted(set(g) - {"relation", "items"})
        if unknown:
            out.append((gp, f"unknown field(s) {', '.join(unknown)}"))
        items = g.get("items")
        if not isinstance(items, list) or not items:
            out.append((f"{gp}.items", "must be a non-empty list of items"))
            continue
        for ii, it in enumerate(items):
            out.extend(_item_problems(f"{gp}.items[{ii}]", it))
    return out


def _item_problems(ip: str, it: Any) -> list[FieldProblem]:
    if not isinstance(it, dict):
        return [(ip, "must be an object {workflow, task, window}")]
    out: list[FieldProblem] = []
    wf = it.get("workflow")
    if wf is None:
        out.append((f"{ip}.workflow", "is required"))
    elif not (
        (isinstance(wf, str) and wf.strip())
        or (isinstance(wf, int) and not isinstance(wf, bool) and wf > 0)
    ):
        out.append((f"{ip}.workflow", "must be a workflow name or a positive workflow id"))
    task = it.get("task")
    if task is not None and not (isinstance(task, str) and task.strip()):
        out.append((f"{ip}.task", "must be a non-empty task name"))
    if it.get("window") is None:
        out.append((f"{ip}.window", "is required"))
    elif (p := window_problem(it.get("window"))) is not None:
        out.append((f"{ip}.window", p))
    unknown = sorted(set(it) - {"workflow", "task", "window"})
    if unknown:
        out.append((ip, f"unknown field(s) {', '.join(unknown)}"))
    return out


def parse(t: Mapping[str, Any]) -> Dependencies:
    """The dependencies of a task whose fields ``validate`` accepted (ValueError otherwise)."""
    problems = validate(t)
    if problems:
        raise ValueError("; ".join(f"{f}: {p}" for f, p in problems))
    deps = t["dependencies"]
    groups = tuple(
        Group(
            str(g.get("relation") or "AND").upper(),
            tuple(
                Item(
                    it["workflow"].strip() if isinstance(it["workflow"], str) else it["workflow"],
                    it["task"].strip() if it.get("task") else None,
                    it["window"],
                )
                for it in g["items"]
            ),
        )
        for g in deps["groups"]
    )
    timeout = t.get("dependence_timeout_s")
    if timeout is None and _positive(t.get("timeout_s")):
        timeout = t["timeout_s"]
    return Dependencies(
        str(deps.get("relation") or "AND").upper(),
        groups,
        float(t.get("check_interval_s") or DEFAULT_CHECK_INTERVAL_S),
        float(timeout) if timeout is not None else None,
    )


# -- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """The upstream run an item resolved to (see the rule in the module docstring)."""

    instance_id: int
    workflow_id: int
    schedule_time: datetime | None
    start_time: datetime | None
    state: str
    end_time: datetime | None
    task_instance_id: int | None = None
    task_state: str | None = None


@dataclass(frozen=True)
class ItemResult:
    group: int
    index: int
    item: Item
    window: Window
    resolved: Resolved | None


@dataclass(frozen=True)
class Outcome:
    passed: bool
    results: tuple[ItemResult, ...]
    reason: str
    missing: str = ""  # the items that keep it from passing, described


def base_time(
    schedule_time: datetime | None, start_time: datetime | None, now: datetime
) -> datetime:
    """A run's base time: its schedule time, else its start time (else ``now``)."""
    return schedule_time or start_time or now


def _combine(relation: str, values: Sequence[bool]) -> bool:
    return all(values) if relation == "AND" else any(values)


def describe(r: ItemResult) -> str:
    what = f"workflow {r.item.workflow!r}" + (f" task {r.item.task!r}" if r.item.task else "")
    span = f"{r.window.name} [{r.window.start.isoformat()}, {r.window.end.isoformat()})"
    return f"{what} in {span}"


def evaluate(deps: Dependencies, results: Sequence[ItemResult]) -> Outcome:
    """AND/OR over the items' results (one per item, any order): groups from their items, the
    whole from the groups. The reason names what resolved, or what is still missing."""
    by_group: dict[int, list[ItemResult]] = {}
    for r in results:
        by_group.setdefault(r.group, []).append(r)
    verdicts = []
    for gi, g in enumerate(deps.groups):
        got = by_group.get(gi, [])
        verdicts.append(
            len(got) == len(g.items) and _combine(g.relation, [r.resolved is not None for r in got])
        )
    passed = _combine(deps.relation, verdicts)
    ordered = tuple(sorted(results, key=lambda r: (r.group, r.index)))
    if passed:
        found = [r for r in ordered if r.resolved is not None]
        reason = "dependencies met: " + "; ".join(
            f"{describe(r)} -> instance {r.resolved.instance_id}" for r in found if r.resolved
        )
    else:
        blocking = [r for r in ordered if r.resolved is None and not verdicts[r.group]]
        missing = "; ".join(describe(r) for r in blocking)
        return Outcome(passed, ordered, f"waiting for a successful run of {missing}", missing)
    return Outcome(passed, ordered, reason)


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat() if t is not None else None


def resolved_output(outcome: Outcome) -> list[dict[str, Any]]:
    """What the attempt's output records under ``__resolved``: one entry per item that resolved."""
    out = []
    for r in outcome.results:
        if r.resolved is None:
            continue
        x = r.resolved
        out.append(
            {
                "group": r.group,
                "item": r.index,
                "workflow": r.item.workflow,
                "workflow_id": x.workflow_id,
                "task": r.item.task,
                "window": r.window.name,
                "window_start": _iso(r.window.start),
                "window_end": _iso(r.window.end),
                "instance_id": x.instance_id,
                "schedule_time": _iso(x.schedule_time),
                "start_time": _iso(x.start_time),
                "end_time": _iso(x.end_time),
                "state": x.state,
                "task_instance_id": x.task_instance_id,
                "task_state": x.task_state,
            }
        )
    return out
