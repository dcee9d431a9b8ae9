"""The pure parts of the user surface: the role order and the allow/403/404 decision, tokens and
their hashes, the failed-authentication limiter, audit ids (never a token), the tenancy choice of
an OS user, secrets kept out of the settings' repr, and every /api/v1 route carrying exactly one
authorization dependency."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.app import create_app
from api.auth import FailureLimiter, Principal, new_token, token_hash
from api.auth_audit import ids_of_answer, result_of
from api.auth_scope import AUTHZ_MARK, Target, check
from coord.zk import acl_options
from core.errors import Forbidden, NotFound
from core.roles import Action, Role, decide, role_allows
from core.settings import DbSettings, Settings, ZkSettings
from db.projects import RunAs
from worker.task_types.run_as import choose_user


def test_roles_are_ordered_and_each_action_needs_its_least_role() -> None:
    table = {
        Role.VIEWER: {Action.READ},
        Role.OPERATOR: {Action.READ, Action.RUN},
        Role.EDITOR: {Action.READ, Action.RUN, Action.DEFINE},
        Role.ADMIN: set(Action),
    }
    for role, allowed in table.items():
        assert {a for a in Action if role_allows(role, a)} == allowed, role


def test_decide_hides_other_projects_and_names_the_missing_grant() -> None:
    grants = {"default": Role.VIEWER, "etl": Role.OPERATOR}
    assert decide(Role.VIEWER, grants, "default", Action.READ).allowed
    assert decide(Role.VIEWER, grants, "etl", Action.RUN).allowed
    other = decide(Role.EDITOR, grants, "finance", Action.READ)
    assert other.status == 404 and "finance" in other.reason
    low = decide(Role.VIEWER, grants, "default", Action.RUN)
    assert low.status == 403
    assert low.reason == "needs the operator role on project 'default' (you have viewer)"
    assert decide(Role.ADMIN, {}, "anything", Action.ADMIN).allowed
    glob = decide(Role.EDITOR, grants, None, Action.ADMIN)
    assert glob.status == 403 and "admin" in glob.reason
    assert decide(Role.VIEWER, {}, None, Action.READ).allowed


def test_check_turns_verdicts_into_404_and_403_and_lets_owners_through() -> None:
    viewer = Principal(7, "v", Role.VIEWER, grants={"default": Role.VIEWER})
    with pytest.raises(NotFound, match="workflow 3 not found"):
        check(viewer, Action.READ, Target("workflow", {}, "other", "workflow 3 not found"))
    with pytest.raises(NotFound, match="workflow 4 not found"):
        check(viewer, Action.READ, Target("workflow", {}, None, "workflow 4 not found"))
    with pytest.raises(Forbidden, match="needs the editor role on project 'default'"):
        check(viewer, Action.DEFINE, Target("workflow", {}, "default", "x"))
    own = Target("user", {}, None, "user 7 not found", owner_id=7, global_=True)
    check(viewer, Action.ADMIN, own)  # its own tokens: allowed
    someone = Target("user", {}, None, "user 8 not found", owner_id=8, global_=True)
    with pytest.raises(Forbidden, match="needs the admin role"):
        check(viewer, Action.ADMIN, someone)


def test_tokens_are_32_random_bytes_and_only_their_sha256_is_kept() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("dkt_") and len(a) >= 4 + 43
    assert token_hash(a) == hashlib.sha256(a.encode()).hexdigest()
    assert a not in token_hash(a)


def test_the_limiter_blocks_an_address_after_the_limit_until_the_window_passes() -> None:
    lim = FailureLimiter(limit=3, window_s=10)
    for i in range(3):
        assert lim.retry_after("1.2.3.4", now=100 + i) is None
        lim.fail("1.2.3.4", now=100 + i)
    assert lim.retry_after("1.2.3.4", now=103) == pytest.approx(7)
    assert lim.retry_after("5.6.7.8", now=103) is None  # another address is not affected
    assert lim.retry_after("1.2.3.4", now=110.5) is None  # the first failure left the window


def test_audit_takes_ids_from_an_answer_never_a_token() -> None:
    token = new_token()
    body = f'{{"id": 5, "token": "{token}", "user_id": 2, "instance_ids": [1, 2]}}'.encode()
    ids = ids_of_answer(body, "application/json")
    assert ids == {"id": 5, "instance_ids": [1, 2]}
    assert token not in repr(ids)
    assert ids_of_answer(b"not json", "application/json") == {}
    assert [result_of(s) for s in (201, 401, 403, 404, 429, 503)] == [
        "ok",
        "denied",
        "denied",
        "refused",
        "denied",
        "error",
    ]


def test_the_tenancy_choice_of_an_os_user() -> None:
    etl = RunAs("etl", "etl", ("etl", "loader"))
    plain = RunAs("default", None, ())
    assert choose_user(plain, None, [], "root").user is None  # the worker's own user
    assert choose_user(etl, None, ["etl"], "root").user == "etl"
    assert choose_user(etl, "loader", ["etl", "loader"], "root").user == "loader"
    refused = choose_user(etl, "root", ["etl", "root"], "root").refusal
    assert (
        refused == "run_as: OS user 'root' is not granted to project 'etl' (granted: etl, loader)"
    )
    here = choose_user(etl, None, [], "root").refusal
    assert here is not None and "which this worker does not allow" in here
    assert "worker.run_as_users: none" in here


def test_secrets_stay_out_of_the_settings_repr(tmp_path: Path) -> None:
    pw = tmp_path / "pg-password"
    pw.write_text("pg-secret-1\n")
    db = DbSettings(url="postgresql+psycopg2://u@h/db", password_file=str(pw), sslmode="require")
    assert db.connect_args() == {"password": "pg-secret-1", "sslmode": "require"}
    zk = ZkSettings(auth_password="zk-secret-2")
    assert acl_options(zk)["auth_data"] == [("digest", "dagkeeper:zk-secret-2")]
    assert acl_options(ZkSettings()) == {}
    s = Settings(data_dir=str(tmp_path), zk=zk, db=db, api={"token": "api-secret-3"})
    text = repr(s) + str(s)
    for secret in ("pg-secret-1", "zk-secret-2", "api-secret-3"):
        assert secret not in text, secret


def api_routes(app: FastAPI) -> list[tuple[str, set[str], APIRoute]]:
    """(full path, methods, route) of every API route, routers included lazily or not."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x: lazy includes
    except ImportError:
        return [(r.path, set(r.methods), r) for r in app.routes if isinstance(r, APIRoute)]
    out = []
    for rc in iter_route_contexts(app.routes):
        if isinstance(rc.original_route, APIRoute):
            out.append((str(rc.path), set(rc.methods or ()), rc.original_route))
    return out


def test_every_api_route_has_exactly_one_authorization_dependency(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=str(tmp_path)))
    missing, doubled, seen = [], [], 0
    for path, methods, route in api_routes(app):
        if not path.startswith("/api/v1/"):
            continue
        seen += 1
        marks = [d for d in route.dependant.dependencies if hasattr(d.call, AUTHZ_MARK)]
        label = f"{sorted(methods)} {path}"
        (missing if not marks else doubled if len(marks) > 1 else []).append(label)
    print(f"{seen} /api/v1 routes; without authorize(): {missing}; with two: {doubled}")
    assert seen > 50
    assert not missing and not doubled
