"""The backfill reconciler, run by the cron leader on its tick: for each running backfill, submit
its next dates while fewer than its limit (1 when SERIAL) of its instances are unfinished."""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.states import BackfillState
from db import backfill as q_backfill
from db.engine import SessionFactory

log = logging.getLogger(__name__)


def reconcile(sf: SessionFactory, actor: str, still_leader: Callable[[], bool]) -> list[int]:
    """One pass over the running backfills; the ids of the instances submitted."""
    with sf.begin() as s:
        ids = q_backfill.running_ids(s)
    submitted: list[int] = []
    for bid in ids:
        with sf.begin() as s:
            bf = q_backfill.lock(s, bid)
            if bf is None or bf.state != BackfillState.RUNNING:
                continue
            if not still_leader():
                log.warning("%s: lost leadership during the backfill pass", actor)
                break
            new = q_backfill.submit_next(s, bf)
            state, workflow_id = bf.state, bf.workflow_id
        if new:
            submitted.extend(new)
            log.info(
                "%s: backfill %d (workflow %d): submitted instances %s",
                actor,
                bid,
                workflow_id,
                new,
            )
        elif state != BackfillState.RUNNING:
            log.info("%s: backfill %d (workflow %d) is %s", actor, bid, workflow_id, state)
    return submitted
