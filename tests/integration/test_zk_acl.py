"""ZooKeeper digest ACLs on the namespace: with credentials in the settings every znode under the
root is the credentials' only (a client without them, or with wrong ones, can neither read, create,
change nor delete anything there), a namespace made before ACLs is secured on start, and a master,
a worker and the API run a workflow with ACLs on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from api.app import create_app
from coord.zk import ZkClient
from core.settings import Settings
from core.states import WORKFLOW_TERMINAL, WorkflowState
from master.server import MasterServer
from ops.localserver import wait_for
from worker.server import WorkerServer

PASSWORD = "zk-acl-test-secret"  # noqa: S105 - a test credential


@pytest.fixture
def acl_settings(settings: Settings, tmp_path: Any) -> Settings:
    """The test's settings with the namespace's password in a 0600 file."""
    s = settings.model_copy(deep=True)
    secret = tmp_path / "zk-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    s.zk.auth_password = ""
    s.zk.auth_password_file = str(secret)
    return s


def raw_client(hosts: str, **kw: Any) -> KazooClient:
    c = KazooClient(hosts=hosts, **kw)
    c.start(timeout=15)
    return c


@pytest.fixture
def outsiders(zk_hosts: str) -> Iterator[list[KazooClient]]:
    """A client without credentials and one with the right user and a wrong password."""
    anon = raw_client(zk_hosts)
    wrong = raw_client(zk_hosts, auth_data=[("digest", "dagkeeper:not-the-password")])
    yield [anon, wrong]
    for c in (anon, wrong):
        c.stop()
        c.close()


def refused(call: Callable[[], Any]) -> bool:
    try:
        call()
    except NoAuthError:
        return True
    return False


def test_a_client_without_the_credentials_can_do_nothing_under_the_root(
    acl_settings: Settings, outsiders: list[KazooClient]
) -> None:
    assert acl_settings.zk.digest_auth() == ("dagkeeper", PASSWORD)
    zk = ZkClient(acl_settings.zk, name="acl-test")
    zk.start()  # makes the root and its containers with the digest ACL
    try:
        paths = zk.paths
        zk.client.create(paths.queue("default") + "/entry", b"{}", makepath=True)
        acl, _ = zk.client.get_acls(paths.root)
        assert [(a.id.scheme, a.perms) for a in acl] == [("digest", 31)]
        for c in outsiders:
            for path in (paths.root, paths.queue_root(), paths.queue("default") + "/entry"):
                assert refused(lambda p=path: c.get(p)), path
                assert refused(lambda p=path: c.get_children(p)), path
                assert refused(lambda p=path: c.set(p, b"x")), path
            assert refused(lambda: c.create(paths.root + "/intruder", b""))
            assert refused(lambda: c.create(paths.leases() + "/1", b"", ephemeral=True))
            assert refused(lambda: c.delete(paths.queue("default") + "/entry"))
            assert refused(lambda: c.delete(paths.queue("default"), recursive=True))
        # the owner still sees everything, untouched
        assert zk.client.get_children(paths.queue("default")) == ["entry"]
        assert zk.client.exists(paths.root + "/intruder") is None
    finally:
        zk.stop()


def test_a_namespace_made_before_acls_is_secured_on_start(
    acl_settings: Settings, zk_hosts: str, outsiders: list[KazooClient]
) -> None:
    root = acl_settings.zk.root
    old = raw_client(zk_hosts)  # an older cluster: everything open
    try:
        old.create(f"{root}/queue/default/0_1_2_3", b"{}", makepath=True)
        old.create(f"{root}/nodes/masters", b"", makepath=True)
    finally:
        old.stop()
        old.close()
    anon = outsiders[0]
    assert anon.get(f"{root}/queue/default/0_1_2_3")[0] == b"{}"  # open before
    zk = ZkClient(acl_settings.zk, name="acl-upgrade")
    zk.start()
    try:
        assert zk.client.get_children(f"{root}/queue/default") == ["0_1_2_3"]
        for path in (root, f"{root}/queue", f"{root}/queue/default/0_1_2_3"):
            assert refused(lambda p=path: anon.get(p)), path
        assert zk.secure_namespace() == 0  # once: nothing more to change
    finally:
        zk.stop()


class _Threads:
    def __init__(self) -> None:
        self.running: list[tuple[threading.Event, threading.Thread, Callable[[], None]]] = []

    def serve(self, loop: Callable[[threading.Event], None], stop: Callable[[], None]) -> None:
        ev = threading.Event()
        t = threading.Thread(target=loop, args=(ev,), daemon=True)
        t.start()
        self.running.append((ev, t, stop))

    def close(self) -> None:
        for ev, t, stop in reversed(self.running):
            ev.set()
            t.join(timeout=15)
            stop()


def test_the_cluster_runs_a_workflow_with_acls_on(
    acl_settings: Settings, outsiders: list[KazooClient], timeout_scale: float
) -> None:
    threads = _Threads()
    try:
        m = MasterServer(acl_settings)
        m.start()
        threads.serve(m.serve_forever, m.stop)
        w = WorkerServer(acl_settings)
        w.start()
        threads.serve(w.serve_forever, lambda: w.stop(grace=0))
        s = acl_settings.model_copy(deep=True)
        s.api.token = "acl-test-token"  # noqa: S105
        with TestClient(create_app(s)) as api:
            api.headers["Authorization"] = "Bearer acl-test-token"
            spec = {
                "name": "acl-chain",
                "tasks": [
                    {"name": "a", "type": "SHELL", "command": "echo a"},
                    {"name": "b", "type": "SHELL", "command": "echo b", "depends_on": ["a"]},
                ],
            }
            wid = api.post("/api/v1/workflows", json=spec).json()["id"]
            iid = api.post(f"/api/v1/workflows/{wid}/runs", json={}).json()["instance_id"]

            def done() -> dict[str, Any]:
                inst = api.get(f"/api/v1/instances/{iid}").json()
                return inst if inst["state"] in WORKFLOW_TERMINAL else {}

            inst = wait_for(done, 60 * timeout_scale, 0.1, f"instance {iid}")
            assert inst["state"] == WorkflowState.SUCCESS, inst
            cluster = api.get("/api/v1/cluster").json()
            assert len(cluster["masters"]) == 1 and len(cluster["workers"]) == 1
        anon = outsiders[0]
        assert refused(lambda: anon.get_children(acl_settings.zk.root + "/nodes/masters"))
    finally:
        threads.close()
