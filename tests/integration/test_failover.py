"""Targeted fault-tolerance tests on real processes: worker kill -9, master kill -9, a SIGSTOPped
(zombie) worker, a wiped ZooKeeper, and a master killed during a failover. Each ends with the
invariants: everything terminal, one success per task, no overlapping attempts, doctor clean."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from harness import Cluster, group_alive, pid_gone
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from zk_acl import kazoo_acl

from coord.zk import registration_epoch
from ops.localserver import PostgresServer, ZookeeperServer, free_port

SESSION_S = 4


def _read(path: Path) -> str | None:
    return path.read_text().strip() or None if path.exists() else None


@contextmanager
def _own_zookeeper(
    server_root: Path, db_url: str, zk_root: str, scale: float, tag: str
) -> Iterator[tuple[ZookeeperServer, Cluster]]:
    """A private ZooKeeper (the test wipes it) and a process cluster on it; logs printed on a
    failure."""
    zk_dir = server_root / f"zk-{tag}{zk_root.replace('/', '_')}"
    zk = ZookeeperServer(zk_dir, free_port(), tick_ms=500, fsync=False)
    zk.start(timeout=60 * scale)
    c = Cluster(zk_dir / "cluster", db_url, zk.hosts, zk_root, scale, SESSION_S)
    ok = False
    try:
        yield zk, c
        ok = True
    finally:
        c.close()
        zk.stop()
        if not ok:
            print(c.logs())


def test_worker_kill9_task_rerun_on_other_worker(proc_cluster: Cluster) -> None:
    """kill -9 of the worker process alone: its guardian kills the task's process group (a
    subshell included) at once, and the task runs again on another worker."""
    c = proc_cluster
    c.up(masters=1, workers=2)
    iid = c.submit(
        [
            {
                "name": "long",
                "command": 'if [ "$DAGKEEPER_ATTEMPT" = 1 ]; then (sleep 300) & sleep 300;'
                " else sleep 1; fi",
            }
        ]
    )
    first = c.wait(lambda: c.find_attempt(iid, "long", attempt=1), 30, "attempt 1 RUNNING")
    victim, pgid = first.host, first.pid
    assert pgid and group_alive(pgid)
    killed_at = time.time()
    c.kill9(victim, with_tasks=False)  # the worker only: its tasks are left to the guardian
    c.wait(lambda: not group_alive(pgid), 2, f"process group {pgid} gone", interval=0.02)
    group_took = time.time() - killed_at
    second = c.wait(lambda: c.find_attempt(iid, "long", attempt=2), 30, "attempt 2 RUNNING")
    took = second.start_time.timestamp() - killed_at
    print(
        f"\nworker kill -9: task group gone in {group_took:.2f}s; new attempt started in"
        f" {took:.2f}s (session {SESSION_S}s)"
    )
    assert group_took < 1.0 * c.scale
    assert "killing task process groups" in c.procs[victim].log_path.read_text()
    c.wait_success(iid)
    rows = c.attempts(iid, "long")
    assert [(r.attempt, r.state) for r in rows] == [(1, "NEED_FAULT_TOLERANCE"), (2, "SUCCESS")]
    assert rows[1].host != victim
    assert took < SESSION_S + 3 * c.scale
    c.assert_invariants()


def test_master_kill9_instance_adopted(proc_cluster: Cluster) -> None:
    c = proc_cluster
    c.up(masters=2, workers=2)
    iid = c.submit(
        [
            {"name": "a", "command": "sleep 2"},
            {"name": "b", "command": "sleep 2", "depends_on": ["a"]},
            {"name": "c", "command": "sleep 2", "depends_on": ["b"]},
        ]
    )
    c.wait(lambda: c.find_attempt(iid, "a", attempt=1), 30, "a RUNNING")
    owner_name = c.wait(lambda: c.master_owning(iid), 10, "owner of the instance")
    old_owner = c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=iid)
    killed_at = time.monotonic()
    c.kill9(owner_name)

    def adopted() -> bool:
        owner = c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=iid)
        return owner != old_owner or c.state(iid) == "SUCCESS"

    c.wait(adopted, 30, "adoption", interval=0.02)
    took = time.monotonic() - killed_at
    print(f"\nmaster failover: kill -9 -> adoption in {took:.2f}s (session {SESSION_S}s)")
    c.wait_success(iid)
    alerts = c.rows("SELECT content FROM alert WHERE kind = 'MASTER_FAILOVER'")
    assert any(iid in a[0]["instances"] for a in alerts), alerts
    assert c.master_owning(iid) is not None and c.master_owning(iid) != owner_name
    for name in "abc":
        ok = [r for r in c.attempts(iid, name) if r.state == "SUCCESS"]
        assert len(ok) == 1, (name, c.attempts(iid, name))
    assert took < SESSION_S + 3 * c.scale
    c.assert_invariants()


def test_sigstopped_worker_is_fenced(proc_cluster: Cluster, tmp_path: Path) -> None:
    """A worker frozen past the session timeout: its tasks run again elsewhere; after SIGCONT its
    late reports are rejected and its task process groups are killed."""
    c = proc_cluster
    c.up(masters=1, workers=1)
    pids = tmp_path / "pids"
    pids.mkdir()
    pids.chmod(0o777)
    # "long" would run for a minute on the zombie; "short" finishes while its worker is frozen,
    # so the worker, once thawed, holds a finished attempt whose report must be rejected
    iid = c.submit(
        [
            {
                "name": "long",
                "command": f"echo $$ > {pids}/long-$DAGKEEPER_ATTEMPT; "
                'if [ "$DAGKEEPER_ATTEMPT" = 1 ]; then (sleep 300) & sleep 60; else sleep 1; fi',
            },
            {
                "name": "short",
                "command": f"echo $$ > {pids}/short-$DAGKEEPER_ATTEMPT; "
                # attempt 1 ends only once its worker is frozen (the test creates "go")
                f'if [ "$DAGKEEPER_ATTEMPT" = 1 ]; then while [ ! -e {pids}/go ]; do sleep 0.1;'
                " done; else sleep 1; fi",
            },
        ]
    )
    long1 = c.wait(lambda: c.find_attempt(iid, "long", attempt=1), 30, "long RUNNING on w1")
    c.wait(lambda: c.find_attempt(iid, "short", attempt=1), 30, "short RUNNING on w1")
    long_pid = int(c.wait(lambda: _read(pids / "long-1"), 10, "pid of long#1"))
    c.worker("w2")
    c.wait_registered(1, 2)
    c.sigstop("w1")
    stopped_at = time.time()
    (pids / "go").touch()
    l2 = c.wait(lambda: c.find_attempt(iid, "long", attempt=2), 30, "long attempt 2 RUNNING")
    c.wait(lambda: any(r.attempt == 2 for r in c.attempts(iid, "short")), 30, "short attempt 2")
    print(
        f"\nzombie worker: SIGSTOP -> new attempt in {l2.start_time.timestamp() - stopped_at:.2f}s"
    )
    assert l2.host == "w2"
    # short attempt 1 has finished meanwhile (its worker is frozen and has not reported it)
    c.wait(
        lambda: any(r.name == "short" and r.attempt == 1 for r in c.side_records()), 10, "short#1"
    )
    c.sigcont("w1")
    c.wait(lambda: pid_gone(long_pid), 10, f"zombie's task pid {long_pid} killed")
    c.wait(lambda: not group_alive(long1.pid), 10, f"zombie's task group {long1.pid} killed")
    c.wait_success(iid)
    # the thawed worker has re-registered (a new epoch) by now or soon; its stale writes failed
    c.wait_registered(1, 2)
    log = c.procs["w1"].log_path.read_text()
    for line in log.splitlines():
        if any(w in line for w in ("stale", "session lost", "no answer", "discarded")):
            print("  w1:", line[-200:])
    assert "session lost" in log or "no answer from ZooKeeper" in log, log[-3000:]
    for name in ("long", "short"):
        rows = c.attempts(iid, name)
        assert [(r.attempt, r.state) for r in rows] == [
            (1, "NEED_FAULT_TOLERANCE"),
            (2, "SUCCESS"),
        ], rows
        assert rows[0].host == "w1" and rows[1].host == "w2"
        # the zombie's late report was rejected: its attempt keeps the failover's state, no
        # exit code or output of its own, and the new attempt keeps its result
        zombie = c.rows(
            "SELECT state, exit_code, output, lease_token FROM task_instance WHERE id = :i",
            i=rows[0].id,
        )[0]
        assert (zombie.state, zombie.exit_code, zombie.output) == ("NEED_FAULT_TOLERANCE", None, {})
        assert zombie.lease_token == rows[0].lease_token
        fresh = c.rows("SELECT exit_code FROM task_instance WHERE id = :i", i=rows[1].id)[0]
        assert fresh.exit_code == 0
    assert not group_alive(long1.pid)
    c.assert_invariants()


def test_zookeeper_wiped_work_continues(
    server_root: Path, db_url: str, zk_root: str, timeout_scale: float
) -> None:
    with _own_zookeeper(server_root, db_url, zk_root, timeout_scale, "wipe") as (zk, c):
        c.up(masters=1, workers=2)
        iid = c.submit(
            [
                {"name": "a", "command": "sleep 1"},
                {"name": "b", "command": "sleep 3", "depends_on": ["a"]},
                {"name": "c", "command": "sleep 1", "depends_on": ["b"]},
                {"name": "d", "command": "sleep 1", "depends_on": ["b"]},
            ]
        )
        c.wait(lambda: c.find_attempt(iid, "b", attempt=1), 30, "b RUNNING")
        zk.stop()
        shutil.rmtree(zk.data_dir / "data")
        zk.start(timeout=60 * timeout_scale)
        wiped_at = time.monotonic()
        c.wait_success(iid, 90)
        print(f"\nZooKeeper wiped: instance finished {time.monotonic() - wiped_at:.1f}s later")
        c.wait_registered(1, 2)
        c.assert_invariants()


def _registered_epochs(hosts: str, root: str) -> dict[str, tuple[int, int]]:
    """``masters/<id>`` or ``workers/<group>/<id>`` -> (epoch from the data, czxid) of every
    registration."""
    kz = KazooClient(hosts=hosts, **kazoo_acl())
    kz.start(timeout=30)
    out: dict[str, tuple[int, int]] = {}
    try:
        members = [f"{root}/nodes/masters/{m}" for m in kz.get_children(f"{root}/nodes/masters")]
        for g in kz.get_children(f"{root}/nodes/workers"):
            members += [
                f"{root}/nodes/workers/{g}/{w}"
                for w in kz.get_children(f"{root}/nodes/workers/{g}")
            ]
        for path in members:
            try:
                raw, stat = kz.get(path)
            except NoNodeError:
                continue
            name = path.removeprefix(f"{root}/nodes/")
            out[name] = (registration_epoch(raw, stat.czxid), stat.czxid)
    finally:
        kz.stop()
        kz.close()
    return out


def test_epochs_never_repeat_after_zookeeper_wipe(
    server_root: Path, db_url: str, zk_root: str, timeout_scale: float
) -> None:
    """A wiped ZooKeeper hands out small czxids again; epochs come from PostgreSQL and keep
    growing: a master restarted on the new ensemble gets an epoch above every owner epoch and
    lease token ever recorded, and adopts the instance of its dead predecessor."""
    with _own_zookeeper(server_root, db_url, zk_root, timeout_scale, "epochs") as (zk, c):
        c.up(masters=1, workers=1)
        first = c.submit([{"name": "a", "command": "true"}, {"name": "b", "command": "true"}])
        c.wait_success(first)
        # an instance in flight when the whole cluster goes: its owner's epoch is the old one
        iid = c.submit(
            [
                {"name": "a", "command": "sleep 1"},
                {"name": "b", "command": "sleep 1", "depends_on": ["a"]},
            ]
        )
        c.wait(lambda: c.find_attempt(iid, "a", attempt=1), 30, "a RUNNING")
        before = _registered_epochs(zk.hosts, zk_root)
        c.kill9("m1")
        zk.stop()
        # every epoch recorded so far (nobody can register anew while ZooKeeper is down)
        recorded = c.one(
            "SELECT GREATEST((SELECT max(owner_epoch) FROM workflow_instance),"
            " (SELECT max(lease_token) FROM task_instance))"
        )
        shutil.rmtree(zk.data_dir / "data")
        zk.start(timeout=60 * timeout_scale)
        c.restart("m1")  # a new master process (new id) on the wiped ensemble
        c.wait_registered(1, 1, timeout=60)
        after = c.wait(
            lambda: (e := _registered_epochs(zk.hosts, zk_root)) and len(e) >= 2 and e,
            60,
            "master and worker registered on the new ensemble",
        )
        print(f"\nepochs before the wipe {before}, after {after}; max recorded {recorded}")
        for name, (epoch, czxid) in after.items():
            assert epoch > recorded, (name, epoch, recorded)
            assert epoch not in {e for e, _ in before.values()}, (name, epoch, before)
        # the czxids did start again: they would have repeated the old epochs' range
        assert min(cz for _, cz in after.values()) < max(cz for _, cz in before.values())
        c.wait_success(iid, 90)
        # adopted by the new master under its new epoch
        owner, owner_epoch = c.rows(
            "SELECT owner, owner_epoch FROM workflow_instance WHERE id = :i", i=iid
        )[0]
        assert after[f"masters/{owner}"][0] == owner_epoch, (owner, owner_epoch, after)
        c.assert_invariants()


def _log_has(c: Cluster, name: str, text: str) -> bool:
    return text in c.procs[name].log_path.read_text()


def test_registration_waits_for_postgresql(
    proc_cluster: Cluster, pg_server: PostgresServer, zk_hosts: str, zk_root: str
) -> None:
    """Without PostgreSQL there is no epoch: a master and a worker starting, and a master and a
    worker whose sessions expired, stay unregistered and retry; once it is back they register
    with new epochs and work goes on."""
    c = proc_cluster
    pg_server.stop()
    try:
        c.master("m1")
        c.worker("w1")
        c.wait(lambda: _log_has(c, "m1", "no epoch from PostgreSQL"), 30, "m1 retrying")
        c.wait(lambda: _log_has(c, "w1", "cannot reach PostgreSQL"), 30, "w1 retrying")
        assert _registered_epochs(zk_hosts, zk_root) == {}
        assert c.procs["w1"].alive
    finally:
        pg_server.start()
    c.engine.dispose()
    c.wait_registered(1, 1)
    first = _registered_epochs(zk_hosts, zk_root)
    # both sessions expire while PostgreSQL is down: re-registration waits for it
    pg_server.stop()
    try:
        c.sigstop("m1")
        c.sigstop("w1")
        time.sleep(SESSION_S + 2)  # the sessions must expire: this is the fault itself
        c.sigcont("m1")
        c.sigcont("w1")
        c.wait(lambda: _log_has(c, "m1", "cannot re-register"), 30, "m1 retrying")
        c.wait(lambda: _log_has(c, "w1", "cannot re-register"), 30, "w1 retrying")
        assert _registered_epochs(zk_hosts, zk_root) == {}
    finally:
        pg_server.start()
    c.engine.dispose()
    c.wait_registered(1, 1)
    second = c.wait(
        lambda: (e := _registered_epochs(zk_hosts, zk_root)) and len(e) == 2 and e,
        30,
        "both registered again",
    )
    print(f"\nepochs before {first}, after PostgreSQL came back {second}")
    assert first.keys() == second.keys()
    assert all(second[k][0] > max(e for e, _ in first.values()) for k in second), second
    iid = c.submit([{"name": "a", "command": "true"}, {"name": "b", "command": "true"}])
    c.wait_success(iid)
    c.assert_invariants()


def test_master_killed_during_failover(proc_cluster: Cluster) -> None:
    c = proc_cluster
    c.up(masters=3, workers=2)
    chain: list[dict[str, Any]] = [
        {"name": "a", "command": "sleep 1"},
        {"name": "b", "command": "sleep 2", "depends_on": ["a"]},
        {"name": "c", "command": "sleep 1", "depends_on": ["b"]},
    ]
    ids = [c.submit(chain) for _ in range(4)]
    for iid in ids:
        c.wait(partial(c.master_owning, iid), 30, f"owner of {iid}")
    first = c.master_owning(ids[0])
    assert first is not None
    old = c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=ids[0])
    c.kill9(first)

    def adopter() -> str | None:
        owner = c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=ids[0])
        return c.master_owning(ids[0]) if owner != old else None

    second = c.wait(adopter, 30, "first adoption", interval=0.01)
    c.kill9(second)  # right after it took the instances over, before it acted on them
    print(f"\nkilled {first}, then its adopter {second} at once")
    last = ({"m1", "m2", "m3"} - {first, second}).pop()
    for iid in ids:
        c.wait_success(iid, 90)
    assert all(c.master_owning(i) in (None, last) for i in ids)
    c.assert_invariants()
