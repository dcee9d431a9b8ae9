"""A master's graceful stop (SIGTERM): its instances go to the live masters at once instead of a
session timeout later. Ownership is released in PostgreSQL (the epoch fenced, so nothing this
master could still write changes them), then its cron candidacy and registration are deleted,
which fires every live master's membership watch; the first to take the failover lock adopts."""

from __future__ import annotations

import logging
import time

from kazoo.exceptions import NoNodeError

from coord.zk import ZkClient
from db import instances as q_instances
from db.engine import SessionFactory
from master.cron import CronLeader

log = logging.getLogger(__name__)


def hand_over(
    sf: SessionFactory, zk: ZkClient, cron: CronLeader, master_id: str, epoch: int
) -> list[int]:
    """Release what ``(master_id, epoch)`` owns and leave the cluster; the ids released. Called
    once the loop has stopped (nothing of ours runs any more). Without PostgreSQL the instances
    are left to the usual failover: they are adopted once the registration is gone."""
    actor = f"master {master_id}@{epoch}"
    if epoch <= 0:
        log.info("%s: not registered; nothing to hand over", actor)
        return []
    started = time.monotonic()
    released: list[int] = []
    try:
        with sf.begin() as s:
            released = q_instances.release_owned(s, master_id, epoch)
    except Exception as exc:  # PostgreSQL away: the failover adopts them after we are gone
        log.error("%s: cannot release ownership (%s); left to failover", actor, exc)
    cron.resign()  # another master leads cron at once
    try:
        zk.client.delete(zk.paths.master(master_id))  # wakes the live masters: they adopt
    except NoNodeError:
        pass
    except Exception as exc:  # the session's end removes it anyway
        log.warning("%s: cannot delete the registration (%s)", actor, exc)
    log.info(
        "%s: handed over %d instance(s) in %.3fs: %s",
        actor,
        len(released),
        time.monotonic() - started,
        released[:20],
    )
    return released
