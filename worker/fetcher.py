"""The queue fetcher: claims keys in dispatch order across every queue this worker serves (its
groups, and this host's queue of host-pinned FANOUT sub-executions), each with one ZooKeeper
transaction, and releases (pipelined) or hands back leases.

A one-shot watch per queue marks its cached key list stale; a claim pass re-reads a stale list (at
most every REFRESH_MIN_S while the cache still has untried keys)."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from typing import Any

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from coord.queue import claim_transaction, committed, parse_key, put_back_transaction
from coord.zk import ZkClient
from core import metrics
from worker import WorkerLog

# A key we just claimed or failed to claim is not tried again for this long (the watch usually
# removes it sooner; a key blocked by an existing lease is retried after it).
RETRY_AFTER_S = 2.0
# A changed queue is read again at once when the cached list has nothing left to try, else at
# most this often: re-reading thousands of keys on every claim anybody makes was the worker's
# largest cost; a key pushed meanwhile waits this long at most.
REFRESH_MIN_S = 0.05
# The label of the host queue among the group names (a group name never contains ':').
HOST_LABEL_PREFIX = "host:"


def host_label(host: str) -> str:
    return HOST_LABEL_PREFIX + host


@dataclass(frozen=True)
class Claim:
    """A queue entry this worker now holds the lease of; ``epoch`` is the lease (fencing) token:
    the epoch of the worker's registration, from PostgreSQL, so unique per registration."""

    group: str  # the queue it came from: a group, or ``host_label(host)``
    key: str
    task_instance_id: int
    epoch: int


