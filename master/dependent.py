"""The DEPENDENT driver: checks at once, then again every ``check_interval_s`` on the runner's
timers (no thread held), succeeds recording what it resolved to (output ``__resolved``), and
fails after ``dependence_timeout_s`` counted from the attempt's start (a failover keeps it)."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from core import dependent as dep
from core.states import TaskState
from db import dependent as q_dep
from db.attempts import AttemptRow
from master import logical

log = logging.getLogger(__name__)


def next_check(started: datetime, interval_s: float, now: datetime) -> datetime:
    """The first check time after ``now`` on the grid started + k * interval (stable however
    often the attempt is polled for other reasons)."""
    k = math.floor((now - started).total_seconds() / interval_s) + 1
    return started + timedelta(seconds=max(k, 1) * interval_s)


class DependentDriver:
    """Resolves the task's dependency items against PostgreSQL on each check."""

    def start(
        self, ctx: logical.LogicalContext, s: Session, attempt_id: int, now: datetime
    ) -> logical.Verdict:
        return self._check(ctx, s, attempt_id, now)

    def poll(
        self, ctx: logical.LogicalContext, s: Session, attempt: AttemptRow, now: datetime
    ) -> logical.Verdict:
        return self._check(ctx, s, attempt.id, now)

    def cancel(
        self,
        ctx: logical.LogicalContext,
        s: Session,
        attempt: AttemptRow,
        target: TaskState,
        now: datetime,
    ) -> logical.Verdict:
        what = "paused" if target == TaskState.PAUSE else "stopped"
        return logical.Verdict(target, reason=f"{what} while waiting for its dependencies")

    def _check(
        self, ctx: logical.LogicalContext, s: Session, attempt_id: int, now: datetime
    ) -> logical.Verdict:
        actor = (
            f"master {ctx.master_id}@{ctx.epoch}: instance {ctx.instance.id}"
            f" task {ctx.task.name} ({attempt_id})"
        )
        try:
            deps = dep.parse(ctx.task.model_dump())
        except ValueError as exc:  # the spec was validated on write; an old version may differ
            return logical.Verdict(TaskState.FAILURE, reason=f"invalid DEPENDENT fields: {exc}")
        base = dep.base_time(ctx.instance.schedule_time, ctx.instance.start_time, now)
        results: list[dep.ItemResult] = []
        for gi, g in enumerate(deps.groups):
            for ii, item in enumerate(g.items):
                w = dep.window(item.window, base, ctx.spec.timezone)
                ref = q_dep.find_workflow(s, item.workflow)
                if ref is None:
                    kind = "id" if isinstance(item.workflow, int) else "named"
                    why = (
                        f"dependencies.groups[{gi}].items[{ii}]: no workflow {kind}"
                        f" {item.workflow!r}"
                    )
                    log.warning("%s: %s", actor, why)
                    return logical.Verdict(TaskState.FAILURE, reason=why)
                found = q_dep.find_run(s, ref.id, item.task, w.start, w.end)
                results.append(dep.ItemResult(gi, ii, item, w, found))
        outcome = dep.evaluate(deps, results)
        if outcome.passed:
            log.info("%s: %s", actor, outcome.reason)
            return logical.Verdict(
                TaskState.SUCCESS,
                output={dep.RESOLVED_KEY: dep.resolved_output(outcome)},
                reason=outcome.reason,
            )
        started = q_dep.attempt_start_time(s, attempt_id) or now
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        if deps.timeout_s is not None:
            deadline = started + timedelta(seconds=deps.timeout_s)
            if now >= deadline:
                why = (
                    f"dependencies not met within {deps.timeout_s:g} s (dependence timeout):"
                    f" found no successful run of {outcome.missing}"
                )
                log.warning("%s: %s", actor, why)
                return logical.Verdict(TaskState.FAILURE, reason=why)
        wake = next_check(started, deps.check_interval_s, now)
        if deps.timeout_s is not None:
            wake = min(wake, started + timedelta(seconds=deps.timeout_s))
        if q_dep.note_waiting(s, attempt_id, outcome.reason):
            log.info("%s: %s", actor, outcome.reason)
        log.debug("%s: next check %s", actor, wake.isoformat())
        return logical.Verdict(None, reason=outcome.reason, wake_at=wake)


DRIVER = DependentDriver()
