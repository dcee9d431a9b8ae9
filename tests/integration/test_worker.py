"""The worker against real PostgreSQL and ZooKeeper. The tests play the master: they insert the
rows a master creates (definition, version, instance, SUBMITTED task attempts) and push queue keys."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy import update
from sqlalchemy.engine import make_url
from support import expire_session
from task_type_support import Bench, Run, gone, read_text, session_of

from coord.zk import ZkClient
from core.settings import Settings
from db.attempts_worker import Connections, finish_attempt, load_attempt, mark_running
from db.engine import make_engine
from db.models import TaskInstance
from db.notify import CHANNEL_TASK
from ops.localserver import free_port, wait_for
from worker.executor import DB_BACKOFF_S


def running_with_child(bench: Bench, tmp_path: Path) -> tuple[int, TaskInstance, int]:
    """A SHELL task RUNNING on a started worker with a background ``sleep``: the attempt's id
    and row, and the pid of that child."""
    pids = tmp_path / "pids"
    ti, row = bench.running(f"sleep 300 &\necho $! >> {pids}\nwait")
    wait_for(lambda: read_text(pids).strip(), 10 * bench.scale, what="child pid")
    return ti, row, int(read_text(pids))


# 1. one worker runs SHELL tasks


def test_runs_shell_tasks_success_failure_and_outputs(
    bench: Bench, zk: ZkClient, settings: Settings
) -> None:
    run = bench.create(
        [
            {
                "command": "echo \"hello $who\"\necho oops >&2\necho '${setValue(x=1)}'",
                "env": {"who": "world"},
            },
            "echo failing\nexit 7",
        ],
    )
    w = bench.start_worker()
    bench.push(run)
    got = bench.wait(run.task_ids)
    ok, bad = got[run.task_ids[0]], got[run.task_ids[1]]

    assert (ok.state, ok.exit_code, ok.output) == ("SUCCESS", 0, {"x": "1"})
    assert (bad.state, bad.exit_code, bad.output) == ("FAILURE", 7, {})
    for r in (ok, bad):
        assert r.host == settings.worker.host
        assert r.worker_id == w.worker_id
        assert r.lease_token == w.epoch
        assert r.pid and r.start_time and r.end_time and r.start_time <= r.end_time
        expected = settings.log_path / str(run.workflow_id) / str(run.instance_id) / f"{r.id}.log"
        assert r.log_path == str(expected)
    log_ok = Path(ok.log_path or "").read_text().splitlines()
    assert log_ok == ["hello world", "oops", "${setValue(x=1)}"]
    assert Path(bad.log_path or "").read_text() == "failing\n"
    # the script ran in its own working directory
    assert (settings.exec_path / str(run.instance_id) / str(ok.id) / "task.sh").exists()
    # leases released, queue empty
    wait_for(lambda: not zk.children(zk.paths.leases()), 10 * bench.scale, what="leases gone")
    assert zk.children(zk.paths.queue("default")) == []


def test_timeout_unknown_type_and_unstartable_rows(bench: Bench, zk: ZkClient) -> None:
    run = bench.create([{"command": "echo start\nsleep 30", "timeout_s": 0.5}, "echo no", "x"])
    slow, unstartable, weird = run.task_ids
    with bench.sf.begin() as s:
        s.execute(update(TaskInstance).where(TaskInstance.id == unstartable).values(state="KILL"))
        s.execute(update(TaskInstance).where(TaskInstance.id == weird).values(type="NOPE"))
    bench.start_worker(kill_grace_s=0.5)
    bench.push(run)
    got = bench.wait([slow, weird])
    assert (got[slow].state, got[slow].exit_code) == ("FAILURE", 143)
    assert "timed out" in Path(got[slow].log_path or "").read_text()
    assert (got[weird].state, got[weird].exit_code) == ("FAILURE", None)
    assert "NOPE" in Path(got[weird].log_path or "").read_text()
    wait_for(lambda: not zk.children(zk.paths.leases()), 10 * bench.scale, what="leases gone")
    assert bench.row(unstartable).state == "KILL"  # untouched, never run
    assert bench.row(unstartable).start_time is None


# 2. two workers race over one queue


def test_two_workers_run_every_task_exactly_once(
    bench: Bench, zk: ZkClient, tmp_path: Path
) -> None:
    side = tmp_path / "side-effects.txt"
    run = bench.create([f'echo "$DAGKEEPER_TASK_INSTANCE_ID" >> {side}'] * 200)
    a = bench.start_worker(capacity=4)
    b = bench.start_worker(capacity=4)
    assert a.worker_id != b.worker_id and a.epoch != b.epoch
    started = time.monotonic()
    bench.push(run)
    got = bench.wait(run.task_ids, timeout=120)
    elapsed = time.monotonic() - started

    assert {r.state for r in got.values()} == {"SUCCESS"}
    lines = side.read_text().split()
    assert sorted(int(x) for x in lines) == sorted(run.task_ids)  # each once, none left
    by_worker = {w: sum(r.worker_id == w for r in got.values()) for w in (a.worker_id, b.worker_id)}
    assert all(n > 0 for n in by_worker.values()), by_worker
    assert sum(by_worker.values()) == 200
    assert zk.children(zk.paths.queue("default")) == []
    wait_for(lambda: not zk.children(zk.paths.leases()), 10 * bench.scale, what="leases gone")
    print(f"200 tasks on 2 workers in {elapsed:.2f}s ({200 / elapsed:.0f}/s), {by_worker}")


def test_claims_follow_queue_key_order_across_groups(bench: Bench, tmp_path: Path) -> None:
    order = tmp_path / "order.txt"
    cmd = f'echo "$DAGKEEPER_TASK_NAME" >> {order}'
    tasks: list[str | dict[str, Any]] = [
        {"command": cmd, "worker_group": g, "priority": p}
        for g, p in [("a", 3), ("b", 0), ("a", 1), ("b", 4), ("a", 0), ("b", 2)]
    ]
    run = bench.create(tasks)
    bench.push(run)  # everything is queued before the worker looks
    bench.start_worker(capacity=1, groups=["a", "b"])
    bench.wait(run.task_ids)
    # same instance: task priority, then task id
    assert order.read_text().split() == ["t1", "t4", "t2", "t5", "t0", "t3"]


# 3. registration and leases in ZooKeeper


def test_registration_and_lease_znodes(bench: Bench, zk: ZkClient, tmp_path: Path) -> None:
    flag = tmp_path / "release"
    w = bench.start_worker(capacity=3, groups=["default", "gpu"])
    paths = [zk.paths.worker("default", w.worker_id), zk.paths.worker("gpu", w.worker_id)]
    assert w.registration_paths == paths
    for path in paths:
        raw, stat = zk.client.get(path)
        data = json.loads(raw)
        assert data["host"] == w.host and data["pid"] == os.getpid()
        assert data["capacity"] == 3 and data["groups"] == ["default", "gpu"]
        assert data["epoch"] == w.epoch
        assert stat.ephemeralOwner == session_of(w).session_id
    assert zk.member_epoch(paths[0]) == w.epoch

    ti, _ = bench.running(
        {"command": f"while [ ! -e {flag} ]; do sleep 0.05; done", "worker_group": "gpu"}
    )
    raw, stat = zk.client.get(zk.paths.lease(ti))
    assert json.loads(raw) == {"worker": w.worker_id, "epoch": w.epoch, "host": w.host}
    assert stat.ephemeralOwner == session_of(w).session_id
    assert w.running == [ti]
    # the load is published with the heartbeat
    wait_for(lambda: (zk.get_json(paths[1]) or {}).get("load") == 1, 5 * bench.scale, what="load 1")
    flag.touch()
    assert bench.wait([ti])[ti].state == "SUCCESS"
    wait_for(lambda: zk.client.exists(zk.paths.lease(ti)) is None, 10 * bench.scale, what="lease")
    w.stop(grace=0)
    assert all(zk.client.exists(p) is None for p in paths)


# 4. fencing: a stale token changes nothing


def test_finish_with_stale_token_changes_nothing(bench: Bench, db_url: str, tmp_path: Path) -> None:
    flag = tmp_path / "release"
    run = bench.create([f"while [ ! -e {flag} ]; do sleep 0.05; done\necho finished"])
    ti = run.task_ids[0]
    listener = psycopg2.connect(
        make_url(db_url).set(drivername="postgresql").render_as_string(False)
    )
    listener.autocommit = True
    listener.cursor().execute(f"LISTEN {CHANNEL_TASK}")
    try:
        w = bench.start_worker()
        bench.push(run)
        before = bench.wait([ti], states={"RUNNING"})[ti]
        with bench.sf.begin() as s:
            assert not finish_attempt(
                s, ti, lease_token=w.epoch + 1, state="SUCCESS", exit_code=0, output={"a": "b"}
            )
            assert not finish_attempt(s, ti, lease_token=w.epoch - 1, state="FAILURE", exit_code=1)
            assert not mark_running(
                s, ti, host="elsewhere", worker_id="intruder", lease_token=1, pid=1, log_path="/x"
            )
        after = bench.row(ti)
        for col in ("state", "exit_code", "output", "end_time", "lease_token", "worker_id", "pid"):
            assert getattr(after, col) == getattr(before, col), col
        flag.touch()
        done = bench.wait([ti])[ti]
        assert (done.state, done.exit_code) == ("SUCCESS", 0)

        def notified() -> list[str] | None:
            select.select([listener], [], [], 0.1)
            listener.poll()
            return [n.payload for n in listener.notifies] or None

        # exactly one wake-up, from the real finish; the stale writes sent none
        assert wait_for(notified, 10 * bench.scale, what="notify") == [f"{run.instance_id}:{ti}"]
        with bench.sf.begin() as s:  # the real token cannot finish it twice either
            assert not finish_attempt(s, ti, lease_token=w.epoch, state="FAILURE", exit_code=1)
            att = load_attempt(s, ti)
        assert att is not None and att.state == "SUCCESS" and att.workflow_id == run.workflow_id
    finally:
        listener.close()


# 5. killing a task kills its process group


def test_stop_kills_the_whole_process_group(bench: Bench, zk: ZkClient, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = (
        f"sleep 300 &\necho $! >> {pids}\n"
        f"bash -c 'trap \"\" TERM; sleep 300' &\necho $! >> {pids}\nwait"
    )
    w = bench.start_worker(kill_grace_s=0.5)
    ti, row = bench.running(command)
    wait_for(lambda: len(read_text(pids).split()) == 2, 10 * bench.scale, what="children")
    children = [int(p) for p in read_text(pids).split()]
    assert row.pid and not gone(row.pid) and not any(gone(c) for c in children)

    w.stop(grace=0)

    assert gone(row.pid)
    wait_for(lambda: all(gone(c) for c in children), 10 * bench.scale, what="children gone")
    after = bench.row(ti)
    # killed by the worker, not by its own fault: the master runs it again elsewhere
    assert (after.state, after.exit_code) == ("NEED_FAULT_TOLERANCE", 143)
    assert "stopped by the worker" in Path(after.log_path or "").read_text()
    assert zk.client.exists(zk.paths.lease(ti)) is None


def test_stop_with_grace_lets_running_tasks_finish(bench: Bench, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    w = bench.start_worker()
    ti, _ = bench.running(f"while [ ! -e {flag} ]; do sleep 0.05; done")
    threading.Timer(0.3, flag.touch).start()
    w.stop(grace=30 * bench.scale)
    assert bench.row(ti).state == "SUCCESS"


def test_session_loss_kills_tasks_and_reregisters(
    bench: Bench, zk: ZkClient, settings: Settings, tmp_path: Path
) -> None:
    w = bench.start_worker()
    old_epoch, old_session = w.epoch, session_of(w).session_id
    ti, row, child = running_with_child(bench, tmp_path)

    # expire the worker's session: a second client on the same session closes it
    expire_session(settings.zk.hosts, session_of(w).client.client_id)

    wait_for(lambda: w.epoch != old_epoch, 30 * bench.scale, what="re-registered")
    assert w.zk is not None and session_of(w).session_id != old_session
    assert gone(row.pid or 0)
    wait_for(lambda: gone(child), 10 * bench.scale, what="child killed")
    reg = zk.get_json(zk.paths.worker("default", w.worker_id))
    assert reg is not None and reg["epoch"] == w.epoch
    # the worker wrote nothing about the lost attempt: its failover is the master's job
    after = bench.row(ti)
    assert (after.state, after.lease_token, after.end_time) == ("RUNNING", old_epoch, None)
    assert w.stats["sessions_lost"] == 1 and w.running == []
    # and it keeps working under its new epoch
    run2 = bench.create(["echo again"])
    bench.push(run2)
    r2 = bench.wait(run2.task_ids)[run2.task_ids[0]]
    assert (r2.state, r2.lease_token) == ("SUCCESS", w.epoch)


def test_unreachable_database_puts_claims_back(bench: Bench, zk: ZkClient) -> None:
    run = bench.create(["echo never"] * 3)
    dead = make_engine(f"postgresql+psycopg2://nobody@127.0.0.1:{free_port()}/nothing")
    try:
        # registration needs PostgreSQL (epochs come from a sequence); then it goes away
        w = bench.start_worker(report_retry_deadline_s=0.3)
        w.executor._db_conns = Connections(dead, 2)
        bench.push(run)
        wait_for(lambda: w.stats["unclaim"] >= 3, 20 * bench.scale, what="claims put back")
        first = time.monotonic()
        wait_for(lambda: w.stats["unclaim"] >= 6, 20 * bench.scale, what="claimed again")
        # the worker backs off (DB_BACKOFF_S) instead of spinning on claim and put-back
        assert time.monotonic() - first >= 0.8 * DB_BACKOFF_S
        w.stop(grace=0)
    finally:
        dead.dispose()
    queue = zk.children(zk.paths.queue("default"))
    assert len(queue) == 3  # every key is back for another worker
    assert zk.children(zk.paths.leases()) == []
    assert {r.state for r in bench.rows(run.task_ids).values()} == {"SUBMITTED"}


def test_zookeeper_silence_fences_tasks_before_the_session_can_expire(
    bench: Bench, zk_server: Any, settings: Settings, tmp_path: Path
) -> None:
    w = bench.start_worker()
    ti, row, child = running_with_child(bench, tmp_path)

    zk_server.signal_group(signal.SIGSTOP)  # no answers any more; the session clock runs on
    frozen = time.monotonic()
    try:
        wait_for(
            lambda: gone(child) and gone(row.pid or 0),
            3 * settings.zk.session_timeout_s * bench.scale,
            interval=0.05,
            what="tasks fenced",
        )
        fenced_after = time.monotonic() - frozen
    finally:
        zk_server.signal_group(signal.SIGCONT)
    # killed before the server could have expired the session and let another worker rerun it
    assert fenced_after < settings.zk.session_timeout_s

    def settled() -> bool:
        r = bench.row(ti)
        if r.state == "NEED_FAULT_TOLERANCE":  # the session survived: the attempt is handed back
            return r.lease_token == w.epoch
        return r.state == "RUNNING" and w.stats["sessions_lost"] >= 1  # expired: wrote nothing

    wait_for(settled, 30 * bench.scale, what="fenced attempt settled")

    def pushed(r: Run) -> bool:
        try:
            bench.push(r)
            return True
        except Exception:  # the test's own session may be reconnecting
            return False

    run2 = bench.create(["echo again"])
    wait_for(lambda: pushed(run2), 30 * bench.scale, what="push after the freeze")
    assert bench.wait(run2.task_ids)[run2.task_ids[0]].state == "SUCCESS"
