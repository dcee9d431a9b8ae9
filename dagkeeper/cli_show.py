"""What the client CLI prints: tables (rich) or JSON for scripts, and the live views of a run
(its task table with a progress bar) and of a backfill; without a terminal both print one line
per change instead, so logs and CI show the same progress."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from dagkeeper.runs import Run
from dagkeeper.states import TASK_SUCCESSFUL, TASK_TERMINAL, BackfillState, WorkflowState

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
STYLE = {
    WorkflowState.SUCCESS: "green",
    WorkflowState.FAILURE: "red",
    WorkflowState.STOP: "yellow",
    WorkflowState.RUNNING: "cyan",
}


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    headers: Mapping[str, str] | None = None,
) -> None:
    """A table of ``columns`` (keys of the rows), headed by ``headers[key]`` or the key."""
    t = Table(show_edge=False, pad_edge=False, header_style="bold")
    for c in columns:
        t.add_column((headers or {}).get(c, c), overflow="fold")
    for r in rows:
        t.add_row(*(cell(r.get(c)) for c in columns))
    out.print(t)


def cell(v: Any) -> Text:
    if v is None:
        return Text("-", style="dim")
    if isinstance(v, list | tuple):
        return Text(", ".join(str(x) for x in v))
    if isinstance(v, dict):
        return Text(json.dumps(v))
    s = str(v)
    if len(s) >= 25 and s[4] == "-" and s[10] == "T":  # an API time: seconds are enough
        try:
            s = datetime.fromisoformat(s).strftime("%Y-%m-%d %H:%M:%S%z")
        except ValueError:
            pass
    return Text(s, style=STYLE.get(s, ""))  # type: ignore[call-overload]


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def duration(start: str | None, end: str | None) -> str | None:
    a = _when(start)
    if a is None:
        return None
    b = _when(end) or datetime.now(a.tzinfo)
    return f"{(b - a).total_seconds():.1f}s"


def latest_by_name(tasks: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The latest attempt of each DAG task (FANOUT sub-executions are shown by their node)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for t in sorted(tasks, key=lambda t: int(t["id"])):
        if t.get("parent_id") is None:
            latest[str(t["name"])] = t
    return latest


def task_rows(tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "task": name,
            "id": t["id"],
            "state": t["state"],
            "attempt": t.get("attempt"),
            "host": t.get("host"),
            "time": duration(t.get("start_time"), t.get("end_time")),
            "note": t.get("reason") or t.get("waiting"),
        }
        for name, t in latest_by_name(tasks).items()
    ]


TASK_COLUMNS = ("task", "id", "state", "attempt", "host", "time", "note")


def show_instance(inst: Mapping[str, Any]) -> None:
    head = (
        f"instance {inst['id']}  workflow {inst.get('workflow_name')} (id {inst['workflow_id']},"
        f" version {inst['version']})  [{STYLE.get(inst['state'], '')}]{inst['state']}[/]"
    )
    out.print(head)
    times = f"submitted {inst.get('submit_time')}  started {inst.get('start_time') or '-'}"
    out.print(f"{times}  ended {inst.get('end_time') or '-'}")
    if inst.get("reason"):
        out.print(f"reason: {inst['reason']}")
    table(task_rows(inst.get("tasks") or []), TASK_COLUMNS)


class RunView:
    """Follows a run: a live table with a progress bar on a terminal, else a line per change."""

    def __init__(self, run: Run, total: int, console: Console | None = None) -> None:
        self.run, self.total, self.console = run, total, console or out
        self.seen: dict[int, str] = {}
        self.done: set[str] = set()
        self.started = time.monotonic()

    def counts(self) -> tuple[int, int]:
        latest = latest_by_name(self.run.tasks)
        done = sum(1 for t in latest.values() if t["state"] in TASK_TERMINAL)
        return done, max(self.total, len(latest))

    def render(self) -> Group:
        t = Table(show_edge=False, pad_edge=False, header_style="bold")
        for c in TASK_COLUMNS:
            t.add_column(c)
        for r in task_rows(self.run.tasks):
            t.add_row(*(cell(r[c]) for c in TASK_COLUMNS))
        done, total = self.counts()
        bar = ProgressBar(total=max(total, 1), completed=done, width=40)
        state = self.run.state
        line = Text.assemble(
            (f"run {self.run.id} ", "bold"),
            (state, STYLE.get(state, "")),  # type: ignore[call-overload]
            f"  {done}/{total} tasks  {time.monotonic() - self.started:.1f}s  ",
        )
        return Group(t, Group(line, bar))

    def lines(self, run: Run) -> None:
        """One line per attempt state not printed yet, counting finished tasks as they come."""
        total = max(self.total, len(latest_by_name(run.tasks)))
        changed = [t for t in run.tasks if self.seen.get(int(t["id"])) != t["state"]]
        for t in sorted(changed, key=lambda t: (t.get("end_time") or "~", int(t["id"]))):
            tid, state = int(t["id"]), str(t["state"])
            self.seen[tid] = state
            if state in TASK_TERMINAL and t.get("parent_id") is None:
                self.done.add(str(t["name"]))
            where = f" on {t['host']}" if t.get("host") else ""
            why = f" ({t['reason']})" if t.get("reason") and state not in TASK_SUCCESSFUL else ""
            self.console.print(f"[{len(self.done)}/{total}] {t['name']}: {state}{where}{why}")

    def follow(self, timeout: float | None, poll_s: float = 0.5) -> Run:
        if not self.console.is_terminal:
            return self.run.wait(timeout=timeout, poll_s=poll_s, on_update=self.lines)
        with Live(self.render(), console=self.console, refresh_per_second=4) as live:
            self.run.wait(
                timeout=timeout, poll_s=poll_s, on_update=lambda r: live.update(self.render())
            )
        return self.run


def follow_backfill(
    status: Any, backfill_id: int, timeout: float | None, poll_s: float = 1.0
) -> Mapping[str, Any]:
    """Poll ``status(backfill_id)`` until the backfill is not RUNNING; show its progress."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last: tuple[int, int] | None = None
    live = Live(console=out, refresh_per_second=4) if out.is_terminal else None
    if live is not None:
        live.start()
    try:
        while True:
            b = status(backfill_id)
            total, fin, act = int(b["total"]), int(b["finished"]), int(b["active"])
            failed = sum(1 for r in b["runs"] if r.get("state") and r["state"] in BAD)
            text = f"backfill {backfill_id}: {fin}/{total} dates finished, {act} running"
            text += f", {failed} failed" if failed else ""
            if live is not None:
                live.update(
                    Group(Text(text), ProgressBar(total=max(total, 1), completed=fin, width=40))
                )
            elif last != (fin, act):
                out.print(text)
            last = (fin, act)
            if b["state"] != BackfillState.RUNNING:
                return dict(b)
            if deadline is not None and time.monotonic() >= deadline:
                return dict(b)
            time.sleep(poll_s)
    finally:
        if live is not None:
            live.stop()


BAD = frozenset({WorkflowState.FAILURE, WorkflowState.STOP})
