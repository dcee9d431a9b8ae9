"""The worker's side of retention: task log files and working directories of instances that are
no longer in PostgreSQL (purged by ``dagkeeper purge`` or the cron leader's retention) are
deleted every ``worker.log_prune_interval_s`` by a thread of the worker that wrote them. Layout:
``<log_dir>/<workflow id>/<instance id>/<task instance id>.log``, ``<exec_dir>/<instance id>/``."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, text

from core.settings import Settings

log = logging.getLogger(__name__)

MIN_AGE_S = 3600.0  # a directory written to this recently is never pruned
_EXISTING = text("SELECT id FROM workflow_instance WHERE id = ANY(:ids)")
_CHUNK = 1000


def instance_dirs(log_root: Path, exec_root: Path) -> dict[int, list[Path]]:
    """Instance id -> its directories under the log and exec roots."""
    out: dict[int, list[Path]] = {}
    parents = [p for p in log_root.iterdir() if p.is_dir()] if log_root.is_dir() else []
    if exec_root.is_dir():
        parents.append(exec_root)
    for parent in parents:
        for d in parent.iterdir():
            if d.is_dir() and d.name.isdigit():
                out.setdefault(int(d.name), []).append(d)
    return out


def to_prune(
    dirs: dict[int, list[Path]], existing: set[int], now: float, min_age_s: float
) -> list[Path]:
    """The directories of instances not in ``existing`` that nothing wrote to for a while."""
    out = []
    for iid, paths in sorted(dirs.items()):
        if iid in existing:
            continue
        for p in paths:
            try:
                if now - p.stat().st_mtime >= min_age_s:
                    out.append(p)
            except FileNotFoundError:
                continue
    return out


def prune_once(
    engine: Engine, settings: Settings, now: float | None = None, min_age_s: float = MIN_AGE_S
) -> list[Path]:
    """One pass; the directories deleted."""
    dirs = instance_dirs(settings.log_path, settings.exec_path)
    ids = sorted(dirs)
    existing: set[int] = set()
    with engine.connect() as conn:
        for i in range(0, len(ids), _CHUNK):
            existing.update(
                int(r) for r in conn.execute(_EXISTING, {"ids": ids[i : i + _CHUNK]}).scalars()
            )
    gone = to_prune(dirs, existing, time.time() if now is None else now, min_age_s)
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    if gone:
        log.info("pruned the task files of %d purged instance(s): %s", len(gone), gone[:5])
    return gone


def start(engine: Engine, settings: Settings, stop: threading.Event, actor: str) -> None:
    """The pruning thread (none with ``worker.log_prune_interval_s`` = 0)."""
    every = settings.worker.log_prune_interval_s
    if every <= 0:
        return

    def loop() -> None:
        while not stop.wait(every):
            try:
                prune_once(engine, settings)
            except Exception as exc:  # PostgreSQL away, a file system error: next interval
                log.warning("%s: pruning task files failed: %s", actor, exc)

    threading.Thread(target=loop, name="log-prune", daemon=True).start()
