"""DEPENDENT on real PostgreSQL (the which-run query) and with a real master, worker, ZooKeeper
and the API: yesterday's successful run is resolved and shown, no run fails after the timeout,
OR passes on one item, AND waits for both, and an upstream success is seen within a check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text
from support import (
    Cluster,
    act,
    attempts,
    create,
    instance,
    task_instance,
    wait_task,
    wait_terminal,
)

from db import dependent as q_dep
from db.engine import SessionFactory
from ops.localserver import wait_for

DAY = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)  # the dependent run's schedule time
YESTERDAY = DAY - timedelta(days=1)


def ts(t: str | None) -> datetime:
    assert t is not None
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


# --- the which-run query on PostgreSQL ----------------------------------------------------------


def add_workflow(sf: SessionFactory, name: str, deleted: bool = False) -> int:
    with sf.begin() as s:
        wid = int(
            s.execute(
                text(
                    "INSERT INTO workflow_definition (name, deleted) VALUES (:n, :d) RETURNING id"
                ),
                {"n": name, "d": deleted},
            ).scalar_one()
        )
        s.execute(
            text("INSERT INTO workflow_version (workflow_id, version, spec) VALUES (:w, 1, '{}')"),
            {"w": wid},
        )
        return wid


def add_run(
    sf: SessionFactory,
    wid: int,
    state: str,
    schedule: datetime | None,
    start: datetime | None = None,
    tasks: list[tuple[str, int, str]] = (),  # type: ignore[assignment]
) -> tuple[int, dict[tuple[str, int], int]]:
    """An instance row (and task attempts (name, attempt, state)); returns their ids."""
    with sf.begin() as s:
        iid = int(
            s.execute(
                text(
                    "INSERT INTO workflow_instance (workflow_id, version, state, command_type,"
                    " schedule_time, start_time, end_time)"
                    " VALUES (:w, 1, :st, 'START_PROCESS', :sch, :start, :start) RETURNING id"
                ),
                {"w": wid, "st": state, "sch": schedule, "start": start or schedule},
            ).scalar_one()
        )
        ids = {}
        for name, n, st in tasks:
            ids[(name, n)] = int(
                s.execute(
                    text(
                        "INSERT INTO task_instance (workflow_instance_id, name, type, attempt,"
                        " state) VALUES (:i, :n, 'SHELL', :a, :st) RETURNING id"
                    ),
                    {"i": iid, "n": name, "a": n, "st": st},
                ).scalar_one()
            )
    return iid, ids


def find(
    sf: SessionFactory, wid: int, task: str | None, start: datetime, end: datetime
) -> int | None:
    with sf.begin() as s:
        r = q_dep.find_run(s, wid, task, start, end)
    return r.instance_id if r else None


def test_which_run_counts(sf: SessionFactory) -> None:
    wid = add_workflow(sf, "up")
    start, end = YESTERDAY.replace(hour=0), DAY.replace(hour=0)
    early, _ = add_run(sf, wid, "SUCCESS", start + timedelta(hours=1))
    late, _ = add_run(sf, wid, "SUCCESS", start + timedelta(hours=20))
    add_run(sf, wid, "FAILURE", start + timedelta(hours=22))  # failed: never counts
    add_run(sf, wid, "RUNNING", start + timedelta(hours=23))  # not finished: never counts
    add_run(sf, wid, "SUCCESS", end)  # half-open: the window's end is outside
    add_run(sf, wid, "SUCCESS", start - timedelta(seconds=1))
    assert find(sf, wid, None, start, end) == late  # the latest successful base time wins
    assert find(sf, wid, None, start, start + timedelta(hours=2)) == early
    assert find(sf, wid, None, start + timedelta(hours=23), end) is None
    # an unscheduled run counts by its start time
    manual, _ = add_run(sf, wid, "SUCCESS", None, start + timedelta(hours=21))
    assert find(sf, wid, None, start, end) == manual
    with sf.begin() as s:
        got = q_dep.find_run(s, wid, None, start, end)
    assert got is not None and got.schedule_time is None and got.state == "SUCCESS"

    # with a task: its latest attempt decides, whatever the instance's state
    tid = add_workflow(sf, "tasks")
    failed_wf, ids = add_run(
        sf, tid, "FAILURE", start + timedelta(hours=2), tasks=[("load", 1, "SUCCESS")]
    )
    retried, _ = add_run(
        sf,
        tid,
        "SUCCESS",
        start + timedelta(hours=3),
        tasks=[("load", 1, "SUCCESS"), ("load", 2, "FAILURE")],  # a rerun's attempt failed
    )
    forced, fids = add_run(
        sf, tid, "FAILURE", start + timedelta(hours=1), tasks=[("load", 1, "FORCED_SUCCESS")]
    )
    assert find(sf, tid, "load", start, end) == failed_wf
    with sf.begin() as s:
        r = q_dep.find_run(s, tid, "load", start, end)
    assert r is not None and r.task_instance_id == ids[("load", 1)] and r.task_state == "SUCCESS"
    assert find(sf, tid, "load", start, start + timedelta(hours=2)) == forced
    assert find(sf, tid, "other", start, end) is None
    # a FANOUT sub-execution with the same name is no attempt of the task
    with sf.begin() as s:
        s.execute(
            text(
                "INSERT INTO task_instance (workflow_instance_id, name, type, attempt, state,"
                " parent_id, target) VALUES (:i, 'load', 'SHELL', 9, 'FAILURE', :p, 'h1')"
            ),
            {"i": forced, "p": fids[("load", 1)]},
        )
    assert find(sf, tid, "load", start, start + timedelta(hours=2)) == forced
    assert find(sf, tid, None, start, end) == retried  # the instance alone: it ended SUCCESS


def test_workflow_references(sf: SessionFactory) -> None:
    old = add_workflow(sf, "gone", deleted=True)
    live = add_workflow(sf, "gone")
    with sf.begin() as s:
        by_name = q_dep.find_workflow(s, "gone")
        by_id = q_dep.find_workflow(s, old)
        assert q_dep.find_workflow(s, "nope") is None
        assert q_dep.find_workflow(s, 10**9) is None
    assert by_name is not None and by_name.id == live
    assert by_id is not None and by_id.id == old  # an id names deleted workflows too


# --- end to end ----------------------------------------------------------------------------


def backfill(api: TestClient, wid: int, when: datetime) -> int:
    r = api.post(f"/api/v1/workflows/{wid}/runs", json={"backfill": {"dates": [when.isoformat()]}})
    assert r.status_code == 202, r.text
    return int(r.json()["instance_id"])


def upstream(api: TestClient, name: str, command: str = "true") -> int:
    return create(api, {"name": name, "tasks": [{"name": "load", "command": command}]})


def dependent(
    api: TestClient,
    groups: list[dict[str, Any]],
    relation: str = "AND",
    interval: float = 0.5,
    timeout: float | None = 60,
) -> int:
    wait: dict[str, Any] = {
        "name": "wait",
        "type": "DEPENDENT",
        "dependencies": {"relation": relation, "groups": groups},
        "check_interval_s": interval,
    }
    if timeout is not None:
        wait["dependence_timeout_s"] = timeout
    return create(
        api,
        {
            "name": "down",
            "tasks": [wait, {"name": "after", "command": "true", "depends_on": ["wait"]}],
        },
    )


def item(workflow: str, window: str = "yesterday", **extra: Any) -> dict[str, Any]:
    return {"workflow": workflow, "window": window, **extra}


def wait_attempt(api: TestClient, iid: int) -> dict[str, Any]:
    """The DEPENDENT attempt as GET /task-instances/{id} shows it ({} before it exists)."""
    found = attempts(api, iid, "wait")
    if not found:
        return {}
    return task_instance(api, found[-1]["id"])


def test_yesterday_resolves_yesterdays_successful_run_and_the_api_shows_it(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    up = upstream(api, "up")
    old = backfill(api, up, YESTERDAY - timedelta(days=1))  # the day before: outside the window
    good = backfill(api, up, YESTERDAY)
    for iid in (old, good):
        assert wait_terminal(api, iid, 30 * timeout_scale)["state"] == "SUCCESS"
    down = backfill(api, dependent(api, [{"items": [item("up")]}]), DAY)
    done = wait_terminal(api, down, 30 * timeout_scale)
    assert done["state"] == "SUCCESS", done
    t = wait_attempt(api, down)
    assert t["state"] == "SUCCESS" and t["type"] == "DEPENDENT"
    assert t["worker_id"] is None and t["host"] is None  # run by the master
    [res] = t["output"]["__resolved"]
    assert res["instance_id"] == good and res["workflow"] == "up" and res["workflow_id"] == up
    assert ts(res["schedule_time"]) == YESTERDAY and res["state"] == "SUCCESS"
    assert ts(res["window_start"]) == datetime(2026, 3, 9, tzinfo=UTC)
    assert ts(res["window_end"]) == datetime(2026, 3, 10, tzinfo=UTC)
    assert f"instance {good}" in t["reason"]
    # the instance's task list shows it too
    listed = [x for x in api.get(f"/api/v1/instances/{down}/tasks").json()["items"]]
    assert [x["output"]["__resolved"][0]["instance_id"] for x in listed if x["name"] == "wait"] == [
        good
    ]
    assert "__resolved" not in wait_attempt(api, down)["spec"].get("params", {})


def test_no_run_fails_after_the_dependence_timeout_with_a_reason(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    up = upstream(api, "up")
    today = backfill(api, up, DAY - timedelta(hours=1))  # today's run: not yesterday's
    assert wait_terminal(api, today, 30 * timeout_scale)["state"] == "SUCCESS"
    down = backfill(api, dependent(api, [{"items": [item("up")]}], timeout=2), DAY)
    done = wait_terminal(api, down, 30 * timeout_scale)
    assert done["state"] == "FAILURE"
    t = wait_attempt(api, down)
    assert t["state"] == "FAILURE"
    assert "not met within 2 s" in t["reason"], t["reason"]
    assert "found no successful run of workflow 'up' in yesterday" in t["reason"]
    assert ts(t["end_time"]) - ts(t["start_time"]) >= timedelta(seconds=2)
    assert "__resolved" not in t["output"]
    assert [x["name"] for x in done["tasks"] if x["state"] == "SUCCESS"] == []


def test_a_retry_is_a_new_wait_with_a_fresh_timeout(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    upstream(api, "up")
    wid = create(
        api,
        {
            "name": "down",
            "tasks": [
                {
                    "name": "wait",
                    "type": "DEPENDENT",
                    "retries": 1,
                    "dependencies": {"groups": [{"items": [item("up")]}]},
                    "check_interval_s": 0.5,
                    "timeout_s": 1,  # no dependence_timeout_s: the task's timeout applies
                }
            ],
        },
    )
    down = backfill(api, wid, DAY)
    assert wait_terminal(api, down, 30 * timeout_scale)["state"] == "FAILURE"
    first, second = attempts(api, down, "wait")
    assert first["state"] == second["state"] == "FAILURE"
    assert "not met within 1 s" in second["reason"]
    assert ts(second["start_time"]) >= ts(first["end_time"])
    assert ts(second["end_time"]) - ts(second["start_time"]) >= timedelta(seconds=1)


def test_unknown_workflow_fails_at_once(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    bad = {"name": "bad", "tasks": [{"name": "w", "type": "DEPENDENT", "dependencies": {
        "groups": [{"items": [{"workflow": "up", "window": "tomorrow"}]}]}}]}  # fmt: skip
    r = api.post("/api/v1/workflows", json=bad)
    assert r.status_code == 422, r.text
    assert "task 'w': dependencies.groups[0].items[0].window: unknown window 'tomorrow'" in r.text
    down = backfill(api, dependent(api, [{"items": [item("missing")]}], timeout=None), DAY)
    assert wait_terminal(api, down, 30 * timeout_scale)["state"] == "FAILURE"
    assert "no workflow named 'missing'" in wait_attempt(api, down)["reason"]


def test_or_group_passes_on_one_of_two_items(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    up = upstream(api, "up")
    upstream(api, "never")
    good = backfill(api, up, YESTERDAY)
    assert wait_terminal(api, good, 30 * timeout_scale)["state"] == "SUCCESS"
    wf = dependent(api, [{"relation": "OR", "items": [item("never"), item("up")]}])
    down = backfill(api, wf, DAY)
    assert wait_terminal(api, down, 30 * timeout_scale)["state"] == "SUCCESS"
    resolved = wait_attempt(api, down)["output"]["__resolved"]
    assert [(r["group"], r["item"], r["instance_id"]) for r in resolved] == [(0, 1, good)]


def test_and_waits_for_both(cluster: Cluster, api: TestClient, timeout_scale: float) -> None:
    cluster.start_master()
    cluster.start_worker()
    up, other = upstream(api, "up"), upstream(api, "other")
    first = backfill(api, up, YESTERDAY)
    assert wait_terminal(api, first, 30 * timeout_scale)["state"] == "SUCCESS"
    wf = dependent(api, [{"relation": "AND", "items": [item("up"), item("other")]}])
    down = backfill(api, wf, DAY)
    waiting = wait_for(
        lambda: (
            (t := wait_attempt(api, down)).get("state") == "RUNNING"
            and "other" in (t["reason"] or "")
            and t
        ),
        30 * timeout_scale,
        0.05,
        "the DEPENDENT attempt to wait for 'other'",
    )
    assert "'up'" not in waiting["reason"]  # resolved already: only the missing item is named
    assert instance(api, down)["state"] == "RUNNING"
    second = backfill(api, other, YESTERDAY + timedelta(hours=3))
    assert wait_terminal(api, second, 30 * timeout_scale)["state"] == "SUCCESS"
    assert wait_terminal(api, down, 30 * timeout_scale)["state"] == "SUCCESS"
    t = wait_attempt(api, down)
    assert [r["instance_id"] for r in t["output"]["__resolved"]] == [first, second]
    assert ts(t["start_time"]) < ts(instance(api, second)["start_time"])  # it did wait


def test_an_upstream_success_is_seen_within_about_one_check_interval(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    interval = 1.0
    cluster.start_master()
    cluster.start_worker()
    up = upstream(api, "up", "sleep 0.3")
    wf = dependent(api, [{"items": [item("up", task="load")]}], interval=interval, timeout=120)
    down = backfill(api, wf, DAY)
    wait_task(api, down, "wait", "RUNNING", 30 * timeout_scale)
    late = backfill(api, up, YESTERDAY + timedelta(hours=12))
    assert wait_terminal(api, down, 30 * timeout_scale)["state"] == "SUCCESS"
    t = wait_attempt(api, down)
    [res] = t["output"]["__resolved"]
    assert res["instance_id"] == late and res["task"] == "load" and res["task_state"] == "SUCCESS"
    r = api.get(f"/api/v1/task-instances/{res['task_instance_id']}")
    upstream_done = ts(r.json()["end_time"])
    lag = (ts(t["end_time"]) - upstream_done).total_seconds()
    assert 0 <= lag <= interval + 0.5 * timeout_scale, lag


def test_stop_and_pause_end_a_waiting_dependency(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    upstream(api, "up")
    wf = dependent(api, [{"items": [item("up")]}], timeout=None)
    stopped, paused = backfill(api, wf, DAY), backfill(api, wf, DAY + timedelta(days=1))
    for iid in (stopped, paused):
        wait_task(api, iid, "wait", "RUNNING", 30 * timeout_scale)
    act(api, stopped, "stop")
    act(api, paused, "pause")
    assert wait_terminal(api, stopped, 30 * timeout_scale)["state"] == "STOP"
    assert wait_attempt(api, stopped)["state"] == "KILL"
    assert "stopped while waiting" in wait_attempt(api, stopped)["reason"]
    wait_for(lambda: instance(api, paused)["state"] == "PAUSE", 30 * timeout_scale, 0.05, "pause")
    assert wait_attempt(api, paused)["state"] == "PAUSE"


# --- failover ----------------------------------------------------------------------------------


def test_after_a_master_failover_the_timeout_still_counts_from_the_attempt_start(
    proc_cluster: Any,
) -> None:
    c, timeout = proc_cluster, 10.0
    c.up(masters=2, workers=0)
    c.submit([{"name": "load", "command": "true"}], name="up")  # no worker: never succeeds
    wait = {
        "name": "wait",
        "type": "DEPENDENT",
        "command": "true",
        "dependencies": {"groups": [{"items": [{"workflow": "up", "window": "today"}]}]},
        "check_interval_s": 0.5,
        "dependence_timeout_s": timeout,
    }
    iid = c.submit([wait], name="down")
    first = c.wait(lambda: c.find_attempt(iid, "wait"), 30, "the DEPENDENT attempt RUNNING")
    owner = c.wait(lambda: c.master_owning(iid), 10, "owner of the instance")
    old = c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=iid)
    c.kill9(owner)
    c.wait(
        lambda: c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=iid) != old,
        30,
        "adoption",
        interval=0.02,
    )
    adopted_at = datetime.now(UTC)
    c.wait(lambda: c.state(iid) == "FAILURE", 40, "the dependent run to fail")
    rows = c.attempts(iid, "wait")
    assert [(r.id, r.state) for r in rows] == [(first.id, "FAILURE")]  # polled, never restarted
    end = rows[0].end_time
    print(
        f"\nDEPENDENT failover: adopted {(adopted_at - first.start_time).total_seconds():.2f} s"
        f" and failed {(end - first.start_time).total_seconds():.2f} s after the attempt started"
    )
    assert end - first.start_time >= timedelta(seconds=timeout)
    # a timeout restarted by the adoption would end no earlier than adopted_at + timeout
    assert end < adopted_at + timedelta(seconds=timeout - 1), (first.start_time, adopted_at, end)
    reason = c.one("SELECT reason FROM task_instance WHERE id = :i", i=first.id)
    assert f"not met within {timeout:g} s" in reason
