"""Tenancy on workers: a SHELL task of a project mapped to an OS user the worker allows runs as that
user (``id -un`` in its log), a project mapped to a user the worker does not allow fails with the
reason in the task's log, a project without a user runs as the worker's, and a task cannot
choose a user its project was not granted."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from core.states import WORKFLOW_TERMINAL, WorkflowState
from master.server import MasterServer
from ops.localserver import wait_for
from worker.server import WorkerServer

BOOT = "bootstrap-token-of-the-tenancy-tests"  # noqa: S105
TENANT_USER, REFUSED_USER = "nobody", "daemon"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the worker must run as root to switch users (setpriv/runuser)"
    if not (shutil.which("setpriv") or shutil.which("runuser")):
        return "neither setpriv nor runuser is installed"
    for user in (TENANT_USER, REFUSED_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"no OS user {user!r} on this machine"
    return None


WHY_NOT = _why_not()
if WHY_NOT:
    print(f"test_auth_tenancy: skipped: {WHY_NOT}")
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))


@pytest.fixture
def tenancy(settings: Settings) -> Iterator[tuple[Settings, TestClient]]:
    """A master, a worker allowing OS user 'nobody' (working directories it can enter) and the
    API, serving in threads."""
    s = settings.model_copy(deep=True)
    exec_dir = Path(tempfile.mkdtemp(prefix="dk-exec-"))
    exec_dir.chmod(0o711)
    s.worker.exec_dir = str(exec_dir)
    s.worker.run_as_users = [TENANT_USER]
    s.api.token = BOOT
    stops: list[tuple[threading.Event, threading.Thread, Callable[[], None]]] = []

    def serve(loop: Callable[[threading.Event], None], stop: Callable[[], None]) -> None:
        ev = threading.Event()
        t = threading.Thread(target=loop, args=(ev,), daemon=True)
        t.start()
        stops.append((ev, t, stop))

    try:
        m = MasterServer(s)
        m.start()
        serve(m.serve_forever, m.stop)
        w = WorkerServer(s)
        w.start()
        serve(w.serve_forever, lambda: w.stop(grace=0))
        with TestClient(create_app(s)) as api:
            api.headers["Authorization"] = f"Bearer {BOOT}"
            yield s, api
    finally:
        for ev, t, stop in reversed(stops):
            ev.set()
            t.join(timeout=15)
            stop()
        shutil.rmtree(exec_dir, ignore_errors=True)


def run(api: TestClient, project: str, command: str, timeout: float) -> tuple[str, str]:
    """Define and run a one-task workflow in ``project``: its final state and the task's log."""
    body = {"name": f"who-{project}", "project": project,
            "tasks": [{"name": "who", "type": "SHELL", "command": command}]}  # fmt: skip
    r = api.post("/api/v1/workflows", json=body)
    assert r.status_code == 201, r.text
    iid = api.post(f"/api/v1/workflows/{r.json()['id']}/runs", json={}).json()["instance_id"]

    def done() -> dict[str, Any]:
        inst = api.get(f"/api/v1/instances/{iid}").json()
        return inst if inst["state"] in WORKFLOW_TERMINAL else {}

    inst = wait_for(done, timeout, 0.1, f"instance {iid} of project {project}")
    tid = inst["tasks"][0]["id"]

    def log_lines() -> list[str]:
        got = api.get(f"/api/v1/task-instances/{tid}/log").json()
        return list(got["lines"]) if got.get("complete") else []

    lines = wait_for(log_lines, timeout, 0.1, f"the log of task {tid}")
    return inst["state"], "\n".join(lines)


def test_shell_tasks_run_as_their_projects_os_user_or_are_refused(
    tenancy: tuple[Settings, TestClient], timeout_scale: float
) -> None:
    _, api = tenancy
    t = 60 * timeout_scale
    for name, user in (("tenant", TENANT_USER), ("unmapped", REFUSED_USER)):
        r = api.post("/api/v1/projects", json={"name": name, "run_as_user": user})
        assert r.status_code == 201 and r.json()["os_users"] == [user], r.text
    state, log = run(api, "tenant", "id -un; touch made-here && ls -l made-here", t)
    assert state == WorkflowState.SUCCESS, log
    assert log.splitlines()[0] == TENANT_USER, log
    assert f" {TENANT_USER} " in log  # the file it made in its working directory is its own
    state, log = run(api, "default", "id -un", t)
    assert state == WorkflowState.SUCCESS and log.splitlines()[0] == "root", log
    state, log = run(api, "unmapped", "id -un", t)
    assert state == WorkflowState.FAILURE, log
    assert (
        f"cannot start the task: project 'unmapped' runs SHELL tasks as OS user "
        f"'{REFUSED_USER}', which this worker does not allow (worker.run_as_users: "
        f"{TENANT_USER})"
    ) in log
    assert "root" not in log.split("cannot start")[0]
    # a task cannot choose a user its project was not granted
    body = {"name": "escape", "project": "tenant",
            "tasks": [{"name": "x", "type": "SHELL", "command": "id", "run_as": "root"}]}  # fmt: skip
    r = api.post("/api/v1/workflows", json=body)
    assert r.status_code == 422 and "run_as" in r.json()["error"]["message"], r.text
