"""The web UI's read views on real PostgreSQL: the allowed actions agree with what db/control.py
does in every instance and attempt state (same refusals, word for word), instances page by id
cursor with filters and a capped count, workflows carry their last runs, backfills their
progress."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from support import api_client

from api import ui_actions
from core.errors import Conflict
from core.settings import DbSettings, Settings
from core.spec import parse_workflow_spec
from core.states import TaskState, WorkflowState
from db import control, runs
from db import ui_views as q
from db.definitions import create_workflow
from db.engine import SessionFactory, make_engine, make_session_factory

W, T = WorkflowState, TaskState
CONTROL = {
    "stop": control.stop,
    "pause": control.pause,
    "resume": control.resume,
    "rerun": control.rerun,
    "recover-failed": control.recover_failed,
}


@pytest.fixture
def sf(db_url: str) -> Iterator[SessionFactory]:
    engine = make_engine(DbSettings(url=db_url, managed=False), pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


def _workflow(sf: SessionFactory, name: str = "wf") -> int:
    spec = parse_workflow_spec(
        {"name": name, "tasks": [{"name": "t", "type": "SHELL", "command": "true"}]}
    )
    with sf.begin() as s:
        d, _ = create_workflow(s, spec)
        return int(d.id)


def _instance(sf: SessionFactory, wid: int, state: WorkflowState | None = None) -> int:
    with sf.begin() as s:
        iid = int(runs.submit_run(s, wid).id)
        if state is not None:
            s.execute(
                text("UPDATE workflow_instance SET state = :s WHERE id = :i"),
                {"s": state.value, "i": iid},
            )
    return iid


def _attempt(sf: SessionFactory, iid: int, name: str, state: TaskState, attempt: int = 1) -> int:
    with sf.begin() as s:
        return int(
            s.execute(
                text(
                    "INSERT INTO task_instance (workflow_instance_id, name, type, attempt, state,"
                    " priority, worker_group, spec, output, worker_id)"
                    " VALUES (:i, :n, 'SHELL', :a, :s, 2, 'default', '{}', '{}', 'w-1')"
                    " RETURNING id"
                ),
                {"i": iid, "n": name, "a": attempt, "s": state.value},
            ).scalar_one()
        )


def _try(sf: SessionFactory, call: object) -> ui_actions.Allowed:
    """What the real request does, rolled back: accepted, a no-op, or a Conflict's message."""
    with sf() as s:
        try:
            done = call(s)  # type: ignore[operator]
        except Conflict as exc:
            return ui_actions.Allowed(False, exc.message)
        finally:
            s.rollback()
    if done.action.startswith("already"):
        return ui_actions.Allowed(False, f"instance {done.instance_id}: {done.action}")
    return ui_actions.Allowed(True)


def test_instance_actions_agree_with_the_control_requests(sf: SessionFactory) -> None:
    wid = _workflow(sf)
    for state in WorkflowState:
        iid = _instance(sf, wid, state)
        with sf.begin() as s:  # as if a master had taken the start request
            s.execute(text("DELETE FROM command WHERE instance_id = :i"), {"i": iid})
        predicted = ui_actions.instance_actions(iid, state.value)
        for action, fn in CONTROL.items():
            real = _try(sf, lambda s, fn=fn, iid=iid: fn(s, iid))
            assert predicted[action] == real, (state, action, predicted[action], real)


def test_a_waiting_command_holds_the_next_one(sf: SessionFactory) -> None:
    if not hasattr(control, "pending_commands"):
        pytest.skip("db/control.py does not refuse a request behind a waiting command yet")
    iid = _instance(sf, _workflow(sf), W.PAUSE)  # its start request is still waiting
    with sf.begin() as s:
        waiting = control.pending_commands(s, [iid])[iid]
    pending = ui_actions.Pending(waiting.id, waiting.action)
    predicted = ui_actions.instance_actions(iid, W.PAUSE.value, pending)
    for action, fn in CONTROL.items():
        real = _try(sf, lambda s, fn=fn: fn(s, iid))
        assert predicted[action] == real, (action, predicted[action], real)
    assert not predicted["resume"].allowed and predicted["stop"].allowed


def test_task_actions_agree_with_kill_and_force_success(sf: SessionFactory) -> None:
    iid = _instance(sf, _workflow(sf), W.RUNNING)
    refs = []
    for st in TaskState:
        tid = _attempt(sf, iid, f"t-{st.value.lower()}", st)
        refs.append(ui_actions.AttemptRef(tid, f"t-{st.value.lower()}", st.value, 1))
    old = _attempt(sf, iid, "retried", T.FAILURE, 1)
    new = _attempt(sf, iid, "retried", T.FAILURE, 2)
    refs += [
        ui_actions.AttemptRef(old, "retried", "FAILURE", 1),
        ui_actions.AttemptRef(new, "retried", "FAILURE", 2),
    ]
    predicted = ui_actions.task_actions(refs)
    for r in refs:
        kill = _try(sf, lambda s, r=r: control.kill_task(s, r.id, True))
        force = _try(sf, lambda s, r=r: control.force_success(s, r.id))
        assert predicted[r.id]["kill"] == kill, (r, predicted[r.id]["kill"], kill)
        assert predicted[r.id]["force-success"] == force, (r, predicted[r.id], force)
    assert not predicted[old]["force-success"].allowed and predicted[new]["force-success"].allowed


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with api_client(settings) as client:
        yield client


