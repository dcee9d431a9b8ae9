"""``dagkeeper purge --older-than 30d [--workflow NAME] [--dry-run] [--batch N] [--json]``: delete
finished instances that ended before the cut-off, with their attempts, log chunks, alerts,
commands and sub-workflow children, in short batches (``db.purge``); workers delete the task log
files of purged instances themselves (``worker.prune``)."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta

from core.settings import Settings

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(value: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w``; ValueError naming --older-than otherwise."""
    m = _AGE.match(value)
    if not m:
        raise ValueError(f"--older-than: {value!r} is not an age like 30d, 12h, 90m, 3600s or 2w")
    age = timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    if age <= timedelta(0):
        raise ValueError("--older-than: the age must be more than 0")
    return age


def main(
    settings: Settings,
    older_than: str,
    workflow: str | None = None,
    dry_run: bool = False,
    batch: int = 2000,
    as_json: bool = False,
) -> int:
    """0 once done (or counted, with ``dry_run``), 2 on a bad argument or no PostgreSQL."""
    from db import purge
    from db.engine import make_engine, make_session_factory

    try:
        cutoff = datetime.now(UTC) - parse_age(older_than)
    except ValueError as exc:
        print(f"dagkeeper purge: {exc}", file=sys.stderr)
        return 2
    if batch < purge.MIN_BATCH:
        print(f"dagkeeper purge: --batch must be at least {purge.MIN_BATCH}", file=sys.stderr)
        return 2
    engine = make_engine(settings.db, pool_size=1)
    try:
        report = purge.run(
            make_session_factory(engine), cutoff, workflow=workflow, dry_run=dry_run, batch=batch
        )
    except Exception as exc:  # an operator command: the reason, never a stack trace
        print(f"dagkeeper purge: failed: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    counts = report.counts.as_dict()
    if as_json:
        doc = {
            "cutoff": cutoff.isoformat(),
            "workflow": workflow,
            "dry_run": dry_run,
            **counts,
            "batches": report.batches,
            "longest_batch_s": round(report.longest_batch_s, 4),
            "seconds": round(report.seconds, 3),
        }
        print(json.dumps(doc, indent=2))
        return 0
    what = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())
    scope = f" of workflow {workflow!r}" if workflow else ""
    verb = "would delete" if dry_run else "deleted"
    print(f"dagkeeper purge: {verb} {what}{scope} (ended before {cutoff:%Y-%m-%d %H:%M:%S} UTC)")
    print(
        f"dagkeeper purge: {report.batches} batch(es) in {report.seconds:.1f}s, the longest"
        f" transaction {report.longest_batch_s:.3f}s"
    )
    return 0
