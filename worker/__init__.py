"""The dagkeeper worker: claims task attempts from the ZooKeeper queue and runs them as local
process groups, reporting to PostgreSQL (server, fetcher, executor, task type plugins)."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class WorkerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every message with ``worker <id>:`` (the actor), keeping %-style arguments."""

    def __init__(self, name: str, worker_id: str) -> None:
        super().__init__(logging.getLogger(name), {"worker_id": worker_id})
        self.prefix = "worker " + worker_id.replace("%", "%%") + ": "

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return self.prefix + str(msg), kwargs
