"""What a master's loop talks to, as small Protocols (so ``run_once`` can be unit-tested with
fakes), and the real adapters over PostgreSQL and ZooKeeper: the command table and failover."""

from __future__ import annotations

from typing import Protocol

from coord.queue import TaskQueue
from coord.zk import ZkClient
from core import metrics
from db.engine import SessionFactory
from master import commands, failover


class Commands(Protocol):
    def claim(self, master_id: str, epoch: int, limit: int) -> list[int]:
        """Claim up to ``limit`` commands; the ids of the instances now ours."""
        ...

    def promote_stalled(self, master_id: str, epoch: int) -> list[int]:
        """Start waiting serial runs that nothing will wake; the ids now ours."""
        ...


class Failover(Protocol):
    def adopt(self, master_id: str, epoch: int) -> list[int]:
        """Adopt the instances of dead masters; the ids adopted."""
        ...

    def reoffer(self, instance_ids: list[int], actor: str) -> set[int]:
        """Hand attempts that lost their worker to fault tolerance; the instances to step."""
        ...


class DbCommands:
    def __init__(self, sf: SessionFactory) -> None:
        self.sf = sf

    def claim(self, master_id: str, epoch: int, limit: int) -> list[int]:
        ids = commands.claim_commands(self.sf, master_id, epoch, limit)
        metrics.commands_claimed(len(ids))
        return ids

    def promote_stalled(self, master_id: str, epoch: int) -> list[int]:
        return commands.promote_stalled(self.sf, master_id, epoch)


class ZkFailover:
    def __init__(
        self, sf: SessionFactory, zk: ZkClient, queue: TaskQueue, session_timeout_s: float
    ) -> None:
        self.sf, self.zk, self.queue = sf, zk, queue
        self.session_timeout_s = session_timeout_s

    def adopt(self, master_id: str, epoch: int) -> list[int]:
        return failover.adopt_orphans(self.sf, self.zk, master_id, epoch, self.session_timeout_s)

    def reoffer(self, instance_ids: list[int], actor: str) -> set[int]:
        return failover.reoffer_lost_attempts(
            self.sf, self.zk, self.queue, instance_ids, self.session_timeout_s, actor
        )
