"""One registration of the worker: a ZooKeeper session, an epoch from PostgreSQL (also the lease
token of every claim it makes), the ephemeral znode under every group, and that session's queue
fetcher, kill inbox, heartbeat transport and start-up sweep. Closing it ends the session."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import Engine

from coord.zk import ZkClient, zk_errors
from core.settings import ZkSettings
from db.engine import db_errors
from db.epochs import next_epoch
from worker.fetcher import QueueFetcher
from worker.orphans import sweep
from worker.ports import Log
from worker.signals import SignalInbox


class ZkSession:
    """A live registration (see ``worker.ports.Session``); ``open`` makes one."""

    def __init__(
        self,
        zk: ZkClient,
        engine: Engine,
        host: str,
        epoch: int,
        paths: list[str],
        fetcher: QueueFetcher,
        inbox: SignalInbox,
        lease_data: bytes,
    ) -> None:
        self.zk: ZkClient | None = zk
        self._client = zk
        self.engine = engine
        self.host = host
        self.epoch = epoch
        self.registration_paths = paths
        self.fetcher = fetcher
        self.inbox = inbox
        self.lease_data = lease_data

    @classmethod
    def open(
        cls,
        settings: ZkSettings,
        engine: Engine,
        worker_id: str,
        host: str,
        groups: list[str],
        wake: threading.Event,
        registration: Callable[[], dict[str, Any]],
    ) -> ZkSession:
        """Connect, take a new epoch from PostgreSQL (unique for ever, even across a wiped
        ZooKeeper) and register under every group with it, then start the queue watches and the
        kill inbox. Raises CoordinationUnavailable or DatabaseUnavailable."""
        zk = ZkClient(settings, name=f"worker {worker_id}")
        zk.client.add_listener(lambda _state: wake.set())  # kazoo thread: wake the loop, only
        try:
            with zk_errors("register"), db_errors("register"):
                zk.start()
                paths = [zk.paths.worker(g, worker_id) for g in groups]
                epoch = next_epoch(engine)
                data = registration()
                for path in paths:
                    zk.register(path, data, epoch)
                fetcher = QueueFetcher(zk, groups, wake, worker_id, host)
                fetcher.start()
                inbox = SignalInbox(zk, worker_id, wake)
                inbox.start()
        except BaseException:
            zk.stop()
            raise
        lease = json.dumps({"worker": worker_id, "epoch": epoch, "host": host}).encode()
        return cls(zk, engine, host, epoch, paths, fetcher, inbox, lease)

    def next_event(self) -> str | None:
        try:
            return self._client.events.get_nowait()
        except queue.Empty:
            return None

    def connected(self) -> bool:
        return self._client.connected.is_set()

    def send_beat(self, data: bytes | None, on_answer: Callable[[bool], None]) -> None:
        client = self._client.client
        if data is not None:
            results = [client.set_async(path, data) for path in self.registration_paths]
        else:
            results = [client.exists_async(self.registration_paths[0])]
        results[0].rawlink(lambda result: on_answer(result.successful()))

    def sweep(self, held: Collection[int], grace_s: float, log: Log) -> list[int]:
        return sweep(self.engine, self._client, self.host, set(held), grace_s, log)

    def close(self) -> None:
        self.fetcher.close()
        self.inbox.close()
        self._client.stop()  # closing the session removes our registrations and leases
        self.zk = None
