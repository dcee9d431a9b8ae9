"""Authorization on a real database: a walk of the OpenAPI schema (every /api/v1 route answers 401
without a token, every mutating route 403 for a viewer, every route on a resource of another
project 404), role tests per role for define, run, stop, kill, schedule, datasource and user
management, and the audit rows those requests left (actor, action, result; no secret)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from core.settings import Settings
from core.states import TaskState

BOOT = "bootstrap-token-of-the-auth-tests"  # noqa: S105
DS_PASSWORD = "datasource-password-never-in-audit"  # noqa: S105
MUTATING = {"post", "put", "patch", "delete"}
# path parameters naming a project's resource (a route with others is a global one)
PROJECT_PARAMS = {
    "workflow_id", "instance_id", "task_instance_id", "schedule_id", "backfill_id",
    "datasource_id", "name", "version",
}  # fmt: skip
# creates of a project's resource (the body names the project, or a workflow of it)
PROJECT_CREATES = {"/workflows", "/workflows/import", "/schedules", "/datasources", "/task-groups"}


def spec(name: str, command: str = "echo hi") -> dict[str, Any]:
    return {"name": name, "tasks": [{"name": "a", "type": "SHELL", "command": command}]}


@dataclass
class World:
    """The resources of one project, by path parameter name."""

    params: dict[str, Any] = field(default_factory=dict)


class Api:
    def __init__(self, client: TestClient, db_url: str) -> None:
        self.c, self.db_url = client, db_url

    def call(self, method: str, path: str, token: str | None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kw: dict[str, Any] = {"headers": headers}
        if method.lower() in MUTATING and body is not None:
            kw["json"] = body
        return self.c.request(method.upper(), "/api/v1" + path, **kw)

    def ok(self, method: str, path: str, body: Any = None, token: str = BOOT) -> Any:
        r = self.call(method, path, token, body)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def user(self, name: str, role: str, projects: list[str] | None = None) -> tuple[int, str]:
        body: dict[str, Any] = {"name": name, "role": role}
        if projects is not None:
            body["projects"] = projects
        uid = self.ok("post", "/users", body)["id"]
        return uid, self.ok("post", f"/users/{uid}/tokens", {"name": "t"})["token"]


@pytest.fixture
def api(settings: Settings, db_url: str) -> Iterator[Api]:
    s = settings.model_copy(deep=True)
    s.api.token = BOOT
    with TestClient(create_app(s)) as client:
        yield Api(client, db_url)


def attempt(db_url: str, instance_id: int, state: TaskState, name: str = "a") -> int:
    """A task attempt row of an instance (no master runs in these tests)."""
    eng = create_engine(db_url)
    try:
        with eng.begin() as c:
            return int(
                c.execute(
                    text(
                        "INSERT INTO task_instance (workflow_instance_id, name, type, attempt,"
                        " state, priority, worker_group, spec, output)"
                        " VALUES (:i, :n, 'SHELL', 1, :s, 2, 'default', '{}', '{}') RETURNING id"
                    ),
                    {"i": instance_id, "s": state.value, "n": name},
                ).scalar_one()
            )
    finally:
        eng.dispose()


def build(api: Api, db_url: str, project: str, tag: str) -> World:
    """A workflow with two instances (one with a queued and a failed attempt), a schedule, a
    backfill, a datasource and a task group, all in ``project``."""
    w = World()
    body = {**spec(f"wf-{tag}"), "project": project}
    wid = api.ok("post", "/workflows", body)["id"]
    iid = api.ok("post", f"/workflows/{wid}/runs", {})["instance_id"]
    w.params.update(workflow_id=wid, version=1, instance_id=iid)
    w.params["task_instance_id"] = attempt(db_url, iid, TaskState.SUBMITTED)
    w.params["failed_attempt"] = attempt(db_url, iid, TaskState.FAILURE, "b")
    sched = {"workflow_id": wid, "cron": "0 0 * * *", "enabled": False}
    w.params["schedule_id"] = api.ok("post", "/schedules", sched)["id"]
    bf = {"backfill": {"dates": ["2026-01-01T00:00:00Z"]}}
    w.params["backfill_id"] = api.ok("post", f"/workflows/{wid}/runs", bf)["backfill_id"]
    ds = {"name": f"ds-{tag}", "kind": "POSTGRESQL", "host": "db.example", "user": "u",
          "password": DS_PASSWORD, "project": project}  # fmt: skip
    w.params["datasource_id"] = api.ok("post", "/datasources", ds)["id"]
    group = {"name": f"tg-{tag}", "capacity": 2, "project": project}
    w.params["task_group"] = api.ok("post", "/task-groups", group)["name"]
    w.params["project"] = project
    return w


@pytest.fixture
def worlds(api: Api, db_url: str) -> tuple[World, World]:
    api.ok("post", "/projects", {"name": "other"})
    return build(api, db_url, "default", "d"), build(api, db_url, "other", "o")


def fill(path: str, w: World, globals_: dict[str, Any]) -> str | None:
    """``path`` with its parameters taken from ``w`` (None: a parameter nobody knows)."""

    def one(m: re.Match[str]) -> str:
        p = m.group(1)
        if p == "name":
            return str(w.params["project" if path.startswith("/projects") else "task_group"])
        value = w.params.get(p, globals_.get(p))
        if value is None:
            raise KeyError(p)
        return str(value)

    try:
        return re.sub(r"\{([a-z_]+)\}", one, path)
    except KeyError:
        return None


def routes(api: Api) -> list[tuple[str, str, set[str]]]:
    doc = api.c.app.openapi()  # type: ignore[attr-defined]
    out = []
    for full, ops in doc["paths"].items():
        if full.startswith("/api/v1/"):
            params = set(re.findall(r"\{([a-z_]+)\}", full))
            out += [(m, full.removeprefix("/api/v1"), params) for m in ops]
    return sorted(out)


def body_for(method: str, path: str, w: World) -> Any:
    if method == "post" and path == "/schedules":
        return {"workflow_id": w.params["workflow_id"], "cron": "0 0 * * *"}
    if method in ("post", "put") and not re.search(r"\{", path):
        return {"project": w.params["project"]}
    return {}


def test_every_route_answers_401_403_and_404_as_the_schema_says(
    api: Api, worlds: tuple[World, World]
) -> None:
    mine, theirs = worlds
    viewer_id, viewer = api.user("walk-viewer", "viewer")
    victim_id, _ = api.user("walk-victim", "editor")
    victim_token = api.ok("post", f"/users/{victim_id}/tokens", {"name": "x"})["id"]
    _, editor = api.user("walk-editor", "editor")  # default only: "other" is not its project
    known = {"user_id": victim_id, "token_id": victim_token, "user": "walk-victim",
             "channel_id": 1, "group_id": 1, "alert_id": 1}  # fmt: skip
    checked = {"401": 0, "403": 0, "404": 0}
    skipped: list[str] = []
    for method, path, params in routes(api):
        url = fill(path, mine, known)
        assert url is not None, f"{method} {path}: a parameter the walk does not know"
        body = body_for(method, path, mine)
        r = api.call(method, url, None, body)
        assert r.status_code == 401, f"{method} {url} without a token: {r.status_code} {r.text}"
        assert r.json()["error"]["code"] == "unauthorized"
        checked["401"] += 1
        if method in MUTATING:
            r = api.call(method, url, viewer, body)
            assert r.status_code == 403, f"{method} {url} as viewer: {r.status_code} {r.text}"
            assert "needs the" in r.json()["error"]["message"], r.text
            checked["403"] += 1
        scoped = params - {"user"} if path.startswith("/projects/") else params
        create = method == "post" and path in PROJECT_CREATES
        if (scoped and scoped <= PROJECT_PARAMS) or create:
            other_url = fill(path, theirs, known)
            assert other_url is not None
            r = api.call(method, other_url, editor, body_for(method, path, theirs))
            assert r.status_code == 404, (
                f"{method} {other_url} of 'other': {r.status_code} {r.text}"
            )
            message = r.json()["error"]["message"]
            if create and path != "/schedules":
                assert message == "project 'other' not found", message
            else:  # the same answer as for an id that does not exist: nothing of "other" shows
                assert "other" not in message or path.startswith("/projects/"), message
            checked["404"] += 1
        elif params or method in MUTATING:
            skipped.append(f"{method.upper()} {path}")
    print(f"checked {checked}; no 404 check (not a project's resource): {skipped}")
    assert checked["401"] > 60 and checked["403"] > 30 and checked["404"] > 30
    assert viewer_id > 0


@dataclass(frozen=True)
class Act:
    what: str
    method: str
    least: str  # the least role allowed
    path: Callable[[Api, World], str]
    body: Callable[[World, str], Any] = lambda w, role: {}


def fresh_workflow(api: Api, w: World) -> int:
    fresh_workflow.n = getattr(fresh_workflow, "n", 0) + 1  # type: ignore[attr-defined]
    return int(api.ok("post", "/workflows", spec(f"fresh-{fresh_workflow.n}"))["id"])  # type: ignore[attr-defined]


def fresh_instance(api: Api, w: World) -> int:
    return int(api.ok("post", f"/workflows/{w.params['workflow_id']}/runs", {})["instance_id"])


def fresh_attempt(api: Api, w: World, state: TaskState) -> int:
    return attempt(api.db_url, fresh_instance(api, w), state)


def fresh_schedule(api: Api, w: World) -> int:
    body = {"workflow_id": w.params["workflow_id"], "cron": "0 1 * * *", "enabled": False}
    return int(api.ok("post", "/schedules", body)["id"])


def fresh_datasource(api: Api, w: World) -> int:
    fresh_datasource.n = getattr(fresh_datasource, "n", 0) + 1  # type: ignore[attr-defined]
    body = {"name": f"fresh-ds-{fresh_datasource.n}", "kind": "MYSQL", "host": "h"}  # type: ignore[attr-defined]
    return int(api.ok("post", "/datasources", body)["id"])


ACTS = [
    Act("read", "get", "viewer", lambda a, w: f"/workflows/{w.params['workflow_id']}"),
    Act("define", "post", "editor", lambda a, w: "/workflows", lambda w, role: spec(f"defined-by-{role}")),
    Act("define", "put", "editor", lambda a, w: f"/workflows/{w.params['workflow_id']}",
        lambda w, role: spec("wf-d", f"echo {role}")),
    Act("define", "delete", "editor", lambda a, w: f"/workflows/{fresh_workflow(a, w)}"),
    Act("run", "post", "operator", lambda a, w: f"/workflows/{w.params['workflow_id']}/runs"),
    Act("stop", "post", "operator", lambda a, w: f"/instances/{fresh_instance(a, w)}/stop"),
    Act("kill", "post", "operator",
        lambda a, w: f"/task-instances/{fresh_attempt(a, w, TaskState.SUBMITTED)}/kill"),
    Act("kill", "post", "operator",
        lambda a, w: f"/task-instances/{fresh_attempt(a, w, TaskState.FAILURE)}/force-success"),
    Act("schedule", "post", "editor", lambda a, w: "/schedules",
        lambda w, role: {"workflow_id": w.params["workflow_id"], "cron": "0 2 * * *"}),
    Act("schedule", "put", "editor", lambda a, w: f"/schedules/{w.params['schedule_id']}",
        lambda w, role: {"cron": "0 3 * * *"}),
    Act("schedule", "delete", "editor", lambda a, w: f"/schedules/{fresh_schedule(a, w)}"),
    Act("datasource", "post", "editor", lambda a, w: "/datasources",
        lambda w, role: {"name": f"ds-{role}", "kind": "POSTGRESQL", "host": "h",
                         "password": DS_PASSWORD}),
    Act("datasource", "put", "editor", lambda a, w: f"/datasources/{w.params['datasource_id']}",
        lambda w, role: {"description": f"changed by {role}"}),
    Act("datasource", "delete", "editor", lambda a, w: f"/datasources/{fresh_datasource(a, w)}"),
    Act("users", "post", "admin", lambda a, w: "/users",
        lambda w, role: {"name": f"made-by-{role}", "role": "viewer"}),
    Act("users", "get", "admin", lambda a, w: "/users"),
    Act("users", "post", "admin", lambda a, w: "/projects",
        lambda w, role: {"name": f"p-{role}"}),
    Act("users", "put", "admin", lambda a, w: "/projects/default/grants/bystander",
        lambda w, role: {"role": "operator"}),
    Act("users", "get", "admin", lambda a, w: "/audit"),
]  # fmt: skip
RANK = {"viewer": 1, "operator": 2, "editor": 3, "admin": 4}


def test_each_role_may_do_what_its_rank_allows_and_every_mutation_is_audited(
    api: Api, worlds: tuple[World, World]
) -> None:
    mine = worlds[0]
    api.user("bystander", "viewer")
    tokens = {role: api.user(f"role-{role}", role)[1] for role in ("viewer", "operator", "editor")}
    tokens["admin"] = api.user("role-admin", "admin")[1]
    expected: list[tuple[str, str, str, int]] = []  # (actor, method, path, status)
    for role in ("viewer", "operator", "editor", "admin"):
        for act in ACTS:
            path = act.path(api, mine)
            r = api.call(act.method, path, tokens[role], act.body(mine, role))
            allowed = RANK[role] >= RANK[act.least]
            if allowed:
                assert r.status_code < 400, f"{role} {act.what} {act.method} {path}: {r.text}"
            else:
                assert r.status_code == 403, f"{role} {act.what} {act.method} {path}: {r.text}"
                assert f"needs the {act.least} role" in r.json()["error"]["message"]
            if act.method in MUTATING:
                expected.append((f"role-{role}", act.method.upper(), path, r.status_code))
    # the audit log: one row per mutation, with its actor, result and status
    rows = api.ok("get", "/audit?limit=1000")["items"]
    for actor, method, path, status in expected:
        found = [r for r in rows if r["actor"] == actor and r["method"] == method
                 and r["path"] == "/api/v1" + path and r["status"] == status]  # fmt: skip
        assert len(found) == 1, (actor, method, path, status, found)
        assert found[0]["result"] == ("ok" if status < 400 else "denied")
        assert found[0]["client"] and found[0]["action"]
    denied = api.ok("get", "/audit?actor=role-viewer&action=create_workflow")["items"]
    assert denied and all(r["result"] == "denied" for r in denied)
    prefixed = api.ok("get", "/audit?actor=role-viewer&action=create_*&limit=1000")["items"]
    wanted = {"create_workflow", "create_schedule", "create_datasource", "create_user"}
    assert wanted <= {r["action"] for r in prefixed} and all(
        r["action"].startswith("create_") for r in prefixed
    )
    # no secret in any row: no token, no datasource password
    everything = json.dumps(api.ok("get", "/audit?limit=1000"))
    for secret in (DS_PASSWORD, BOOT, *tokens.values()):
        assert secret not in everything


def test_lists_show_only_the_callers_projects(api: Api, worlds: tuple[World, World]) -> None:
    mine, theirs = worlds
    _, viewer = api.user("lister", "viewer")
    for path, key in (("/workflows", "id"), ("/instances", "workflow_id"),
                      ("/schedules", "workflow_id"), ("/datasources", "id"),
                      ("/task-groups", "name"), ("/ui/workflows", "id"),
                      ("/ui/instances", "workflow_id"), ("/ui/backfills", "workflow_id")):  # fmt: skip
        items = api.ok("get", path, token=viewer)["items"]
        everything = api.ok("get", path)["items"]
        assert len(items) < len(everything), path
        if key == "workflow_id":
            assert {i[key] for i in items} == {mine.params["workflow_id"]}, path
    projects = api.ok("get", "/projects", token=viewer)["items"]
    assert [p["name"] for p in projects] == ["default"]
    me = api.ok("get", "/me", token=viewer)
    assert me["role"] == "viewer" and me["bootstrap"] is False
    assert me["projects"] == [{"name": "default", "role": "viewer"}]
    boot = api.ok("get", "/me")
    assert boot["name"] == "admin" and boot["bootstrap"] is True and boot["role"] == "admin"
    assert {"name": "other", "role": "admin"} in boot["projects"]
    wf = api.ok("get", f"/workflows/{theirs.params['workflow_id']}")
    assert wf["project"] == "other"
