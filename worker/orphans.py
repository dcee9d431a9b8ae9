"""The worker's start-up sweep: process groups recorded in PostgreSQL for this host whose attempt
no live worker holds any more (their worker died and its guardian could not act) are killed, but
only a group that still runs a process carrying the attempt's marker (a reused pgid is spared)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Iterable

from kazoo.exceptions import NoNodeError
from sqlalchemy import Engine

from coord.zk import ZkClient
from db.attempts_worker import RecordedGroup, recorded_groups
from worker.guardian import kill_groups, ours, process_groups


def orphans(
    rows: Iterable[RecordedGroup], live: Collection[tuple[str, int]], held: Collection[int]
) -> list[RecordedGroup]:
    """Pure: the recorded groups whose attempt neither this worker (``held``) nor a live worker
    registration (``live``: (worker id, epoch), the attempt's lease token being that epoch)
    holds."""
    return [
        r
        for r in rows
        if r.task_instance_id not in held
        and (
            r.worker_id is None or r.lease_token is None or (r.worker_id, r.lease_token) not in live
        )
    ]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_registrations(zk: ZkClient, host: str) -> set[tuple[str, int]]:
    """(worker id, epoch) of every registered worker, except those on ``host`` whose process is
    dead (a worker killed a moment ago keeps its znode until its session expires)."""
    out: set[tuple[str, int]] = set()
    root = zk.paths.workers_root()
    for group in zk.children(root):
        for worker_id in zk.children(f"{root}/{group}"):
            try:
                raw, stat = zk.client.get(f"{root}/{group}/{worker_id}")
            except NoNodeError:
                continue
            try:
                data = json.loads(raw.decode() or "{}")
            except ValueError:
                data = {}
            if not isinstance(data, dict):
                data = {}
            pid = data.get("pid")
            if data.get("host") == host and isinstance(pid, int) and not _pid_alive(pid):
                continue
            out.add((worker_id, int(data.get("epoch") or stat.czxid)))
    return out


def sweep(
    engine: Engine,
    zk: ZkClient,
    host: str,
    held: Collection[int],
    grace_s: float,
    log: logging.LoggerAdapter | logging.Logger,  # type: ignore[type-arg]
) -> list[int]:
    """Kill the orphaned task process groups of ``host``; returns the pgids killed. Rows are
    read before registrations: a worker whose attempt appears in the rows registered earlier."""
    with engine.connect() as conn:
        rows = recorded_groups(conn, host)
    if not rows:
        return []
    candidates = orphans(rows, live_registrations(zk, host), held)
    if not candidates:
        return []
    table = process_groups()
    pgids = ours({r.pgid: r.task_instance_id for r in candidates}, table)
    for r in candidates:
        if r.pgid in pgids:
            log.warning(
                "task %d (%s, worker %s epoch %s): its process group %d outlived its worker;"
                " killing it",
                r.task_instance_id,
                r.state,
                r.worker_id,
                r.lease_token,
                r.pgid,
            )
    if pgids:
        kill_groups(pgids, grace_s)
    return pgids
