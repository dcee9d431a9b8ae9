"""The cron leader on real PostgreSQL + ZooKeeper: exactly one leader, take-over after the leader's
session is killed with catch-up per misfire policy and no double fire, an injected clock, a
real-time per-second Quartz schedule, and the REST resource."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from support import Cluster, expire_session

from coord.membership import cron_leader
from coord.zk import ZkClient
from core.settings import Settings
from core.spec import parse_workflow_spec
from db import schedules as q_schedules
from db.definitions import create_workflow
from db.engine import make_engine, make_session_factory
from master.cron import CronLeader
from ops.localserver import wait_for

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


class Node:
    """A cron candidate with its own PostgreSQL pool and ZooKeeper session."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.engine = make_engine(settings.db)
        self.sf = make_session_factory(self.engine)
        self.zk = ZkClient(settings.zk, name=name)
        self.zk.start()
        self.cron = CronLeader(self.sf, self.zk, name, settings.cron, clock=lambda: T0)

    def close(self) -> None:
        self.zk.stop()
        self.engine.dispose()


@pytest.fixture
def nodes(settings: Settings) -> Iterator[list[Node]]:
    made = [Node(settings, f"m{i}") for i in range(2)]
    yield made
    for n in made:
        n.close()


def _workflow(sf: Any, name: str = "daily", command: str = "true") -> int:
    spec = parse_workflow_spec(
        {"name": name, "timezone": "Europe/Berlin", "tasks": [{"name": "a", "command": command}]}
    )
    with sf.begin() as s:
        d, _ = create_workflow(s, spec)
        return int(d.id)


def _schedule(sf: Any, workflow_id: int, cron: str, misfire: str, now: datetime) -> int:
    f = q_schedules.ScheduleFields(workflow_id=workflow_id, cron=cron, misfire=misfire)
    with sf.begin() as s:
        return int(q_schedules.create(s, f, now=now).id)


def _fired(sf: Any, schedule_id: int) -> list[datetime]:
    with sf.begin() as s:
        rows = s.execute(
            text(
                "SELECT schedule_time FROM workflow_instance WHERE schedule_id = :s"
                " ORDER BY schedule_time"
            ),
            {"s": schedule_id},
        ).all()
    return [r[0] for r in rows]


def test_exactly_one_leader(nodes: list[Node]) -> None:
    passes = [n.cron.run_once(T0) for n in nodes]
    assert [p.leader for p in passes] == [True, False]
    # a second round changes nothing, and the contenders' order is what /cluster reports
    assert [n.cron.run_once(T0).leader for n in nodes] == [True, False]
    assert cron_leader(nodes[1].zk.client, nodes[1].zk.paths) == "m0"


def test_injected_clock_fires_each_minute_once(nodes: list[Node]) -> None:
    leader = nodes[0]
    wf = _workflow(leader.sf)
    sid = _schedule(leader.sf, wf, "* * * * *", "FIRE_ALL", T0 - timedelta(seconds=1))
    assert leader.cron.run_once(T0).fired[0][1] == T0
    for minute in (1, 2, 3):
        leader.cron.run_once(T0 + timedelta(minutes=minute, seconds=0.4))
        leader.cron.run_once(T0 + timedelta(minutes=minute, seconds=0.9))  # nothing new is due
    assert _fired(leader.sf, sid) == [T0 + timedelta(minutes=m) for m in range(4)]
    with leader.sf.begin() as s:
        row = s.execute(
            text(
                "SELECT i.state, i.command_type, c.type, c.schedule_time FROM workflow_instance i"
                " JOIN command c ON c.instance_id = i.id WHERE i.schedule_id = :s"
                " ORDER BY i.schedule_time LIMIT 1"
            ),
            {"s": sid},
        ).one()
        nxt = s.execute(text("SELECT next_fire_time FROM schedule WHERE id = :s"), {"s": sid})
        assert nxt.scalar_one() == T0 + timedelta(minutes=4)
    assert tuple(row) == ("SUBMITTED", "SCHEDULER", "SCHEDULER", T0)


def test_a_fire_time_has_one_instance_even_after_its_command_is_deleted(
    nodes: list[Node],
) -> None:
    sf = nodes[0].sf
    wf = _workflow(sf)
    sid = _schedule(sf, wf, "* * * * *", "FIRE_ALL", T0 - timedelta(seconds=1))
    with sf.begin() as s:
        row = q_schedules.get(s, sid)
        assert q_schedules.fire(s, row, T0) is not None
        s.execute(text("DELETE FROM command"))  # what a master does once it claimed them
        assert q_schedules.fire(s, row, T0) is None  # a stale second leader changes nothing
        assert q_schedules.fire(s, row, T0 + timedelta(minutes=1)) is not None
    assert _fired(sf, sid) == [T0, T0 + timedelta(minutes=1)]


