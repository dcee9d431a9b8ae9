"""The only place that builds znode paths; every path lives under a configurable root."""

from __future__ import annotations

from dataclasses import dataclass

# The election the masters' cron leader is chosen by (master/cron.py contends, /cluster reads it).
CRON_ELECTION = "cron"


def _check_segment(value: str, what: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"invalid {what} for a znode name: {value!r}")
    return value


@dataclass(frozen=True)
class ZkPaths:
    """Znode layout: /nodes/masters, /nodes/workers/<group>, /queue/<group>, /leases, /locks."""

    root: str = "/dagkeeper"

    def __post_init__(self) -> None:
        if not self.root.startswith("/") or (self.root.endswith("/") and self.root != "/"):
            raise ValueError(
                f"ZooKeeper root must be an absolute path without trailing '/': {self.root!r}"
            )

    def _join(self, *parts: str) -> str:
        base = "" if self.root == "/" else self.root
        return base + "/" + "/".join(parts)

    # membership
    def masters(self) -> str:
        return self._join("nodes", "masters")

    def master(self, master_id: str) -> str:
        return self._join("nodes", "masters", _check_segment(master_id, "master id"))

    def workers_root(self) -> str:
        return self._join("nodes", "workers")

    def workers(self, group: str) -> str:
        return self._join("nodes", "workers", _check_segment(group, "worker group"))

    def worker(self, group: str, worker_id: str) -> str:
        return self._join(
            "nodes",
            "workers",
            _check_segment(group, "worker group"),
            _check_segment(worker_id, "worker id"),
        )

    # dispatch
    def queue_root(self) -> str:
        return self._join("queue")

    def queue(self, group: str) -> str:
        return self._join("queue", _check_segment(group, "worker group"))

    def queue_entry(self, group: str, key: str) -> str:
        return self._join(
            "queue", _check_segment(group, "worker group"), _check_segment(key, "queue key")
        )

    def leases(self) -> str:
        return self._join("leases")

    def lease(self, task_instance_id: int) -> str:
        return self._join("leases", str(int(task_instance_id)))

    def host_queue(self, host: str) -> str:
        """Host-pinned dispatch (FANOUT sub-executions): only workers on ``host`` claim here."""
        return self._join("host-queue", _check_segment(host, "host"))

    def host_queue_entry(self, host: str, key: str) -> str:
        return self._join(
            "host-queue", _check_segment(host, "host"), _check_segment(key, "queue key")
        )

    # signals to a worker (kill requests): <signals>/<worker id>/<task instance id>
    def signals_root(self) -> str:
        return self._join("signals")

    def signals(self, worker_id: str) -> str:
        return self._join("signals", _check_segment(worker_id, "worker id"))

    def signal(self, worker_id: str, task_instance_id: int) -> str:
        return self._join(
            "signals", _check_segment(worker_id, "worker id"), str(int(task_instance_id))
        )

    # drain requests to a worker (`dagkeeper worker drain`): <drains>/<worker id>, persistent
    def drains(self) -> str:
        return self._join("drain")

    def drain(self, worker_id: str) -> str:
        return self._join("drain", _check_segment(worker_id, "worker id"))

    # coordination
    def locks(self) -> str:
        return self._join("locks")

    def lock(self, name: str) -> str:
        return self._join("locks", _check_segment(name, "lock name"))

    def election(self, name: str) -> str:
        return self._join("election", _check_segment(name, "election name"))

    def cron_election(self) -> str:
        """The election whose lowest contender is the cron leader."""
        return self.election(CRON_ELECTION)

    def all_roots(self) -> list[str]:
        """Containers every node ensures on start."""
        return [
            self.masters(),
            self.workers_root(),
            self.queue_root(),
            self.leases(),
            self.locks(),
            self.signals_root(),
        ]
