"""Retention: finished instances older than a cut-off go with their attempts, log chunks, alerts,
commands and sub-workflow children, in bounded batches. Each batch is one short transaction: it
takes its instances FOR UPDATE SKIP LOCKED (a rerun racing the purge either wins or finds the
row gone), never waits on a lock for more than a second, and holds about ``batch`` rows."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.states import WORKFLOW_TERMINAL, BackfillState, values
from db.engine import SessionFactory

log = logging.getLogger(__name__)

LOCK_TIMEOUT = "1s"  # a purge statement gives up (and the batch is tried again) after this
TARGET_BATCH_S = 0.25  # the batch size adapts so that one transaction takes about this long
MIN_BATCH = 20


@dataclass
class PurgeCounts:
    instances: int = 0
    attempts: int = 0
    log_chunks: int = 0
    alerts: int = 0
    commands: int = 0

    def add(self, other: PurgeCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class PurgeReport:
    cutoff: datetime
    workflow: str | None
    dry_run: bool
    counts: PurgeCounts = field(default_factory=PurgeCounts)
    batches: int = 0
    lock_waits: int = 0  # batches given up on a lock (tried again)
    longest_batch_s: float = 0.0  # the longest transaction: no purge lock was held longer
    seconds: float = 0.0
    stopped: str | None = None  # why it ended early (leadership lost), else None


_ARGS: dict[str, Any] = {
    "terminal": values(WORKFLOW_TERMINAL),
    "bf_running": BackfillState.RUNNING.value,
}
# top-level finished instances past the cut-off, oldest first from the keyset, with their
# attempt counts; kept: those a running backfill still counts and those with a live child
_PICK = (
    "SELECT wi.id, wi.end_time, (SELECT count(*) FROM task_instance t"
    " WHERE t.workflow_instance_id = wi.id) FROM workflow_instance wi"
    " WHERE wi.end_time < :cutoff AND wi.state = ANY(:terminal)"
    " AND wi.parent_task_instance_id IS NULL{keyset}{workflow}"
    " AND NOT EXISTS (SELECT 1 FROM backfill_run r JOIN backfill b ON b.id = r.backfill_id"
    " WHERE r.instance_id = wi.id AND b.state = :bf_running)"
    " AND NOT EXISTS (SELECT 1 FROM task_instance t JOIN workflow_instance c"
    " ON c.parent_task_instance_id = t.id WHERE t.workflow_instance_id = wi.id"
    " AND c.state <> ALL(:terminal))"
    " ORDER BY wi.end_time, wi.id LIMIT :n FOR UPDATE OF wi SKIP LOCKED"
)
_KEYSET = " AND (wi.end_time, wi.id) > (:after_t, :after_id)"
_WORKFLOW = " AND wi.workflow_id IN (SELECT id FROM workflow_definition WHERE name = :workflow)"
# the instances and every sub-workflow instance below them
_TREE = (
    "WITH RECURSIVE tree(id) AS (SELECT unnest(CAST(:ids AS bigint[])) UNION"
    " SELECT c.id FROM workflow_instance c JOIN task_instance t"
    " ON t.id = c.parent_task_instance_id JOIN tree ON t.workflow_instance_id = tree.id)"
    " SELECT id FROM tree"
)
# (what, FROM/WHERE over the instances :ids) in deletion order: children rows first
_PARTS = (
    (
        "log_chunks",
        "task_log_chunk c USING task_instance t WHERE c.task_instance_id = t.id"
        " AND t.workflow_instance_id = ANY(:ids)",
    ),
    ("alerts", "alert WHERE workflow_instance_id = ANY(:ids)"),
    ("commands", "command WHERE instance_id = ANY(:ids)"),
    ("attempts", "task_instance WHERE workflow_instance_id = ANY(:ids)"),
    ("instances", "workflow_instance WHERE id = ANY(:ids)"),
)


def pick(
    s: Session,
    cutoff: datetime,
    workflow: str | None,
    after: tuple[datetime, int] | None,
    batch: int,
) -> tuple[list[int], tuple[datetime, int] | None]:
    """Lock the next instances to purge: as many as fit ``batch`` rows (instances and their
    attempts; at least one). Returns their ids and the keyset after them (None: no more)."""
    sql = _PICK.format(keyset=_KEYSET if after else "", workflow=_WORKFLOW if workflow else "")
    args = {**_ARGS, "cutoff": cutoff, "n": batch, "workflow": workflow}
    if after:
        args.update(after_t=after[0], after_id=after[1])
    rows = s.execute(text(sql), args).all()
    ids: list[int] = []
    rows_in, last = 0, None
    for iid, end_time, attempts in rows:
        if ids and rows_in + 1 + attempts > batch:
            break
        ids.append(int(iid))
        rows_in += 1 + int(attempts)
        last = (end_time, int(iid))
    return ids, (last if rows else None)


def tree(s: Session, ids: list[int]) -> list[int]:
    """``ids`` with every sub-workflow instance below them."""
    return sorted(int(r) for r in s.execute(text(_TREE), {"ids": ids}).scalars())


def count(s: Session, ids: list[int]) -> PurgeCounts:
    out = PurgeCounts()
    for what, where in _PARTS:
        n = s.execute(text(f"SELECT count(*) FROM {where.replace(' USING ', ', ')}"), {"ids": ids})
        setattr(out, what, int(n.scalar_one()))
    return out


def delete(s: Session, ids: list[int]) -> PurgeCounts:
    out = PurgeCounts()
    for what, where in _PARTS:
        res = s.execute(text(f"DELETE FROM {where}"), {"ids": ids})
        setattr(out, what, int(res.rowcount))  # type: ignore[attr-defined]
    return out


def _lock_wait(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "pgcode", None) == "55P03"  # lock_not_available


def run(
    sf: SessionFactory,
    cutoff: datetime,
    *,
    workflow: str | None = None,
    dry_run: bool = False,
    batch: int = 2000,
    keep_going: Callable[[], bool] = lambda: True,
    on_batch: Callable[[PurgeCounts, float], None] | None = None,
    actor: str = "purge",
) -> PurgeReport:
    """Purge (or, ``dry_run``, count) what ended before ``cutoff``; ``keep_going`` is asked
    before each batch (the cron leader stops when it loses leadership)."""
    report = PurgeReport(cutoff, workflow, dry_run)
    started = time.monotonic()
    size, after, found = batch, None, False  # found: this pass (keyset walk) took something
    while True:
        if not keep_going():
            report.stopped = "asked to stop"
            break
        t0 = time.monotonic()
        try:
            with sf.begin() as s:
                s.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                ids, nxt = pick(s, cutoff, workflow, after, size)
                all_ids = tree(s, ids) if ids else []
                got = (count if dry_run else delete)(s, all_ids) if ids else PurgeCounts()
        except DBAPIError as exc:
            if not _lock_wait(exc):
                raise
            report.lock_waits += 1
            size = max(MIN_BATCH, size // 2)
            log.warning(
                "%s: a lock was busy for %s; batch tried again (%d rows)", actor, LOCK_TIMEOUT, size
            )
            continue
        if not ids:
            # the end of a pass; rows someone had locked were skipped (SKIP LOCKED): a purge
            # walks again from the start until a pass finds nothing (a dry run counts once)
            if dry_run or not found:
                break
            after, found = None, False
            continue
        took = time.monotonic() - t0
        after, found = nxt, True
        report.batches += 1
        report.counts.add(got)
        report.longest_batch_s = max(report.longest_batch_s, took)
        if on_batch is not None:
            on_batch(got, took)
        # aim at TARGET_BATCH_S per transaction: halve after a slow one, grow back after fast
        if took > 2 * TARGET_BATCH_S:
            size = max(MIN_BATCH, size // 2)
        elif took < TARGET_BATCH_S / 2:
            size = min(batch, size * 2)
    report.seconds = time.monotonic() - started
    log.info(
        "%s: %s %s before %s%s in %d batches (%.1fs, longest %.3fs)",
        actor,
        "would purge" if dry_run else "purged",
        report.counts.as_dict(),
        cutoff.isoformat(),
        f" of workflow {workflow}" if workflow else "",
        report.batches,
        report.seconds,
        report.longest_batch_s,
    )
    return report