@pytest.mark.parametrize(
    ("misfire", "expected_minutes"),
    [("FIRE_ALL", list(range(11))), ("FIRE_ONCE", [0, 9, 10]), ("SKIP", [0, 10])],
)
def test_leader_session_killed_other_takes_over_and_catches_up(
    nodes: list[Node],
    zk_hosts: str,
    timeout_scale: float,
    misfire: str,
    expected_minutes: list[int],
) -> None:
    first, second = nodes
    wf = _workflow(first.sf)
    sid = _schedule(first.sf, wf, "* * * * *", misfire, T0 - timedelta(seconds=1))
    assert first.cron.run_once(T0).leader
    assert not second.cron.run_once(T0).leader
    expire_session(zk_hosts, first.zk.client.client_id)
    wait_for(lambda: not first.cron.is_leader(), 10 * timeout_scale, what="old leader deposed")
    # ten minutes later (the cluster was "down"): 1..9 are missed, 10 is on time
    now = T0 + timedelta(minutes=10, seconds=5)
    p = wait_for(
        lambda: (r := second.cron.run_once(now)).leader and r,
        10 * timeout_scale,
        what="the second candidate leads",
    )
    assert p.skipped == 11 - len(expected_minutes)
    # the deposed node, back with a new session, is a follower and fires nothing
    wait_for(lambda: first.zk.client.connected, 10 * timeout_scale, what="first reconnects")
    assert not first.cron.run_once(now).leader
    second.cron.run_once(now)
    assert _fired(first.sf, sid) == [T0 + timedelta(minutes=m) for m in expected_minutes]


def test_per_second_quartz_schedule_fires_every_second_across_a_leader_change(
    cluster: Cluster, zk_hosts: str, timeout_scale: float
) -> None:
    masters = [cluster.start_master(f"cm{i}") for i in range(2)]
    sf = masters[0].sf
    wf = _workflow(sf, "biz", "echo ${system.biz.date}")
    sid = _schedule(sf, wf, "* * * * * ?", "FIRE_ALL", datetime.now(UTC))
    wait_for(lambda: len(_fired(sf, sid)) >= 3, 20 * timeout_scale, what="three fires")
    leader = next(m for m in masters if m.cron.is_leader())
    other = next(m for m in masters if m is not leader)
    expire_session(zk_hosts, leader.zk.client.client_id)
    wait_for(lambda: other.cron.is_leader(), 20 * timeout_scale, what="the other leads")
    n = len(_fired(sf, sid))
    wait_for(lambda: len(_fired(sf, sid)) >= n + 3, 20 * timeout_scale, what="more fires")
    times = _fired(sf, sid)
    # consecutive seconds, none missing and none doubled across the take-over
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)] == [1.0] * (
        len(times) - 1
    )

    # ${system.biz.date} is the day before the schedule time (in the workflow's zone)
    def first_attempt() -> Any:
        with sf.begin() as s:
            return s.execute(
                text(
                    "SELECT t.spec, i.schedule_time FROM task_instance t JOIN"
                    " workflow_instance i ON i.id = t.workflow_instance_id"
                    " WHERE i.schedule_id = :s ORDER BY i.schedule_time LIMIT 1"
                ),
                {"s": sid},
            ).first()

    spec, st = wait_for(first_attempt, 20 * timeout_scale, what="an attempt")
    from zoneinfo import ZoneInfo

    biz = (st.astimezone(ZoneInfo("Europe/Berlin")) - timedelta(days=1)).strftime("%Y%m%d")
    assert biz in spec["command"]


# -- REST ----------------------------------------------------------------------------------------


def test_schedule_crud_and_preview(api: TestClient) -> None:
    wf = api.post(
        "/api/v1/workflows", json={"name": "w", "tasks": [{"name": "a", "command": "true"}]}
    )
    wid = wf.json()["id"]
    body = {"workflow_id": wid, "cron": "0 0 2 * * ? *", "timezone": "Europe/Berlin"}
    r = api.post("/api/v1/schedules", json={**body, "misfire": "fire_all"})
    assert r.status_code == 201, r.text
    sch = r.json()
    assert sch["kind"] == "quartz" and sch["misfire"] == "FIRE_ALL" and sch["priority"] == "MEDIUM"
    nxt = datetime.fromisoformat(sch["next_fire_time"])
    assert nxt > datetime.now(UTC) and nxt.astimezone(UTC).minute == 0
    r = api.put(f"/api/v1/schedules/{sch['id']}", json={**sch, "cron": "30 2 * * *"})
    assert r.status_code == 200, r.text
    assert r.json()["cron"] == "30 2 * * *" and r.json()["kind"] == "cron"
    listed = api.get("/api/v1/schedules", params={"workflow_id": wid}).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == sch["id"]
    r = api.get(f"/api/v1/schedules/{sch['id']}/preview", params={"count": 3})
    assert len(r.json()["items"]) == 3
    r = api.get(
        "/api/v1/cron/preview",
        params={
            "expr": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "count": 2,
            "start": "2026-03-28T12:00:00+00:00",
        },
    )
    items = r.json()["items"]
    assert [i["dst"] for i in items] == ["GAP", None]
    assert items[0]["time"] == "2026-03-29T03:00:00+02:00"
    # invalid input: 422 naming the field and the problem
    r = api.post("/api/v1/schedules", json={**body, "cron": "0 0 2 ? * 9"})
    assert r.status_code == 422 and "cron" in r.json()["error"]["message"]
    assert "day-of-week value 9 is out of range" in r.json()["error"]["message"]
    r = api.post("/api/v1/schedules", json={**body, "timezone": "Europe/Atlantis"})
    assert r.status_code == 422 and "timezone" in r.json()["error"]["message"]
    r = api.post("/api/v1/schedules", json={**body, "cron": "0 2 31 2 *"})
    assert r.status_code == 422 and "never fires" in r.json()["error"]["message"]
    r = api.get("/api/v1/cron/preview", params={"expr": "1 2 3"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("expr: ")
    assert api.delete(f"/api/v1/schedules/{sch['id']}").status_code == 204
    assert api.get(f"/api/v1/schedules/{sch['id']}").status_code == 404
