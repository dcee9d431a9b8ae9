"""Backfill on real PostgreSQL + ZooKeeper with a master and a worker: a parallel backfill never
has more than its limit unfinished, creates exactly one instance per date with that schedule
time; a serial one runs its dates one after another in the requested order."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from core.settings import Settings, WorkerSettings
from master.server import MasterServer
from ops.localserver import wait_for
from worker.server import WorkerServer

TERMINAL = ("SUCCESS", "FAILURE", "STOP")


@pytest.fixture
def cluster(settings: Settings) -> Iterator[tuple[TestClient, MasterServer]]:
    settings = settings.model_copy(
        update={
            "api": settings.api.model_copy(update={"token": "t"}),
            "worker": WorkerSettings(heartbeat_interval_s=1, report_retry_deadline_s=2, capacity=8),
        }
    )
    stop = threading.Event()
    master, worker = MasterServer(settings, master_id="bm"), WorkerServer(settings)
    master.start()
    worker.start()
    threads = [
        threading.Thread(target=master.serve_forever, args=(stop,), daemon=True),
        threading.Thread(target=worker.serve_forever, args=(stop,), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        with TestClient(create_app(settings)) as client:
            client.headers["Authorization"] = "Bearer t"
            yield client, master
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        worker.stop(grace=0)
        master.stop()


def _workflow(api: TestClient, command: str) -> int:
    r = api.post(
        "/api/v1/workflows", json={"name": "bf", "tasks": [{"name": "a", "command": command}]}
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _instances(master: MasterServer, backfill_id: int) -> list[Any]:
    with master.sf.begin() as s:
        return list(
            s.execute(
                text(
                    "SELECT i.id, i.state, i.schedule_time, i.start_time, i.end_time"
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


def _timeline(master: MasterServer, backfill_id: int) -> list[Any]:
    with master.sf.begin() as s:
        return list(
            s.execute(
                text(
                    "SELECT i.submit_time, i.end_time FROM backfill_run r"
                    " JOIN workflow_instance i ON i.id = r.instance_id WHERE r.backfill_id = :b"
                ),
                {"b": backfill_id},
            ).all()
        )


def test_parallel_backfill_keeps_its_limit(
    cluster: tuple[TestClient, MasterServer], timeout_scale: float
) -> None:
    api, master = cluster
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
    assert _max_overlap(_timeline(master, bid)) <= 4
    progress = api.get(f"/api/v1/backfills/{bid}").json()
    wait_for(
        lambda: api.get(f"/api/v1/backfills/{bid}").json()["state"] == "DONE",
        10 * timeout_scale,
        what="backfill DONE",
    )
    assert progress["total"] == 30 and progress["finished"] == 30


def test_serial_backfill_runs_dates_in_descending_order(
    cluster: tuple[TestClient, MasterServer], timeout_scale: float
) -> None:
    api, master = cluster
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
    assert _max_overlap(_timeline(master, bid)) == 1


def test_backfill_dates_follow_the_workflow_schedule_and_bad_requests_are_422(
    cluster: tuple[TestClient, MasterServer],
) -> None:
    api, _ = cluster
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
