"""The consistency doctor finds drift between PostgreSQL and ZooKeeper and repairs it."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import text

from coord.queue import QueueEntry, QueueKey, TaskQueue, format_key
from ops import doctor


def _seed(sf):
    with sf.begin() as s:
        s.execute(text("INSERT INTO workflow_definition (id, name) VALUES (1, 'w')"))
        s.execute(
            text("INSERT INTO workflow_version (workflow_id, version, spec) VALUES (1, 1, '{}')")
        )
        s.execute(
            text(
                "INSERT INTO workflow_instance (id, workflow_id, version, state, command_type, owner,"
                " owner_epoch) VALUES (10, 1, 1, 'RUNNING', 'START_PROCESS', 'gone-master', 7)"
            )
        )
        for tid, state in ((100, "DISPATCHED"), (101, "RUNNING"), (102, "DISPATCHED")):
            s.execute(
                text(
                    "INSERT INTO task_instance (id, workflow_instance_id, name, type, state)"
                    " VALUES (:id, 10, :n, 'SHELL', :st)"
                ),
                {"id": tid, "n": f"t{tid}", "st": state},
            )


def test_doctor_reports_and_repairs_drift(sf, zk):
    _seed(sf)
    q = TaskQueue(zk.client, zk.paths)
    # 102 is queued properly; 999 is a stray entry without a row; 100 lost its entry.
    q.push(
        [
            QueueEntry("default", QueueKey(2, 10, 2, 102)),
            QueueEntry("default", QueueKey(2, 10, 2, 999)),
        ]
    )
    findings, fixed = doctor.run(sf, zk, do_repair=False)
    kinds = {f.kind: f for f in findings}
    assert set(kinds) == {
        "instance_without_owner",
        "queue_entry_without_row",
        "running_without_lease",
        "dispatched_without_entry",
    }
    assert kinds["instance_without_owner"].ids == [10]
    assert kinds["running_without_lease"].ids == [101]
    assert kinds["dispatched_without_entry"].ids == [100]
    assert fixed == 0

    findings, fixed = doctor.run(sf, zk, do_repair=True)
    assert fixed == 3
    assert sorted(q.entries("default")) == sorted(
        [format_key(2, 10, 2, 100), format_key(2, 10, 2, 102)]
    )
    with sf.begin() as s:
        assert (
            s.execute(text("SELECT state FROM task_instance WHERE id = 101")).scalar_one()
            == "NEED_FAULT_TOLERANCE"
        )
    after, _ = doctor.run(sf, zk, do_repair=False)
    assert [f.kind for f in after] == ["instance_without_owner"]


def test_doctor_command_reports_a_clean_cluster(settings):
    out = _doctor_cli(settings)
    assert out.returncode == 0, out.stderr
    assert "clean" in out.stdout


def _instance(s, iid: int, workflow_id: int, state: str, owner=None, epoch=None) -> None:
    s.execute(
        text(
            "INSERT INTO workflow_instance (id, workflow_id, version, state, command_type, owner,"
            " owner_epoch) VALUES (:id, :w, 1, :st, 'START_PROCESS', :o, :e)"
        ),
        {"id": iid, "w": workflow_id, "st": state, "o": owner, "e": epoch},
    )


def _seed_runs(sf) -> None:
    """Workflow 1: a serial run waiting behind nothing (20). Workflow 2: a serial run waiting
    behind a running one (31 behind 30). Workflow 3: a stop request whose owner is gone (40), a
    pause request whose owner is live (41) and a stop request without any owner (42)."""
    with sf.begin() as s:
        for wid in (1, 2, 3):
            s.execute(
                text("INSERT INTO workflow_definition (id, name) VALUES (:i, :n)"),
                {"i": wid, "n": f"w{wid}"},
            )
            s.execute(
                text(
                    "INSERT INTO workflow_version (workflow_id, version, spec)"
                    ' VALUES (:i, 1, \'{"execution_type": "SERIAL_WAIT"}\')'
                ),
                {"i": wid},
            )
        _instance(s, 20, 1, "SERIAL_WAIT")
        _instance(s, 30, 2, "RUNNING", "live-master", 5)
        _instance(s, 31, 2, "SERIAL_WAIT")
        _instance(s, 40, 3, "READY_STOP", "gone-master", 3)
        _instance(s, 41, 3, "READY_PAUSE", "live-master", 5)
        _instance(s, 42, 3, "READY_STOP")


def test_doctor_signals_serial_waits_and_stop_requests(sf, zk):
    _seed_runs(sf)
    paths = zk.paths
    zk.register(paths.master("live-master"), {"host": "h"}, 5)
    zk.register(paths.worker("default", "live-worker"), {"host": "h"}, 6)
    # a request to a live worker is its business; to a dead one, nobody will act on it
    zk.client.create(paths.signal("live-worker", 55), b"{}", makepath=True)
    zk.client.create(paths.signal("dead-worker", 123), b"{}", makepath=True)
    zk.client.create(paths.signal("dead-worker", 124), b"{}", makepath=True)
    zk.client.ensure_path(paths.signals("crashed-worker"))  # an empty inbox left behind

    findings, fixed = doctor.run(sf, zk, do_repair=False)
    kinds = {f.kind: f for f in findings}
    assert set(kinds) == {
        "signal_for_unregistered_worker",
        "stale_signal_inbox",
        "serial_wait_without_active",
        "stop_or_pause_without_owner",
    }, findings
    assert kinds["signal_for_unregistered_worker"].ids == [123, 124]
    assert "dead-worker" in kinds["signal_for_unregistered_worker"].message
    assert "crashed-worker" in kinds["stale_signal_inbox"].message
    assert kinds["stale_signal_inbox"].harmless
    assert kinds["serial_wait_without_active"].ids == [20]
    assert not kinds["serial_wait_without_active"].repairable
    assert kinds["stop_or_pause_without_owner"].ids == [40, 42]
    assert not kinds["stop_or_pause_without_owner"].repairable
    assert not doctor.is_clean(findings) and fixed == 0
    assert doctor.exit_code(findings, repaired=False) == 1
    text_report = doctor.report(findings, fixed, as_json=False)
    assert "[stale_signal_inbox]" in text_report and "harmless" in text_report

    findings, fixed = doctor.run(sf, zk, do_repair=True)
    assert fixed == 3  # two requests and the empty inbox
    assert doctor.exit_code(findings, repaired=True) == 1  # report-only findings remain
    assert zk.children(paths.signals("dead-worker")) == []
    assert not zk.client.exists(paths.signals("crashed-worker"))
    assert zk.children(paths.signals("live-worker")) == ["55"]

    after, _ = doctor.run(sf, zk, do_repair=False)
    # what the repair emptied is now a harmless left-over; the report-only findings remain
    assert sorted(f.kind for f in after) == [
        "serial_wait_without_active",
        "stale_signal_inbox",
        "stop_or_pause_without_owner",
    ]
    # a master promotes the waiting run, stops the orphaned ones: the cluster is clean
    with sf.begin() as s:
        s.execute(text("UPDATE workflow_instance SET state = 'STOP' WHERE id IN (40, 42)"))
        s.execute(
            text(
                "UPDATE workflow_instance SET state = 'RUNNING', owner = 'live-master',"
                " owner_epoch = 5 WHERE id = 20"
            )
        )
    doctor.run(sf, zk, do_repair=True)
    final, _ = doctor.run(sf, zk, do_repair=False)
    assert final == [] and doctor.exit_code(final, repaired=False) == 0


def test_doctor_command_harmless_left_overs_keep_the_cluster_clean(settings, zk):
    zk.client.ensure_path(zk.paths.signals("crashed-worker"))
    out = _doctor_cli(settings)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "clean" in out.stdout and "stale_signal_inbox" in out.stdout
    zk.client.create(zk.paths.signal("crashed-worker", 7), b"{}")
    out = _doctor_cli(settings)
    assert out.returncode == 1 and "signal_for_unregistered_worker" in out.stdout, out.stdout
    out = _doctor_cli(settings, "--repair")
    assert out.returncode == 0 and "repaired 1 item" in out.stdout, out.stdout
    assert zk.children(zk.paths.signals("crashed-worker")) == []


def _doctor_cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "DAGKEEPER_DB__URL": settings.db.url,
        "DAGKEEPER_ZK__HOSTS": settings.zk.hosts,
        "DAGKEEPER_ZK__ROOT": settings.zk.root,
        "DAGKEEPER_ZK__AUTH_PASSWORD": settings.zk.auth_password,
        "DAGKEEPER_ZK__SESSION_TIMEOUT_S": "4",
        "DAGKEEPER_MASTER__HEARTBEAT_INTERVAL_S": "1",
        "DAGKEEPER_WORKER__HEARTBEAT_INTERVAL_S": "1",
        "DAGKEEPER_WORKER__REPORT_RETRY_DEADLINE_S": "2",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
