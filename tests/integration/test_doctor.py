"""The consistency doctor finds drift between PostgreSQL and ZooKeeper and repairs it."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import text

from common import doctor
from common.db.engine import make_engine, make_session_factory
from common.task_queue import QueueEntry, QueueKey, TaskQueue, format_key
from common.zk import ZkClient


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


def test_doctor_reports_and_repairs_drift(settings):
    engine = make_engine(settings.db)
    sf = make_session_factory(engine)
    zk = ZkClient(settings.zk, name="test")
    zk.start()
    try:
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
    finally:
        zk.stop()
        engine.dispose()


def test_doctor_command_reports_a_clean_cluster(settings):
    env = {
        "DAGKEEPER_DB__URL": settings.db.url,
        "DAGKEEPER_ZK__HOSTS": settings.zk.hosts,
        "DAGKEEPER_ZK__ROOT": settings.zk.root,
        "DAGKEEPER_ZK__SESSION_TIMEOUT_S": "4",
        "DAGKEEPER_MASTER__HEARTBEAT_INTERVAL_S": "1",
        "DAGKEEPER_WORKER__HEARTBEAT_INTERVAL_S": "1",
        "DAGKEEPER_WORKER__REPORT_RETRY_DEADLINE_S": "2",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "dagkeeper.cli", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "clean" in out.stdout
