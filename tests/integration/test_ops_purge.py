"""Retention on 200,000 generated attempts: ``dagkeeper purge`` deletes exactly the finished
instances past the cut-off (with their attempts, log chunks, alerts, commands and sub-workflow
children) and keeps everything else; no purge transaction (so no lock of it) lasts 1 s, while a
probe writing next to it never waits 1 s; the API serves what stays. Also: the worker prunes the
task files of purged instances, and the cron leader's daily retention runs the same purge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from support import Cluster, create

from core.settings import CronSettings, Settings
from core.states import BackfillState, TaskState, WorkflowState
from ops.localserver import wait_for
from worker import prune

REPO = Path(__file__).resolve().parents[2]
N_INSTANCES = 20_000  # x 10 attempts = 200,000
OLD = 11_000  # instances 1..OLD ended 40 days ago, the rest 10 days ago
TERMINAL = [WorkflowState.SUCCESS.value, WorkflowState.FAILURE.value, WorkflowState.STOP.value]
APP = "dagkeeper-purge"  # the purge process's application_name (PGAPPNAME)

GENERATE = [
    # instances: every 100th is workflow :b's, states cycle through the terminal ones
    "INSERT INTO workflow_instance (workflow_id, version, state, command_type, submit_time,"
    " start_time, end_time) SELECT CASE WHEN g % 100 = 0 THEN :b ELSE :a END, 1,"
    " (CAST(:terminal AS text[]))[1 + g % 3], 'START_PROCESS', e - interval '1 minute',"
    " e - interval '1 minute', e FROM generate_series(1, :n) g,"
    " LATERAL (SELECT now() - make_interval(days => CASE WHEN g <= :old THEN 40 ELSE 10 END,"
    " secs => g) AS e) t ORDER BY g",
    # ten attempts each
    "INSERT INTO task_instance (workflow_instance_id, name, type, attempt, state, submit_time,"
    " start_time, end_time) SELECT wi.id, 't' || k, 'SHELL', 1, :ok, wi.start_time,"
    " wi.start_time, wi.end_time FROM workflow_instance wi, generate_series(0, 9) k",
    "INSERT INTO task_log_chunk (task_instance_id, seq, first_line, line_count, data)"
    " SELECT id, 0, 0, 1, convert_to('hello ' || id || E'\\n', 'UTF8') FROM task_instance"
    " WHERE name = 't0'",
    "INSERT INTO alert (kind, title, content, workflow_instance_id) SELECT 'WORKFLOW_END',"
    " 'end', '{}', id FROM workflow_instance WHERE id % 10 = 0",
    "INSERT INTO command (type, instance_id) SELECT 'STOP', id FROM workflow_instance"
    " WHERE id % 1000 = 1",
]


def _exec(engine: Engine, sql: str, **args: Any) -> Any:
    with engine.begin() as c:
        return c.execute(text(sql), args)


def _one(engine: Engine, sql: str, **args: Any) -> Any:
    with engine.begin() as c:
        return c.execute(text(sql), args).scalar()


def _ids(engine: Engine, sql: str, **args: Any) -> set[int]:
    with engine.begin() as c:
        return {int(r) for r in c.execute(text(sql), args).scalars()}


def _counts(engine: Engine) -> dict[str, int]:
    tables = {"instances": "workflow_instance", "attempts": "task_instance",
              "log_chunks": "task_log_chunk", "alerts": "alert", "commands": "command"}  # fmt: skip
    return {k: int(_one(engine, f"SELECT count(*) FROM {t}")) for k, t in tables.items()}


def _special_cases(engine: Engine, wf: int) -> dict[str, int]:
    """The rows the rules keep or take although their dates say otherwise."""
    old_running = int(_one(engine,
        "INSERT INTO workflow_instance (workflow_id, version, state, command_type, submit_time)"
        " VALUES (:w, 1, :st, 'START_PROCESS', now() - interval '50 days') RETURNING id",
        w=wf, st=WorkflowState.RUNNING.value))  # fmt: skip
    in_backfill = 5  # an old finished instance a RUNNING backfill still counts
    bf = int(_one(engine,
        "INSERT INTO backfill (workflow_id, mode, parallelism, state) VALUES (:w, 'SERIAL', 1,"
        " :st) RETURNING id", w=wf, st=BackfillState.RUNNING.value))  # fmt: skip
    _exec(engine, "INSERT INTO backfill_run (backfill_id, seq, schedule_time, instance_id)"
          " VALUES (:b, 0, now(), :i)", b=bf, i=in_backfill)  # fmt: skip
    # old parent 7 ran a child (old too): both go; recent parent N ran an old child: it stays
    children = {}
    for parent in (7, N_INSTANCES):
        ti = int(_one(engine, "SELECT id FROM task_instance WHERE workflow_instance_id = :p"
                      " AND name = 't9'", p=parent))  # fmt: skip
        children[parent] = int(_one(engine,
            "INSERT INTO workflow_instance (workflow_id, version, state, command_type,"
            " submit_time, end_time, parent_task_instance_id) VALUES (:w, 1, :st,"
            " 'START_PROCESS', now() - interval '45 days', now() - interval '45 days', :ti)"
            " RETURNING id", w=wf, st=WorkflowState.SUCCESS.value, ti=ti))  # fmt: skip
        _exec(engine, "INSERT INTO task_instance (workflow_instance_id, name, type, state)"
              " VALUES (:c, 'inner', 'SHELL', :ok)", c=children[parent],
              ok=TaskState.SUCCESS.value)  # fmt: skip
    return {"old_running": old_running, "in_backfill": in_backfill,
            "child_of_old": children[7], "child_of_recent": children[N_INSTANCES]}  # fmt: skip


class Probe(threading.Thread):
    """Writes next to the purge on its own connection (lock_timeout 1 s: a longer wait fails):
    updates a kept instance and an old one the purge is about to take, adds an attempt to a
    kept instance; and samples the age of the purge's open transaction."""

    def __init__(self, dsn: str, kept: int, old: list[int]) -> None:
        super().__init__(daemon=True)
        self.dsn, self.kept, self.old = dsn, kept, old
        self.stop = threading.Event()
        self.longest_write_s = 0.0
        self.longest_purge_xact_s = 0.0
        self.writes = 0
        self.errors: list[str] = []

    def run(self) -> None:
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SET lock_timeout = '1s'")
        i = 0
        while not self.stop.is_set():
            i += 1
            t0 = time.monotonic()
            try:
                cur.execute("UPDATE workflow_instance SET reason = 'probe' WHERE id = %s",
                            [self.kept])  # fmt: skip
                cur.execute("UPDATE workflow_instance SET reason = 'probe' WHERE id = %s",
                            [self.old[i % len(self.old)]])  # fmt: skip
                cur.execute("INSERT INTO task_instance (workflow_instance_id, name, type, state)"
                            " VALUES (%s, %s, 'SHELL', %s)",
                            [self.kept, f"probe{i}", TaskState.SUCCESS.value])  # fmt: skip
            except psycopg2.Error as exc:
                self.errors.append(str(exc).strip())
            self.longest_write_s = max(self.longest_write_s, time.monotonic() - t0)
            self.writes += 1
            cur.execute("SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)),"
                        " 0) FROM pg_stat_activity WHERE application_name = %s"
                        " AND xact_start IS NOT NULL", [APP])  # fmt: skip
            self.longest_purge_xact_s = max(self.longest_purge_xact_s, float(cur.fetchone()[0]))
            self.stop.wait(0.01)
        conn.close()


