"""Kill requests through ``<signals>/<worker id>`` znodes and the timeout strategies (FAILED, WARN,
WARN_FAILED), against a real worker, PostgreSQL and ZooKeeper. The tests play the master."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text
from support import group_gone
from task_type_support import Bench, read_text

from coord import signals
from coord.zk import ZkClient
from db.engine import SessionFactory
from ops.localserver import wait_for


def alerts(sf: SessionFactory) -> list[tuple[str, str, dict[str, object], int | None]]:
    with sf.begin() as s:
        return [
            (r[0], r[1], r[2], r[3])
            for r in s.execute(
                text("SELECT kind, title, content, workflow_instance_id FROM alert ORDER BY id")
            ).all()
        ]


def test_kill_request_kills_the_group_and_reports_kill(
    bench: Bench, zk: ZkClient, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    # a subshell that ignores SIGTERM too: only the SIGKILL after the grace reaches it
    command = (
        f"(trap '' TERM; sleep 300) &\necho $! >> {pids}\nsleep 300 &\necho $! >> {pids}\nwait"
    )
    w = bench.start_worker(kill_grace_s=0.5)
    inbox = zk.paths.signals(w.worker_id)
    assert zk.client.exists(inbox) is not None  # created on registration
    signals.request_kill(zk, w.worker_id, 10**12)  # about an attempt it does not hold
    ti, row = bench.running(command)
    wait_for(lambda: len(read_text(pids).split()) == 2, 10 * bench.scale, what="children")
    assert row.pid and not group_gone(row.pid)

    asked = time.monotonic()
    assert signals.request_kill(zk, w.worker_id, ti, by="test")
    wait_for(lambda: group_gone(row.pid or 0), 2 * bench.scale, interval=0.02, what="group gone")
    took = time.monotonic() - asked
    print(f"\nkill request -> process group gone in {took:.2f}s (kill grace 0.5s)")
    assert took < 5  # must-show: a kill ends the real work within 5 s
    after = bench.wait([ti], timeout=2)[ti]
    assert (after.state, after.exit_code) == ("KILL", 143)
    assert after.lease_token == w.epoch
    assert "stopped by the worker (KILL)" in read_text(Path(after.log_path or ""))
    # both requests are gone: the handled one and the one about an attempt it does not hold
    wait_for(lambda: zk.children(inbox) == [], 5 * bench.scale, what="requests deleted")
    wait_for(lambda: not zk.children(zk.paths.leases()), 5 * bench.scale, what="lease gone")
    assert w.stats["kill_requests"] == 1


def test_timeout_strategies(
    bench: Bench,
) -> None:
    run = bench.create(
        [
            {"command": "sleep 30", "timeout_s": 0.3},  # FAILED (the default)
            {"command": "sleep 1.5; echo finished", "timeout_s": 0.3, "timeout_strategy": "WARN"},
            {"command": "sleep 30", "timeout_s": 0.3, "timeout_strategy": "WARN_FAILED"},
        ],
    )
    failed, warn, warn_failed = run.task_ids
    bench.start_worker(kill_grace_s=0.5)
    bench.push(run)
    got = bench.wait(run.task_ids)

    assert (got[failed].state, got[failed].exit_code) == ("FAILURE", 143)
    assert got[failed].reason == "timed out after 0.3s (FAILED)"
    assert (got[warn].state, got[warn].exit_code) == ("SUCCESS", 0)
    assert got[warn].reason is None
    warn_log = read_text(Path(got[warn].log_path or ""))
    assert "running past its timeout of 0.3s" in warn_log and "finished" in warn_log
    assert (got[warn_failed].state, got[warn_failed].exit_code) == ("FAILURE", 143)
    assert got[warn_failed].reason == "timed out after 0.3s (WARN_FAILED)"

    found = alerts(bench.sf)
    assert [a[0] for a in found] == ["TASK_TIMEOUT", "TASK_TIMEOUT"], found
    by_task = {a[2]["task_instance_id"]: a for a in found}
    assert set(by_task) == {warn, warn_failed}  # FAILED raises no alert
    for ti, name, strategy in ((warn, "t1", "WARN"), (warn_failed, "t2", "WARN_FAILED")):
        kind, title, content, instance = by_task[ti]
        assert instance == run.instance_id
        assert content["task"] == name and content["attempt"] == 1
        assert content["strategy"] == strategy and content["timeout_s"] == 0.3
        assert content["workflow_instance_id"] == run.instance_id
        assert f"task {name} (attempt 1) of instance {run.instance_id}" in title