def test_instances_page_by_cursor_with_filters(api: TestClient, sf: SessionFactory) -> None:
    a, b = _workflow(sf, "a"), _workflow(sf, "b")
    ids = [_instance(sf, a if i % 2 else b, W.SUCCESS if i % 3 else W.FAILURE) for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3} if cursor is None else {"limit": 3, "before_id": cursor}
        r = api.get("/api/v1/ui/instances", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == 7 and page["total_exact"] is True
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_before_id"]
        if cursor is None:
            break
        assert cursor == page["items"][-1]["id"]
    assert seen == sorted(ids, reverse=True)

    only_a = api.get("/api/v1/ui/instances", params={"workflow_id": a}).json()
    assert {i["workflow_name"] for i in only_a["items"]} == {"a"} and only_a["total"] == 3
    failed = api.get("/api/v1/ui/instances", params={"state": "failure"}).json()
    assert [i["id"] for i in failed["items"]] == [ids[6], ids[3], ids[0]]

    now = datetime.now(UTC)
    within = api.get(
        "/api/v1/ui/instances",
        params={
            "since": (now - timedelta(hours=1)).isoformat(),
            "until": (now + timedelta(hours=1)).isoformat(),
            "limit": 4,
        },
    ).json()
    assert [i["id"] for i in within["items"]] == sorted(ids, reverse=True)[:4]
    rest = api.get(
        "/api/v1/ui/instances",
        params={
            "since": (now - timedelta(hours=1)).isoformat(),
            "before_id": within["next_before_id"],
        },
    ).json()
    assert [i["id"] for i in rest["items"]] == sorted(ids, reverse=True)[4:]
    later = api.get(
        "/api/v1/ui/instances", params={"since": (now + timedelta(hours=1)).isoformat()}
    )
    assert later.json()["items"] == [] and later.json()["next_before_id"] is None

    bad = api.get("/api/v1/ui/instances", params={"since": "2026-01-02T00:00:00"})
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("since:")
    bad = api.get(
        "/api/v1/ui/instances",
        params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    )
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("until:")


def test_count_stops_at_its_cap(sf: SessionFactory) -> None:
    wid = _workflow(sf)
    for _ in range(5):
        _instance(sf, wid)
    with sf.begin() as s:
        assert q.count_capped(s, q.InstanceFilter(), cap=3) == (3, False)
        assert q.count_capped(s, q.InstanceFilter(), cap=5) == (5, True)


def test_workflows_with_last_runs_and_the_instance_view(
    api: TestClient, sf: SessionFactory
) -> None:
    wid = _workflow(sf, "dots")
    first = _instance(sf, wid, W.FAILURE)
    second = _instance(sf, wid, W.SUCCESS)
    with sf.begin() as s:  # as if a master had taken their start requests
        s.execute(text("DELETE FROM command WHERE instance_id = ANY(:i)"), {"i": [first, second]})
    never = _workflow(sf, "never")
    body = api.get("/api/v1/ui/workflows", params={"runs": 5}).json()
    by_name = {w["name"]: w for w in body["items"]}
    assert [(r["id"], r["state"]) for r in by_name["dots"]["last_runs"]] == [
        (second, "SUCCESS"),
        (first, "FAILURE"),
    ]
    assert by_name["never"]["last_runs"] == [] and by_name["never"]["id"] == never

    view = api.get(f"/api/v1/ui/instances/{first}").json()
    assert view["instance"]["id"] == first and view["instance"]["state"] == "FAILURE"
    assert view["actions"]["recover-failed"] == {"allowed": True, "reason": None}
    assert view["actions"]["stop"] == {
        "allowed": False,
        "reason": f"cannot stop instance {first}: it is FAILURE; it has already finished",
    }
    assert api.get("/api/v1/ui/instances/999999").status_code == 404


def test_backfills_with_progress(api: TestClient, sf: SessionFactory) -> None:
    wid = _workflow(sf, "bf")
    r = api.post(
        f"/api/v1/workflows/{wid}/runs",
        json={
            "backfill": {
                "dates": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]
            }
        },
    )
    assert r.status_code == 202, r.text
    first = r.json()["instance_id"]
    with sf.begin() as s:
        s.execute(
            text("UPDATE workflow_instance SET state = :s WHERE id = :i"),
            {"s": W.FAILURE.value, "i": first},
        )
    page = api.get("/api/v1/ui/backfills", params={"workflow_id": wid}).json()
    assert page["total"] == 1
    (b,) = page["items"]
    assert b["workflow_name"] == "bf" and b["mode"] == "SERIAL"
    assert (b["total"], b["submitted"], b["finished"], b["failed"]) == (3, 1, 1, 1)
