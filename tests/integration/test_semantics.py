"""Workflow semantics through the REST API on real PostgreSQL, ZooKeeper, master and worker:
stop, pause/resume, rerun, recover-failed, start nodes with depend modes, kill and force-success,
failure strategies, retries with backoff, timeouts, illegal transitions (409) and dry runs."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text
from support import (
    Cluster,
    act,
    attempts,
    create,
    group_gone,
    instance,
    pid_of,
    run,
    sh,
    start,
    tasks,
    wait_state,
    wait_task,
    wait_terminal,
)

from db.engine import SessionFactory
from ops.localserver import wait_for

# --- stop, pause, resume --------------------------------------------------------------------


def test_stop_kills_running_tasks_cancels_the_rest_and_reaches_stop(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(
        api,
        {
            "name": "stoppable",
            "tasks": [sh("long", "sleep 300"), sh("after", "true", depends_on=["long"])],
        },
    )
    running = wait_task(api, iid, "long", "RUNNING", 20 * timeout_scale)
    pgid = pid_of(api, running["id"])
    assert act(api, iid, "stop")["state"] == "READY_STOP"
    done = wait_state(api, iid, "STOP", 15 * timeout_scale)
    by_name = {t["name"]: t for t in done["tasks"]}
    assert by_name["long"]["state"] == "KILL"
    assert "after" not in by_name  # nothing new started
    wait_for(lambda: group_gone(pgid), 5 * timeout_scale, 0.05, "the task's process group to end")
    assert act(api, iid, "stop", expect=409)["error"]["code"] == "conflict"


def test_pause_lets_the_running_task_finish_then_resume_carries_on(
    cluster: Cluster, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    gate = tmp_path / "gate"
    iid = run(
        api,
        {
            "name": "pausable",
            "tasks": [
                sh("first", f"while [ ! -e {gate} ]; do sleep 0.05; done"),
                sh("second", "true", depends_on=["first"]),
            ],
        },
    )
    wait_task(api, iid, "first", "RUNNING", 20 * timeout_scale)
    assert act(api, iid, "pause")["state"] == "READY_PAUSE"
    gate.touch()
    paused = wait_state(api, iid, "PAUSE", 15 * timeout_scale)
    assert {t["name"]: t["state"] for t in paused["tasks"]} == {"first": "SUCCESS"}
    assert act(api, iid, "pause")["action"] == "already pausing"
    act(api, iid, "resume")
    done = wait_terminal(api, iid, 20 * timeout_scale)
    assert done["state"] == "SUCCESS"
    assert tasks(api, iid)["second"]["state"] == "SUCCESS"


def test_illegal_requests_are_409_with_the_reason(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(api, {"name": "short", "tasks": [sh("a", "true")]})
    assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "SUCCESS"
    for action in ("pause", "resume", "recover-failed"):
        err = act(api, iid, action, expect=409)["error"]
        assert "SUCCESS" in err["message"], err
    ti = tasks(api, iid)["a"]["id"]
    for action in ("kill", "force-success"):
        r = api.post(f"/api/v1/task-instances/{ti}/{action}")
        assert r.status_code == 409 and "SUCCESS" in r.json()["error"]["message"], r.text
    assert api.post("/api/v1/instances/999999/stop").status_code == 404


# --- reruns and recovery ----------------------------------------------------------------------


def test_rerun_runs_every_task_again_as_new_attempts(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(api, {"name": "again", "tasks": [sh("a", "true"), sh("b", "true", depends_on=["a"])]})
    assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "SUCCESS"
    act(api, iid, "rerun")
    wait_for(
        lambda: instance(api, iid)["run_count"] == 2 and instance(api, iid)["state"] == "SUCCESS",
        20 * timeout_scale,
        0.05,
        "the rerun to succeed",
    )
    assert [(t["attempt"], t["state"]) for t in attempts(api, iid, "b")] == [
        (1, "SUCCESS"),
        (2, "SUCCESS"),
    ]


def test_recover_failed_keeps_successes_and_reruns_from_the_failure(
    cluster: Cluster, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    fixed = tmp_path / "fixed"
    iid = run(
        api,
        {
            "name": "recoverable",
            "tasks": [
                sh("ok", "true"),
                sh("flaky", f"test -e {fixed}", depends_on=["ok"]),
                sh("last", "true", depends_on=["flaky"]),
            ],
        },
    )
    failed = wait_terminal(api, iid, 20 * timeout_scale)
    assert failed["state"] == "FAILURE"
    assert tasks(api, iid)["last"]["state"] == "SKIPPED"
    fixed.touch()
    act(api, iid, "recover-failed")
    wait_for(lambda: instance(api, iid)["state"] == "SUCCESS", 20 * timeout_scale, 0.05, "recovery")
    assert len(attempts(api, iid, "ok")) == 1  # kept, not run again
    assert [t["state"] for t in attempts(api, iid, "flaky")] == ["FAILURE", "SUCCESS"]
    assert tasks(api, iid)["last"]["state"] == "SUCCESS"


def test_force_success_then_recover_lets_downstream_run(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(
        api,
        {"name": "forced", "tasks": [sh("bad", "exit 3"), sh("next", "true", depends_on=["bad"])]},
    )
    assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "FAILURE"
    bad = tasks(api, iid)["bad"]
    r = api.post(f"/api/v1/task-instances/{bad['id']}/force-success")
    assert r.status_code == 202 and r.json()["state"] == "FORCED_SUCCESS", r.text
    act(api, iid, "recover-failed")
    wait_for(lambda: instance(api, iid)["state"] == "SUCCESS", 20 * timeout_scale, 0.05, "success")
    assert len(attempts(api, iid, "bad")) == 1
    assert tasks(api, iid)["next"]["state"] == "SUCCESS"


def test_start_nodes_with_each_depend_mode(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    wid = create(
        api,
        {
            "name": "chain3",
            "tasks": [
                sh("a", "true"),
                sh("b", "true", depends_on=["a"]),
                sh("c", "true", depends_on=["b"]),
            ],
        },
    )
    expected = {"TASK_ONLY": {"b"}, "TASK_POST": {"b", "c"}, "TASK_PRE": {"a", "b"}}
    runs = {mode: start(api, wid, start_nodes=["b"], depend_mode=mode) for mode in expected}
    for mode, iid in runs.items():
        done = wait_terminal(api, iid, 20 * timeout_scale)
        assert done["state"] == "SUCCESS", (mode, done)
        assert {t["name"] for t in done["tasks"]} == expected[mode], mode


# --- failure handling -------------------------------------------------------------------------


def test_end_strategy_kills_the_running_sibling_within_two_seconds(
    cluster: Cluster, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    go = tmp_path / "go"
    iid = run(
        api,
        {
            "name": "fail-fast",
            "tasks": [
                sh("sibling", "sleep 300"),
                sh("breaks", f"while [ ! -e {go} ]; do sleep 0.02; done; exit 1"),
                sh("never", "true", depends_on=["breaks"]),
            ],
        },
        failure_strategy="END",
    )
    sib = wait_task(api, iid, "sibling", "RUNNING", 20 * timeout_scale)
    wait_task(api, iid, "breaks", "RUNNING", 20 * timeout_scale)
    pgid = pid_of(api, sib["id"])
    go.touch()
    wait_task(api, iid, "breaks", "FAILURE", 10 * timeout_scale)
    wait_for(lambda: group_gone(pgid), 2.0 * timeout_scale, 0.02, "the sibling's group to die")
    done = wait_terminal(api, iid, 10 * timeout_scale)
    assert done["state"] == "FAILURE"
    states = tasks(api, iid)
    assert states["sibling"]["state"] == "KILL"
    assert states.get("never", {}).get("state") in (None, "SKIPPED")


def test_continue_strategy_lets_other_branches_finish(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(
        api,
        {
            "name": "carry-on",
            "tasks": [
                sh("bad", "exit 1"),
                sh("good", "sleep 0.3"),
                sh("after_good", "true", depends_on=["good"]),
                sh("after_bad", "true", depends_on=["bad"]),
            ],
        },
        failure_strategy="CONTINUE",
    )
    done = wait_terminal(api, iid, 20 * timeout_scale)
    states = {n: t["state"] for n, t in tasks(api, iid).items()}
    assert done["state"] == "FAILURE"
    assert states == {
        "bad": "FAILURE",
        "good": "SUCCESS",
        "after_good": "SUCCESS",
        "after_bad": "SKIPPED",
    }


def test_kill_a_running_task_through_the_api(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(api, {"name": "killable", "tasks": [sh("long", "sleep 300")]})
    t = wait_task(api, iid, "long", "RUNNING", 20 * timeout_scale)
    pgid = pid_of(api, t["id"])
    r = api.post(f"/api/v1/task-instances/{t['id']}/kill")
    assert r.status_code == 202, r.text
    wait_for(lambda: group_gone(pgid), 5 * timeout_scale, 0.02, "the killed task's group to end")
    assert wait_terminal(api, iid, 10 * timeout_scale)["state"] == "FAILURE"
    assert tasks(api, iid)["long"]["state"] == "KILL"


def test_retry_with_backoff_waits_the_configured_delays(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(
        api,
        {
            "name": "backoff",
            "tasks": [
                sh(
                    "flaky",
                    "exit 1",
                    retries=3,
                    retry_interval_s=0.5,
                    retry_backoff=True,
                    retry_max_delay_s=1.5,
                )
            ],
        },
    )
    assert wait_terminal(api, iid, 30 * timeout_scale)["state"] == "FAILURE"
    rows = api.get(f"/api/v1/instances/{iid}/tasks").json()["items"]
    rows.sort(key=lambda t: t["attempt"])
    assert [t["attempt"] for t in rows] == [1, 2, 3, 4]
    from datetime import datetime

    ends = [datetime.fromisoformat(t["end_time"]) for t in rows]
    starts = [datetime.fromisoformat(t["start_time"]) for t in rows]
    gaps = [(starts[i + 1] - ends[i]).total_seconds() for i in range(3)]
    for gap, want in zip(gaps, [0.5, 1.0, 1.5], strict=True):  # 0.5, 1.0, 2.0 capped at 1.5
        assert want - 0.05 <= gap <= want + 0.75 * timeout_scale, (gaps, want)


def test_task_timeout_warn_alerts_and_lets_it_finish(
    cluster: Cluster, api: TestClient, sf: SessionFactory, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(
        api,
        {
            "name": "slow-ok",
            "tasks": [sh("slow", "sleep 1.5", timeout_s=0.5, timeout_strategy="WARN")],
        },
    )
    assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "SUCCESS"
    with sf.begin() as s:
        kinds = (
            s.execute(text("SELECT kind FROM alert WHERE workflow_instance_id = :i"), {"i": iid})
            .scalars()
            .all()
        )
    assert "TASK_TIMEOUT" in kinds


def test_task_timeout_failed_kills_and_workflow_timeout_fails_the_instance(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    iid = run(api, {"name": "too-slow", "tasks": [sh("slow", "sleep 300", timeout_s=0.5)]})
    assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "FAILURE"
    assert tasks(api, iid)["slow"]["state"] == "FAILURE"
    wf = run(
        api,
        {
            "name": "wf-timeout",
            "timeout_s": 1,
            "timeout_strategy": "WARN_FAILED",
            "tasks": [sh("slow", "sleep 300")],
        },
    )
    done = wait_terminal(api, wf, 20 * timeout_scale)
    assert done["state"] == "FAILURE" and "timed out" in (done["reason"] or ""), done
    assert tasks(api, wf)["slow"]["state"] == "KILL"


def test_dry_run_executes_nothing(
    cluster: Cluster, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    marker = tmp_path / "ran"
    iid = run(api, {"name": "dry", "tasks": [sh("touch", f"touch {marker}")]}, dry_run=True)
    assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "SUCCESS"
    assert tasks(api, iid)["touch"]["reason"] == "dry run: not executed"
    assert not marker.exists()
