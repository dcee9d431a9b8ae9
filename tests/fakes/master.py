"""Fakes of a master loop's parts (``master.ports`` and the runner's surface): a ZooKeeper with a
session-event queue and registrations in a dict, a runner that records what it was asked, a
command table and a failover that answer what the test scripted, and a silent cron.
``make_master`` builds a registered ``MasterServer`` on them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kazoo.exceptions import ConnectionLoss

from core.settings import DbSettings, MasterSettings, Settings, ZkSettings
from core.zk_paths import ZkPaths
from master.runner import StepReport
from master.server import MasterServer


class FakeWatch:
    def __init__(self, path: str, callback: Callable[[list[str]], None]) -> None:
        self.path, self.callback = path, callback
        self._stopped = False


class FakeZk:
    """What MasterServer uses of ZkClient: ``events``, ``connected``, ``paths``, registrations
    (``set_json``/``member_epoch``), ``children`` and ``watch_children``. ``down`` makes every
    call raise ConnectionLoss, as an unreachable ensemble does."""

    def __init__(self) -> None:
        self.paths = ZkPaths("/dk")
        self.events: queue.Queue[str] = queue.Queue()
        self.connected = threading.Event()
        self.connected.set()
        self.client = object()  # TaskQueue keeps it; the fakes never reach it
        self.nodes: dict[str, dict[str, Any]] = {}
        self.kids: dict[str, list[str]] = {}
        self.watches: list[FakeWatch] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionLoss()

    def set_json(self, path: str, data: dict[str, Any]) -> None:
        self._check()
        self.nodes[path] = data

    def member_epoch(self, path: str) -> int | None:
        self._check()
        data = self.nodes.get(path)
        return int(data["epoch"]) if data else None

    def children(self, path: str) -> list[str]:
        self._check()
        return list(self.kids.get(path, []))

    def watch_children(self, path: str, callback: Callable[[list[str]], None]) -> FakeWatch:
        self._check()
        w = FakeWatch(path, callback)
        self.watches.append(w)
        return w


class FakeRunner:
    """Records steps; ``owned`` is what it holds; ``fail`` raises from the next step."""

    def __init__(self) -> None:
        self.owned: dict[int, object] = {}
        self.steps: list[tuple[set[int], set[int] | None]] = []
        self.loaded: list[list[int] | None] = []
        self.dropped = 0
        self.created_per_step = 0
        self.fail: BaseException | None = None

    def load_owned(self, ids: list[int] | None = None) -> list[int]:
        self.loaded.append(ids)
        for i in ids or []:
            self.owned.setdefault(i, object())
        return sorted(ids) if ids is not None else sorted(self.owned)

    def drop_all(self) -> None:
        self.dropped += 1
        self.owned.clear()

    def step(self, ids: set[int], changed: set[int] | None = None) -> StepReport:
        if self.fail is not None:
            raise self.fail
        self.steps.append((set(ids), changed))
        return StepReport(stepped=len(ids), created=self.created_per_step)

    def pace(
        self, partial: set[int], changed: set[int], dirty: set[int]
    ) -> tuple[set[int], set[int]]:
        return partial, changed if partial else set()

    def next_timer(self) -> datetime | None:
        return None

    def due_timers(self, now: datetime) -> set[int]:
        return set()

    def refill_wait(self) -> float | None:
        return None

    def refill(self, kick: bool = False, recount: bool = False) -> int:
        return 0

    def requeue_submitted(self) -> int:
        return 0


class FakeCommands:
    """``claims``: what each claim answers, in order (then nothing)."""

    def __init__(self) -> None:
        self.claims: list[list[int]] = []
        self.calls = 0

    def claim(self, master_id: str, epoch: int, limit: int) -> list[int]:
        self.calls += 1
        return self.claims.pop(0) if self.claims else []

    def promote_stalled(self, master_id: str, epoch: int) -> list[int]:
        return []


class FakeFailover:
    def __init__(self) -> None:
        self.adopts = 0
        self.reoffers: list[list[int]] = []
        self.lost: set[int] = set()

    def adopt(self, master_id: str, epoch: int) -> list[int]:
        self.adopts += 1
        return []

    def reoffer(self, instance_ids: list[int], actor: str) -> set[int]:
        self.reoffers.append(instance_ids)
        out, self.lost = self.lost, set()
        return out


class FakeCron:
    def tick(self) -> None:
        return None

    def resign(self) -> None:
        pass


class FakeListener:
    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def make_master(**overrides: Any) -> tuple[MasterServer, FakeZk, FakeRunner, FakeCommands,
                                           FakeFailover]:  # fmt: skip
    """A MasterServer on fakes, registered with epoch 7 and past its first reconcile."""
    settings = Settings(
        db=DbSettings(url="postgresql+psycopg2://nobody@127.0.0.1:1/none"),
        zk=ZkSettings(root="/dk"),
        master=MasterSettings(**overrides),
    )
    zk, runner, commands, fo = FakeZk(), FakeRunner(), FakeCommands(), FakeFailover()
    m = MasterServer(
        settings,
        "m1",
        zk=zk,  # type: ignore[arg-type]
        runner=runner,  # type: ignore[arg-type]
        cron=FakeCron(),  # type: ignore[arg-type]
        listener=FakeListener(),  # type: ignore[arg-type]
        commands=commands,
        failover=fo,
    )
    m.epoch, m.fenced = 7, False
    zk.nodes[zk.paths.master("m1")] = {"epoch": 7}
    m._last_poll = m._last_reconcile = m._last_heartbeat = float("inf")  # not due by default
    return m, zk, runner, commands, fo
