"""Backfill on real PostgreSQL + ZooKeeper with a master and a worker: a parallel backfill never
has more than its limit unfinished, creates exactly one instance per date with that schedule
time; a serial one runs its dates one after another in the requested order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from support import Cluster, create

from master.server import MasterServer
from ops.localserver import wait_for

TERMINAL = ("SUCCESS", "FAILURE", "STOP")


@pytest.fixture
def master(cluster: Cluster) -> MasterServer:
    """A master ("bm") and a worker with 8 slots, serving."""
    m = cluster.start_master("bm")
    cluster.start_worker(capacity=8)
    return m


def _workflow(api: TestClient, command: str) -> int:
    return create(api, {"name": "bf", "tasks": [{"name": "a", "command": command}]})


def _instances(master: MasterServer, backfill_id: int) -> list[Any]:
    """The backfill's instances in run order."""
    with master.sf.begin() as s:
        return list(
            s.execute(
                text(
                    "SELECT i.id, i.state, i.schedule_time, i.submit_time, i.start_time, i.end_time"
                    " FROM backfill_run r JOIN workflow_instance i ON i.id = r.instance_id"
                    " WHERE r.backfill_id = :b ORDER BY r.seq"
                ),
                {"b": backfill_id},
            ).all()
        )


def _max_overlap(rows: list[Any]) -> int:
    """Most instances unfinished at once, from their submit (row creation) and end times."""
    events = []
    for r in rows:
        events.append((r.submit_time, 1))
        events.append((r.end_time, -1))
    peak = cur = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        cur += d
        peak = max(peak, cur)
    return peak


def test_parallel_backfill_keeps_its_limit(
    api: TestClient, master: MasterServer, timeout_scale: float
) -> None:
    wid = _workflow(api, "sleep 0.3")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    body = {
        "backfill": {
            "start": start.isoformat(),
            "end": (start + timedelta(days=29)).isoformat(),
            "mode": "parallel",
            "parallelism": 4,
        }
    }
    r = api.post(f"/api/v1/workflows/{wid}/runs", json=body)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["dates"] == 30 and len(out["instance_ids"]) == 4
    assert out["instance_id"] == out["instance_ids"][0]
    bid = out["backfill_id"]
    peak = 0

    def done() -> bool:
        nonlocal peak
        rows = _instances(master, bid)
        peak = max(peak, sum(1 for r in rows if r.state not in TERMINAL))
        return len(rows) == 30 and all(r.state in TERMINAL for r in rows)

    wait_for(done, 120 * timeout_scale, interval=0.05, what="30 backfill runs finished")
    rows = _instances(master, bid)
    assert [r.schedule_time for r in rows] == [start + timedelta(days=d) for d in range(30)]
    assert all(r.state == "SUCCESS" for r in rows)
    assert 1 <= peak <= 4
    assert _max_overlap(_instances(master, bid)) <= 4
    progress = api.get(f"/api/v1/backfills/{bid}").json()
    wait_for(
        lambda: api.get(f"/api/v1/backfills/{bid}").json()["state"] == "DONE",
        10 * timeout_scale,
        what="backfill DONE",
    )
    assert progress["total"] == 30 and progress["finished"] == 30


def test_serial_backfill_runs_dates_in_descending_order(
    api: TestClient, master: MasterServer, timeout_scale: float
) -> None:
    wid = _workflow(api, "sleep 0.2")
    dates = ["2026-02-03", "2026-02-01", "2026-02-02", "2026-02-04"]
    body = {"backfill": {"dates": dates, "mode": "SERIAL", "order": "desc"}}
    r = api.post(f"/api/v1/workflows/{wid}/runs", json=body)
    assert r.status_code == 202, r.text
    bid = r.json()["backfill_id"]
    assert len(r.json()["instance_ids"]) == 1

    def done() -> bool:
        rows = _instances(master, bid)
        return len(rows) == 4 and all(r.state in TERMINAL for r in rows)

    wait_for(done, 60 * timeout_scale, what="4 serial runs finished")
    rows = _instances(master, bid)
    # naive dates are read in the workflow's zone (UTC here), newest first
    assert [r.schedule_time.date().isoformat() for r in rows] == sorted(dates, reverse=True)
    for a, b in zip(rows, rows[1:], strict=False):
        assert b.start_time >= a.end_time  # one after another
    assert _max_overlap(_instances(master, bid)) == 1


def test_backfill_dates_follow_the_workflow_schedule_and_bad_requests_are_422(
    api: TestClient, master: MasterServer
) -> None:
    wid = _workflow(api, "true")
    r = api.post(
        "/api/v1/schedules",
        json={"workflow_id": wid, "cron": "0 0 6 ? * MON", "timezone": "Europe/Berlin"},
    )
    assert r.status_code == 201, r.text
    api.put(f"/api/v1/schedules/{r.json()['id']}", json={"enabled": False})
    body = {"backfill": {"start": "2026-03-01", "end": "2026-03-31", "mode": "PARALLEL"}}
    r = api.post(f"/api/v1/workflows/{wid}/runs", json=body)
    assert r.status_code == 202, r.text
    got = api.get(f"/api/v1/backfills/{r.json()['backfill_id']}").json()
    # Mondays at 06:00 Berlin: +0100 before the DST change on the 29th, +0200 after
    assert [x["schedule_time"] for x in got["runs"]] == [
        "2026-03-02T05:00:00+00:00",
        "2026-03-09T05:00:00+00:00",
        "2026-03-16T05:00:00+00:00",
        "2026-03-23T05:00:00+00:00",
        "2026-03-30T04:00:00+00:00",
    ]
    r = api.post(f"/api/v1/workflows/{wid}/runs", json={"backfill": {"mode": "SERIAL"}})
    assert r.status_code == 422 and "start and end" in r.json()["error"]["message"]
    bad = {"backfill": {"start": "2026-03-02", "end": "2026-03-01"}}
    r = api.post(f"/api/v1/workflows/{wid}/runs", json=bad)
    assert r.status_code == 422 and "end is before start" in r.json()["error"]["message"]