class QueueFetcher:
    """Keeps the newest children list of ``/queue/<group>`` for every group served (and of
    ``/host-queue/<host>`` when ``host`` is given), and claims."""

    def __init__(
        self,
        zk: ZkClient,
        groups: list[str],
        wake: threading.Event,
        worker_id: str,
        host: str | None = None,
    ) -> None:
        self.zk = zk
        self.groups = list(dict.fromkeys(groups))
        self._paths = {g: zk.paths.queue(g) for g in self.groups}
        if host:
            self._paths[host_label(host)] = zk.paths.host_queue(host)
            self.groups.append(host_label(host))
        self.worker_id = worker_id
        self.log = WorkerLog(__name__, self.worker_id)
        self._wake = wake
        # per group: the sorted key list as last read, when, and whether it changed since (set
        # by the watch: the one thing a kazoo callback does here, besides waking the loop)
        self._sorted: dict[str, list[str]] = {g: [] for g in self.groups}
        self._read_at: dict[str, float] = {}
        self._stale: dict[str, threading.Event] = {g: threading.Event() for g in self.groups}
        for ev in self._stale.values():
            ev.set()
        self._watchers = {g: partial(self._on_change, g) for g in self.groups}
        self._tried: dict[str, float] = {}
        self._uncertain: list[Claim] = []
        self._to_release: set[int] = set()
        self._to_unclaim: list[Claim] = []
        self._releasing: dict[int, Any] = {}
        self._closed = False

    def start(self) -> None:
        for group in self.groups:
            self.zk.client.ensure_path(self._paths[group])
        self._wake.set()  # the first claim pass reads every queue and arms its watch

    def close(self) -> None:
        """Ignore further watch callbacks (the client is about to be closed)."""
        self._closed = True

    def _on_change(self, group: str, _event: Any) -> None:
        # kazoo thread: set two events, nothing else (the watch is re-armed by the next read)
        if self._closed:
            return
        self._stale[group].set()
        self._wake.set()

    def pending(self) -> int:
        """Keys seen in the queues when last read (including ones being claimed right now)."""
        return sum(len(v) for v in self._sorted.values())

    def _refresh(self, now: float, timeout: float, force: bool = False) -> None:
        """Re-read the stale groups that need it (``force``: all), arming a one-shot watch with
        each read."""
        stale = [g for g in self.groups if self._stale[g].is_set()]
        for group in stale:
            fresh = now - self._read_at.get(group, -REFRESH_MIN_S) < REFRESH_MIN_S
            if fresh and not force and self._has_untried(group, now):
                continue  # claim from the cache now; read it again on a later pass
            self._stale[group].clear()  # a change during the read marks it again
            path = self._paths[group]
            try:
                try:
                    keys = self._read(path, group, timeout)
                except NoNodeError:  # a wiped ensemble: the queue comes back empty
                    self.zk.client.ensure_path(path)
                    keys = self._read(path, group, timeout)
            except (KazooException, KazooTimeoutError) as exc:
                self.log.warning("cannot read queue %s: %s", group, exc)
                self._stale[group].set()
                continue
            self._sorted[group] = sorted(keys)
            self._read_at[group] = now

    def _read(self, path: str, group: str, timeout: float) -> list[str]:
        result = self.zk.client.get_children_async(path, watch=self._watchers[group])
        return list(result.get(timeout=timeout))

    def _has_untried(self, group: str, now: float) -> bool:
        tried = self._tried
        return any(tried.get(k, 0.0) <= now for k in self._sorted[group])

    def _candidates(
        self, now: float, timeout: float, force: bool = False
    ) -> Iterator[tuple[str, str]]:
        """(key, group) in dispatch order over all groups: fixed-width keys sort as they should.
        Stale groups are read again first (see ``_refresh``); the merge is lazy."""
        self._refresh(now, timeout, force)
        if len(self._tried) > 1024:
            self._tried = {k: t for k, t in self._tried.items() if t > now}
        per_group = [zip(keys, repeat(g)) for g, keys in self._sorted.items()]
        return per_group[0] if len(per_group) == 1 else heapq.merge(*per_group)

    def claim(self, limit: int, lease_data: bytes, epoch: int, timeout: float) -> list[Claim]:
        """Claim up to ``limit`` keys in dispatch order, the transactions of a round pipelined
        (one round trip for the round). A lost race moves on to the next key; a ZooKeeper error
        ends the pass, and the keys whose answers it lost are checked by the next ``flush``."""
        out: list[Claim] = []
        now = time.monotonic()
        candidates = self._candidates(now, timeout)
        forced = False
        while len(out) < limit:
            batch: list[tuple[str, str, int]] = []
            for key, group in candidates:
                until = self._tried.get(key)
                if until is not None and until > now:
                    continue
                self._tried[key] = now + RETRY_AFTER_S
                try:
                    batch.append((group, key, parse_key(key).task_instance_id))
                except ValueError:
                    self.log.warning("malformed queue key %r in %s", key, group)
                    continue
                if len(batch) >= limit - len(out):
                    break
            if not batch:
                stale = any(ev.is_set() for ev in self._stale.values())
                if forced or not stale:
                    break
                forced = True  # the cache ran dry while a queue changed: read it now
                candidates = self._candidates(now, timeout, force=True)
                continue
            pending = [(g, k, t, self._claim_async(g, k, t, lease_data)) for g, k, t in batch]
            interrupted = False
            for group, key, ti_id, result in pending:
                try:
                    won = committed(result.get(timeout=timeout))
                except (KazooException, KazooTimeoutError) as exc:
                    self.log.warning("claim of task %d interrupted: %s", ti_id, exc)
                    self._uncertain.append(Claim(group, key, ti_id, epoch))
                    interrupted = True
                    continue
                if won:
                    out.append(Claim(group, key, ti_id, epoch))
                else:
                    self.log.debug("lost the race for task %d", ti_id)
                    metrics.CLAIM_CONFLICTS.inc()
            if interrupted:
                break
        return out

    def _claim_async(self, group: str, key: str, ti_id: int, lease_data: bytes) -> Any:
        # the claim transaction, sent without waiting: a round of claims costs one round trip
        txn = claim_transaction(
            self.zk.client, self.zk.paths, self._entry(group, key), ti_id, lease_data
        )
        return txn.commit_async()

    def _entry(self, group: str, key: str) -> str:
        if group.startswith(HOST_LABEL_PREFIX):
            return self.zk.paths.host_queue_entry(group[len(HOST_LABEL_PREFIX) :], key)
        return self.zk.paths.queue_entry(group, key)

    # leases: everything here belongs to this session and is forgotten with it

    def release_later(self, ti_id: int) -> None:
        """The attempt's final state is written (or it never started): drop its lease."""
        self._to_release.add(ti_id)

    def put_back_later(self, claim: Claim) -> None:
        """The attempt never started: put its key back on the queue, then drop the lease."""
        self._to_unclaim.append(claim)

    def flush(self, running: Collection[int], timeout: float, wait_s: float = 0.0) -> list[Claim]:
        """Send lease deletions (their answers are collected by a later flush, or within
        ``wait_s``), put keys back, and check claims a connection loss interrupted: returns those
        that did succeed and are not in ``running``. What fails stays for the next flush."""
        self._to_release |= self._settle(wait_s)
        client, paths = self.zk.client, self.zk.paths
        for ti_id in self._to_release:
            self._releasing[ti_id] = client.delete_async(paths.lease(ti_id))
        self._to_release = set()
        adopted: list[Claim] = []
        try:
            while self._to_unclaim:
                self._unclaim(self._to_unclaim[0], timeout)
                self._to_unclaim.pop(0)
            while self._uncertain:
                claim = self._uncertain[-1]
                stat = client.exists_async(paths.lease(claim.task_instance_id)).get(timeout=timeout)
                ours = stat is not None and stat.ephemeralOwner == self.zk.session_id
                if ours and claim.task_instance_id not in running:
                    self.log.info(
                        "task %d: an interrupted claim did succeed", claim.task_instance_id
                    )
                    adopted.append(claim)
                self._uncertain.pop()
        except (KazooException, KazooTimeoutError) as exc:
            self.log.warning("queue bookkeeping failed, will retry: %s", exc)
        return adopted

    def _settle(self, wait_s: float) -> set[int]:
        """Collect answers to lease deletions; the ids whose deletion failed, to be retried."""
        deadline = time.monotonic() + wait_s
        failed: set[int] = set()
        for ti_id, result in list(self._releasing.items()):
            left = deadline - time.monotonic()
            if not result.ready() and (left <= 0 or not result.wait(left)):
                if wait_s > 0:
                    failed.add(ti_id)
                    del self._releasing[ti_id]
                continue
            del self._releasing[ti_id]
            try:
                result.get(block=False)
            except NoNodeError:
                pass
            except (KazooException, KazooTimeoutError) as exc:
                self.log.warning("task %d: lease release failed: %s", ti_id, exc)
                failed.add(ti_id)
        return failed

    def _unclaim(self, claim: Claim, timeout: float) -> None:
        client, paths = self.zk.client, self.zk.paths
        entry = self._entry(claim.group, claim.key)
        txn = put_back_transaction(client, paths, entry, claim.task_instance_id)
        if not committed(txn.commit_async().get(timeout=timeout)):
            try:  # the entry was re-pushed meanwhile: just drop our lease
                client.delete_async(paths.lease(claim.task_instance_id)).get(timeout=timeout)
            except NoNodeError:
                pass
        self.log.info("task %d put back on queue %s", claim.task_instance_id, claim.group)