def _purge_cli(settings: Settings, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGKEEPER_")}
    env.update(PYTHONPATH=str(REPO), PGAPPNAME=APP, DAGKEEPER_DB__URL=settings.db.url)
    res = subprocess.run([sys.executable, "-m", "ops.cli", "purge", *args, "--json"], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return dict(json.loads(res.stdout))


@pytest.fixture
def generated(settings: Settings, engine: Engine, api: TestClient) -> dict[str, Any]:
    a = create(api, {"name": "etl", "tasks": [{"name": "t0", "command": "true"}]})
    b = create(api, {"name": "reports", "tasks": [{"name": "t0", "command": "true"}]})
    t0 = time.monotonic()
    for sql in GENERATE:
        _exec(engine, sql, a=a, b=b, n=N_INSTANCES, old=OLD, terminal=TERMINAL,
              ok=TaskState.SUCCESS.value)  # fmt: skip
    special = _special_cases(engine, a)
    _exec(engine, "ANALYZE")
    print(f"\ngenerated {_counts(engine)} in {time.monotonic() - t0:.1f}s")
    return {"etl": a, "reports": b, **special}


def test_purge_takes_exactly_the_old_finished_instances_without_long_locks(
    settings: Settings, engine: Engine, api: TestClient, generated: dict[str, Any]
) -> None:
    g = generated
    assert _one(engine, "SELECT count(*) FROM task_instance") >= 200_000
    old_top = _ids(engine, "SELECT id FROM workflow_instance WHERE id <= :old", old=OLD)
    going = (old_top - {g["in_backfill"]}) | {g["child_of_old"]}
    staying = _ids(engine, "SELECT id FROM workflow_instance") - going
    going_attempts = int(_one(engine, "SELECT count(*) FROM task_instance"
                                      " WHERE workflow_instance_id = ANY(:i)", i=list(going)))  # fmt: skip
    before = _counts(engine)

    # a dry run counts exactly that and deletes nothing
    dry = _purge_cli(settings, "--older-than", "30d", "--dry-run")
    assert dry["instances"] == len(going) and dry["attempts"] == going_attempts, dry
    assert _counts(engine) == before

    # one workflow's: only the old instances of "reports" go
    reports_old = _ids(engine, "SELECT id FROM workflow_instance WHERE workflow_id = :b"
                               " AND id <= :old", b=g["reports"], old=OLD)  # fmt: skip
    done = _purge_cli(settings, "--older-than", "30d", "--workflow", "reports")
    assert done["instances"] == len(reports_old) == OLD // 100, done
    assert not _ids(engine, "SELECT id FROM workflow_instance WHERE id = ANY(:i)",
                    i=list(reports_old))  # fmt: skip

    # everything past the cut-off, with a writer next to it
    dsn = settings.db.url.replace("postgresql+psycopg2://", "postgresql://")
    kept = max(staying - {g["child_of_recent"], g["old_running"]})
    probe = Probe(dsn, kept, sorted(going - reports_old)[::50])
    probe.start()
    t0 = time.monotonic()
    try:
        done = _purge_cli(settings, "--older-than", "30d")
    finally:
        probe.stop.set()
        probe.join(10)
    took = time.monotonic() - t0
    print(f"purge: {done} in {took:.1f}s; probe: {probe.writes} writes, the longest"
          f" {probe.longest_write_s:.3f}s; the purge's longest open transaction seen"
          f" {probe.longest_purge_xact_s:.3f}s")  # fmt: skip
    assert done["instances"] + len(reports_old) == len(going), done
    assert done["longest_batch_s"] < 1.0, done
    assert probe.longest_purge_xact_s < 1.0 and probe.longest_write_s < 1.0
    assert not probe.errors, probe.errors[:3]
    assert probe.writes > 10

    # the right rows went, the rest stayed (the probe's attempts on `kept` included)
    assert _ids(engine, "SELECT id FROM workflow_instance") == staying
    after = _counts(engine)
    assert after["attempts"] == before["attempts"] - going_attempts + probe.writes, after
    left = int(_one(engine, "SELECT count(*) FROM task_instance t LEFT JOIN workflow_instance"
                            " w ON w.id = t.workflow_instance_id WHERE w.id IS NULL"))  # fmt: skip
    assert left == 0
    for what, sql in (
        ("log_chunks", "SELECT count(*) FROM task_log_chunk c JOIN task_instance t ON t.id ="
                       " c.task_instance_id WHERE t.workflow_instance_id = ANY(:i)"),
        ("alerts", "SELECT count(*) FROM alert WHERE workflow_instance_id = ANY(:i)"),
        ("commands", "SELECT count(*) FROM command WHERE instance_id = ANY(:i)"),
    ):  # fmt: skip
        assert _one(engine, sql, i=list(going)) == 0, what
        assert _one(engine, sql, i=list(staying)) > 0, what

    # the API serves what stays, and no more
    r = api.get("/api/v1/instances", params={"limit": 5}).json()
    assert r["total"] == min(len(staying), 10_000) and len(r["items"]) == 5, r
    assert api.get(f"/api/v1/instances/{min(going)}").status_code == 404
    one = sorted(staying)[100]
    inst = api.get(f"/api/v1/instances/{one}")
    assert inst.status_code == 200 and len(inst.json()["tasks"]) == 10, inst.text
    t0_id = int(_one(engine, "SELECT id FROM task_instance WHERE workflow_instance_id = :i"
                             " AND name = 't0'", i=one))  # fmt: skip
    log = api.get(f"/api/v1/task-instances/{t0_id}/log").json()
    assert log["lines"] == [f"hello {t0_id}"], log


def test_the_worker_prunes_task_files_of_purged_instances_only(
    settings: Settings, engine: Engine, api: TestClient
) -> None:
    wf = create(api, {"name": "files", "tasks": [{"name": "t0", "command": "true"}]})
    kept = int(_one(engine, "INSERT INTO workflow_instance (workflow_id, version, state,"
                            " command_type) VALUES (:w, 1, :st, 'START_PROCESS') RETURNING id",
                    w=wf, st=WorkflowState.SUCCESS.value))  # fmt: skip
    purged = kept + 1000  # no such row: purged
    dirs = {}
    for iid in (kept, purged):
        log_dir = settings.log_path / str(wf) / str(iid)
        exec_dir = settings.exec_path / str(iid) / "1"
        for d in (log_dir, exec_dir):
            d.mkdir(parents=True)
        (log_dir / "1.log").write_text("x\n")
        dirs[iid] = [log_dir, settings.exec_path / str(iid)]
    fresh = settings.exec_path / str(purged + 1)  # no row either, but written a moment ago
    fresh.mkdir()
    old = time.time() - 2 * prune.MIN_AGE_S
    for paths in dirs.values():
        for d in paths:
            os.utime(d, (old, old))
    gone = prune.prune_once(engine, settings)
    assert sorted(gone) == sorted(dirs[purged])
    assert all(d.exists() for d in dirs[kept]) and fresh.exists()
    assert not any(d.exists() for d in dirs[purged])


def test_the_cron_leader_runs_the_retention(
    settings: Settings, engine: Engine, api: TestClient, timeout_scale: float
) -> None:
    wf = create(api, {"name": "daily", "tasks": [{"name": "t0", "command": "true"}]})
    ids = {}
    for days in (40, 5):
        ids[days] = int(_one(engine,
            "INSERT INTO workflow_instance (workflow_id, version, state, command_type, end_time)"
            " VALUES (:w, 1, :st, 'START_PROCESS', now() - make_interval(days => :d))"
            " RETURNING id", w=wf, st=WorkflowState.SUCCESS.value, d=days))  # fmt: skip
    s = settings.model_copy(update={"cron": CronSettings(purge_older_than_days=30)})
    c = Cluster(s)
    try:
        m = c.start_master()
        report = wait_for(lambda: m.cron.retention.report, 30 * timeout_scale, 0.05,
                          "the cron leader's retention purge")  # fmt: skip
        assert report.counts.instances == 1 and report.counts.attempts == 0, report
        assert _ids(engine, "SELECT id FROM workflow_instance") == {ids[5]}
        assert m.cron.retention.tick() is False  # not again before purge_interval_s
    finally:
        c.close()
