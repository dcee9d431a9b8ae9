"""Issue 18 with a real master and worker: a rerun waiting for a master shows as the instance's
``pending_command`` and a second request meanwhile is a 409; a command the master cannot carry
out leaves the instance's reason and an alert row, not only a log line."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text
from support import Cluster, create, start, wait_terminal

from core.states import CommandType
from db.engine import SessionFactory
from ops.localserver import wait_for


def detail(api: TestClient, iid: int) -> dict[str, Any]:
    r = api.get(f"/api/v1/instances/{iid}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_waiting_rerun_is_shown_and_a_second_request_refused_until_a_master_takes_it(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    wid = create(api, {"name": "flaky", "tasks": [{"name": "t", "command": "exit 3"}]})
    cluster.start_master()
    cluster.start_worker()
    iid = start(api, wid)
    assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "FAILURE"
    assert detail(api, iid)["pending_command"] is None
    cluster.close()  # no master: the rerun waits

    r = api.post(f"/api/v1/instances/{iid}/rerun")
    assert r.status_code == 202, r.text
    shown = detail(api, iid)
    assert shown["state"] == "FAILURE"
    pending = shown["pending_command"]
    assert pending["action"] == "rerun" and pending["type"] == CommandType.REPEAT_RUNNING.value
    for action in ("rerun", "recover-failed"):
        r = api.post(f"/api/v1/instances/{iid}/{action}")
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert f"its rerun request (command {pending['id']}) is still waiting" in err["message"]
        assert err["details"]["pending_command"] == "rerun"

    cluster.start_master()
    cluster.start_worker()

    def rerun_done() -> dict[str, Any]:
        d = detail(api, iid)
        return d if d["run_count"] == 2 and d["state"] == "FAILURE" else {}

    done = wait_for(rerun_done, 20 * timeout_scale, 0.1, f"the rerun of instance {iid}")
    assert done["pending_command"] is None
    assert [(t["attempt"], t["state"]) for t in done["tasks"]] == [(1, "FAILURE"), (2, "FAILURE")]
    assert api.post(f"/api/v1/instances/{iid}/recover-failed").status_code == 202


def test_a_command_the_master_cannot_carry_out_leaves_a_reason_and_an_alert(
    cluster: Cluster, api: TestClient, sf: SessionFactory, timeout_scale: float
) -> None:
    wid = create(api, {"name": "ok", "tasks": [{"name": "t", "command": "true"}]})
    cluster.start_master()
    cluster.start_worker()
    iid = start(api, wid)
    assert wait_terminal(api, iid, 20 * timeout_scale)["state"] == "SUCCESS"
    # a resume of an instance that is not paused: the API refuses it (409), so it is written
    # behind its back, as a request raced by another would be
    with sf.begin() as s:
        cid = s.execute(
            text(
                "INSERT INTO command (type, workflow_id, version, instance_id, priority, params)"
                " SELECT :t, workflow_id, version, id, priority, '{}' FROM workflow_instance"
                " WHERE id = :i RETURNING id"
            ),
            {"t": CommandType.RECOVER_SUSPENDED_PROCESS.value, "i": iid},
        ).scalar_one()

    def traced() -> dict[str, Any]:
        d = detail(api, iid)
        return d if d["reason"] and f"command {cid}" in d["reason"] else {}

    d = wait_for(traced, 10 * timeout_scale, 0.1, f"the trace of command {cid}")
    assert d["reason"] == (
        f"resume request (command {cid}) not carried out: the instance is SUCCESS, not PAUSE"
    )
    assert d["state"] == "SUCCESS" and d["pending_command"] is None
    alerts = api.get("/api/v1/alerts", params={"kind": "COMMAND_NOT_CARRIED_OUT"}).json()
    assert alerts["total"] == 1
    (alert,) = alerts["items"]
    assert alert["workflow_instance_id"] == iid
    assert alert["content"] == {
        "command_id": cid,
        "type": CommandType.RECOVER_SUSPENDED_PROCESS.value,
        "action": "resume",
        "reason": "the instance is SUCCESS, not PAUSE",
    }
    with sf.begin() as s:
        left = s.execute(text("SELECT count(*) FROM command")).scalar_one()
    assert left == 0


def test_a_workflow_and_task_named_in_chinese_run_and_their_log_downloads(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    wid = create(api, {"name": "每日销售", "tasks": [{"name": "抽取", "command": "echo 你好"}]})
    cluster.start_master()
    cluster.start_worker()
    iid = start(api, wid)
    done = wait_terminal(api, iid, 20 * timeout_scale)
    assert done["state"] == "SUCCESS" and done["workflow_name"] == "每日销售"
    (task,) = done["tasks"]
    r = api.get(f"/api/v1/task-instances/{task['id']}/log/download")
    assert r.status_code == 200, r.text
    assert "你好" in r.text
    quoted = "%E6%8A%BD%E5%8F%96"  # 抽取, RFC 5987
    assert (
        f"filename*=utf-8''task-{task['id']}-{quoted}-attempt-1.log"
        in (r.headers["content-disposition"])
    )
