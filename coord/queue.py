"""The ZooKeeper priority queue: fixed-width keys whose string order is dispatch order, batched
pushes in transactions (bounded by a high-water mark that holds across masters), and the one claim
transaction (delete entry + create ephemeral lease) with its undo."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from core.zk_paths import ZkPaths

ID_WIDTH = 19  # a PostgreSQL bigint has at most 19 digits
TXN_BATCH = 500  # operations per ZooKeeper transaction (well under jute.maxbuffer)
# A bounded push gives up after this many lost races with other masters (it is retried later).
BOUNDED_PUSH_TRIES = 16


@dataclass(frozen=True, order=True)
class QueueKey:
    """``procPri_procId_taskPri_taskId``; priority 0 = HIGHEST ... 4 = LOWEST."""

    workflow_priority: int
    workflow_instance_id: int
    task_priority: int
    task_instance_id: int

    def __str__(self) -> str:
        return format_key(
            self.workflow_priority,
            self.workflow_instance_id,
            self.task_priority,
            self.task_instance_id,
        )


def format_key(proc_pri: int, proc_id: int, task_pri: int, task_id: int) -> str:
    for label, pri in (("workflow priority", proc_pri), ("task priority", task_pri)):
        if not 0 <= pri <= 9:
            raise ValueError(f"{label} must be 0..9, got {pri}")
    for label, ident in (("workflow instance id", proc_id), ("task instance id", task_id)):
        if not 0 <= ident < 10**ID_WIDTH:
            raise ValueError(f"{label} out of range: {ident}")
    return f"{proc_pri}_{proc_id:0{ID_WIDTH}d}_{task_pri}_{task_id:0{ID_WIDTH}d}"


def parse_key(key: str) -> QueueKey:
    parts = key.split("_")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a queue key: {key!r}")
    return QueueKey(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]))


@dataclass(frozen=True)
class QueueEntry:
    group: str
    key: QueueKey


def claim_transaction(
    client: KazooClient, paths: ZkPaths, entry: str, task_instance_id: int, lease_data: bytes
) -> TransactionRequest:
    """The claim of queue entry ``entry`` (its znode path): delete it and create the attempt's
    ephemeral lease ``/leases/<id>`` in one transaction, so exactly one claimant can win (a loser
    finds the entry gone or the lease there). The caller commits it, ``commit_async`` to send a
    round of claims in one round trip; ``committed`` tells the winner."""
    txn = client.transaction()
    txn.delete(entry)
    txn.create(paths.lease(task_instance_id), lease_data, ephemeral=True)
    return txn


def put_back_transaction(
    client: KazooClient, paths: ZkPaths, entry: str, task_instance_id: int
) -> TransactionRequest:
    """A claim undone (the attempt never started): the entry again and our lease gone."""
    txn = client.transaction()
    txn.create(entry, b"")
    txn.delete(paths.lease(task_instance_id))
    return txn


def committed(results: Iterable[object]) -> bool:
    """A transaction's results hold no error (kazoo returns the failed operations' errors)."""
    return not any(isinstance(r, Exception) for r in results)


class TaskQueue:
    """Push queue entries under ``/queue/<group>`` (workers claim them with
    ``claim_transaction``); read the queues and the leases under ``/leases/<id>``."""

    def __init__(self, client: KazooClient, paths: ZkPaths) -> None:
        self.client = client
        self.paths = paths
        self._known_groups: set[str] = set()
        # group -> (data version of the queue node, upper bound of its child count) as of our
        # last bounded push; workers only delete entries, so the bound holds while the version
        # does (every bounded push bumps it)
        self._depth: dict[str, tuple[int, int]] = {}

    def forget_paths(self) -> None:
        """Ensure group paths again from now on (a new session: ZooKeeper may have been wiped)."""
        self._known_groups.clear()
        self._depth.clear()

    def _ensure_group(self, group: str) -> None:
        if group not in self._known_groups:
            self.client.ensure_path(self.paths.queue(group))
            self._known_groups.add(group)

    def push(self, entries: Iterable[QueueEntry]) -> int:
        """Create queue entries in batched transactions; existing entries are kept. Returns the
        number of entries now present among those requested."""
        items = list(entries)
        for group in {e.group for e in items}:
            self._ensure_group(group)
        done = 0
        for i in range(0, len(items), TXN_BATCH):
            batch = items[i : i + TXN_BATCH]
            txn = self.client.transaction()
            for e in batch:
                txn.create(self.paths.queue_entry(e.group, str(e.key)), b"")
            results = txn.commit()
            if committed(results):
                done += len(batch)
                continue
            # One entry already existed (a re-push after a crash): fall back to one by one.
            for e in batch:
                try:
                    self.client.create(self.paths.queue_entry(e.group, str(e.key)), b"")
                except NodeExistsError:
                    pass
                done += 1
        return done

    def depth(self, group: str) -> int:
        """The group's current number of entries (one cheap call: the node's Stat)."""
        self._ensure_group(group)
        stat = self.client.exists(self.paths.queue(group))
        if stat is None:
            self._known_groups.discard(group)
            return 0
        self._depth[group] = (stat.version, stat.numChildren)
        return int(stat.numChildren)

    def push_bounded(self, group: str, keys: list[QueueKey], high_water: int) -> list[QueueKey]:
        """Push a prefix of ``keys`` (give them in dispatch order) so that the group never holds
        more than ``high_water`` entries, whoever else pushes: each transaction also bumps the
        queue node's data version from the one its count was read at, so a concurrent push by
        another master fails it and we count again. Returns the keys now queued (a prefix, plus
        any that were queued already); the caller keeps the rest for later."""
        if not keys:
            return []
        self._ensure_group(group)
        path = self.paths.queue(group)
        todo = list(keys)
        done = 0
        cached = self._depth.get(group)
        for _ in range(BOUNDED_PUSH_TRIES):
            if done >= len(todo):
                break
            left = len(todo) - done
            if cached is None or high_water - cached[1] < left:
                self.depth(group)  # the bound does not fit everything: count again
                cached = self._depth.get(group)
                if cached is None:
                    break
                room = high_water - cached[1]
                if room <= 0:
                    break
            else:
                room = left
            version, count = cached
            batch = todo[done : done + min(room, left, TXN_BATCH - 1)]
            txn = self.client.transaction()
            txn.set_data(path, b"", version=version)
            for k in batch:
                txn.create(self.paths.queue_entry(group, str(k)), b"")
            results = txn.commit()
            if committed(results):
                cached = (version + 1, count + len(batch))
                self._depth[group] = cached
                done += len(batch)
                continue
            cached = None  # lost a race (version moved) or an entry exists: count again
            self._depth.pop(group, None)
            if isinstance(results[0], BadVersionError):
                continue
            exists = [k for k, r in zip(batch, results[1:], strict=True) if _exists(r)]
            if exists:
                # already queued (a re-push after a crash): present, and counted by ZooKeeper
                present = set(exists)
                rest = [k for k in todo[done:] if k not in present]
                todo = todo[:done] + exists + rest
                done += len(exists)
        return todo[:done]

    def remove(self, group: str, key: str) -> bool:
        try:
            self.client.delete(self.paths.queue_entry(group, key))
            return True
        except NoNodeError:
            return False

    def entries(self, group: str) -> list[str]:
        """The group's queue keys in dispatch order."""
        try:
            return sorted(self.client.get_children(self.paths.queue(group)))
        except NoNodeError:
            return []

    def groups(self) -> list[str]:
        try:
            return sorted(self.client.get_children(self.paths.queue_root()))
        except NoNodeError:
            return []

    def lease_ids(self) -> set[int]:
        try:
            return {int(c) for c in self.client.get_children(self.paths.leases()) if c.isdigit()}
        except NoNodeError:
            return set()


def _exists(result: object) -> bool:
    return isinstance(result, NodeExistsError)
