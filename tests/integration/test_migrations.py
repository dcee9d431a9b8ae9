"""Upgrades keep the data: ``dagkeeper migrate`` (the console command) on a populated database of
the previous release keeps every row and value, gives the new columns their documented values and
leaves a schema equal to a fresh one, which the API serves; and every revision, run on rows of the
schema before it, keeps them, creates what it says, and its downgrade restores that schema."""

from __future__ import annotations

import inspect
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from migration_support import (
    AFTER,
    GONE,
    NEW,
    SEEDS,
    rowsets,
    run_sql,
    schema_objects,
    table_columns,
)
from sqlalchemy import Connection, create_engine, text
from support import api_client

from core.settings import DbSettings, Settings
from core.states import TaskState as T
from core.states import WorkflowState as W
from ops.localserver import PostgresServer
from ops.migrate import alembic_config

# The previous release is commit 037179a (no tags): `git show 037179a:alembic/versions/` lists
# 0001..0007, so its schema is revision 0007.
PREVIOUS = "0007"
SCRIPTS = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
HEAD = SCRIPTS.get_current_head()
REVISIONS = [r.revision for r in reversed(list(SCRIPTS.walk_revisions()))]
_numbers = itertools.count(1)
T0 = datetime(2026, 11, 1, tzinfo=UTC)
FINISHED = (W.SUCCESS, W.FAILURE, W.STOP)
LIVE = (W.RUNNING, W.PAUSE, W.SUBMITTED, W.READY_STOP, W.FAILOVER, W.SERIAL_WAIT)


@pytest.fixture
def database(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of its own (dropped after the test passes)."""
    if not pg_server.running:
        pg_server.start()
    name = f"dk_migrations_{next(_numbers)}"
    url = pg_server.create_database(name)
    failed = request.session.testsfailed
    yield url
    if pg_server.running and request.session.testsfailed == failed:
        pg_server.drop_database(name)


def _spec(name: str) -> str:
    tasks = [{"name": "a", "type": "SHELL", "command": "echo a"},
             {"name": "b", "type": "SHELL", "command": "echo b", "depends_on": ["a"]},
             {"name": "c", "type": "SHELL", "command": "echo c", "depends_on": ["b"]}]  # fmt: skip
    return json.dumps({"name": name, "tasks": tasks})


def fill_previous_release(c: Connection) -> dict[str, int]:
    """A few hundred rows of a cluster at revision 0007, in raw SQL of that schema: workflows and
    versions (one deleted), schedules, task groups, datasources, instances in every state with
    attempts (retries, a FANOUT with sub-executions, a SUB_PROCESS and its child), log chunks,
    commands, alerts, a backfill. Returns the ids the assertions look at."""
    x = c.execute
    for w in range(1, 9):
        x(text("INSERT INTO workflow_definition (id, name, description, latest_version, deleted,"
               " created_at) VALUES (:w, :n, :d, 2, :gone, :t)"),
          {"w": w, "n": f"wf{w}", "d": f"workflow {w}", "gone": w == 8, "t": T0})  # fmt: skip
        for v in (1, 2):
            x(text("INSERT INTO workflow_version (workflow_id, version, spec)"
                   " VALUES (:w, :v, CAST(:s AS jsonb))"), {"w": w, "v": v, "s": _spec(f"wf{w}")})  # fmt: skip
    for g in range(3):
        x(text("INSERT INTO task_group (name, capacity, description) VALUES (:n, :c, 'g')"),
          {"n": f"group{g}", "c": g + 1})  # fmt: skip
    for d, kind in enumerate(("POSTGRESQL", "MYSQL", "POSTGRESQL")):
        x(text("INSERT INTO datasource (name, kind, host, port, database, username, password_enc,"
               " options) VALUES (:n, :k, 'db.example', :p, 'dw', 'etl', 'gAAAA-enc', '{\"ssl\": true}')"),
          {"n": f"ds{d}", "k": kind, "p": 5432 + d})  # fmt: skip
    for s in range(1, 5):
        x(text("INSERT INTO schedule (id, workflow_id, cron, timezone, enabled, next_fire_time,"
               " worker_group) VALUES (:s, :s, '0 */2 * * *', 'Asia/Shanghai', :on, :t, 'etl')"),
          {"s": s, "on": s != 4, "t": T0 + timedelta(days=30)})  # fmt: skip
    states = [*FINISHED, *LIVE]
    ti = itertools.count(1)
    ids: dict[str, int] = {}
    for i in range(1, 61):
        st = states[i % len(states)]
        done = st in FINISHED
        sched = 1 + i % 4 if i % 3 == 0 else None
        x(text("INSERT INTO workflow_instance (id, workflow_id, version, state, priority, params,"
               " run_options, command_type, schedule_id, schedule_time, submit_time, start_time,"
               " end_time, owner, owner_epoch, run_count, reason) VALUES (:i, :w, :v, :st, :pr,"
               " CAST(:params AS jsonb), '{\"dry_run\": false}', :ct, :sid, :stime, :sub, :start,"
               " :end, :owner, :epoch, :runs, :reason)"),
          {"i": i, "w": 1 + i % 7, "v": 1 + i % 2, "st": st, "pr": i % 5,
           "params": json.dumps({"dt": f"2026-11-{1 + i % 28:02d}", "n": i}),
           "ct": "SCHEDULER" if sched else "START_PROCESS", "sid": sched,
           "stime": T0 + timedelta(hours=i) if sched else None,
           "sub": T0 + timedelta(minutes=i), "start": T0 + timedelta(minutes=i, seconds=5),
           "end": T0 + timedelta(minutes=i + 3) if done else None,
           "owner": None if done else "master-1", "epoch": None if done else 100 + i,
           "runs": 1 + i % 2, "reason": "task b failed" if st == W.FAILURE else None})  # fmt: skip
        for name in ("a", "b", "c"):
            tries = 2 if st == W.FAILURE and name == "b" else 1
            for attempt in range(1, tries + 1):
                t_id = next(ti)
                t_state = (T.FAILURE if st == W.FAILURE and name == "b" else
                           T.SUCCESS if done or name == "a" else T.RUNNING)  # fmt: skip
                x(text("INSERT INTO task_instance (id, workflow_instance_id, name, type, attempt,"
                       " state, worker_group, spec, output, host, worker_id, lease_token, pid,"
                       " log_path, exit_code, submit_time, start_time, end_time, task_group,"
                       " reason) VALUES (:id, :i, :n, 'SHELL', :a, :st, 'default',"
                       " CAST(:spec AS jsonb), CAST(:out AS jsonb), 'host1', 'w-1', :lease, :pid,"
                       " :lp, :code, :sub, :sub, :end, :tg, :reason)"),
                  {"id": t_id, "i": i, "n": name, "a": attempt, "st": t_state,
                   "spec": json.dumps({"command": f"echo {name}"}),
                   "out": json.dumps({"rows": t_id}), "lease": 1000 + t_id, "pid": 4000 + t_id,
                   "lp": f"{i}/{t_id}.log", "code": 1 if t_state == T.FAILURE else 0,
                   "sub": T0 + timedelta(minutes=i, seconds=attempt),
                   "end": None if t_state == T.RUNNING else T0 + timedelta(minutes=i + 1),
                   "tg": f"group{i % 3}" if name == "c" else None,
                   "reason": "exit code 1" if t_state == T.FAILURE else None})  # fmt: skip
                if i % 2 == 0:  # shipped logs, one chunk not valid UTF-8
                    for seq in range(3):
                        last = b"\xff" if seq == 2 else b""  # the last line is not UTF-8
                        data = f"{name}#{attempt} line {2 * seq}\nline {2 * seq + 1}".encode()
                        data += last + b"\n"
                        x(text("INSERT INTO task_log_chunk (task_instance_id, seq, first_line,"
                               " line_count, data) VALUES (:t, :s, :f, 2, :d)"),
                          {"t": t_id, "s": seq, "f": 2 * seq, "d": data})  # fmt: skip
                if (
                    st == W.FAILURE
                    and name == "b"
                    and attempt == 2
                    and i % 2 == 0
                    and "failed" not in ids
                ):
                    ids |= {"failed": i, "failed_b2": t_id}
        if i % 10 == 0:
            x(text("INSERT INTO command (type, workflow_id, version, instance_id, priority,"
                   " params, schedule_id, schedule_time) VALUES ('START_PROCESS', :w, 1, :i, 1,"
                   " '{\"start_nodes\": [\"b\"]}', :sid, :stime)"),
              {"w": 1 + i % 7, "i": i, "sid": sched, "stime": T0 + timedelta(hours=i) if sched else None})  # fmt: skip
        if st == W.FAILURE:
            x(text("INSERT INTO alert (kind, title, content, workflow_instance_id)"
                   " VALUES ('WORKFLOW_FAILURE', :t, '{\"task\": \"b\"}', :i)"),
              {"t": f"wf instance {i} failed", "i": i})  # fmt: skip
    # a FANOUT attempt with three sub-executions, and a SUB_PROCESS attempt with its child
    fan, subp = next(ti), next(ti)
    x(text("INSERT INTO task_instance (id, workflow_instance_id, name, type, state)"
           " VALUES (:f, 1, 'fan', 'FANOUT', :st), (:s, 1, 'sub', 'SUB_PROCESS', :st)"),
      {"f": fan, "s": subp, "st": T.SUCCESS})  # fmt: skip
    for h in range(3):
        x(text("INSERT INTO task_instance (id, workflow_instance_id, name, type, state, parent_id,"
               " target) VALUES (:id, 1, :n, 'SHELL', :st, :f, :h)"),
          {"id": next(ti), "n": f"fan[h{h}]", "st": T.SUCCESS, "f": fan, "h": f"h{h}"})  # fmt: skip
    x(text("INSERT INTO workflow_instance (id, workflow_id, version, state, command_type,"
           " parent_task_instance_id) VALUES (61, 2, 1, :st, 'START_PROCESS', :p)"),
      {"st": W.SUCCESS, "p": subp})  # fmt: skip
    x(text("INSERT INTO backfill (id, workflow_id, mode, parallelism, cron) VALUES"
           " (1, 1, 'PARALLEL', 2, '0 0 * * *'), (2, 3, 'SERIAL', 1, NULL)"))  # fmt: skip
    for seq in range(10):
        x(text("INSERT INTO backfill_run (backfill_id, seq, schedule_time, instance_id,"
               " submitted_at) VALUES (:b, :s, :t, :i, :t)"),
          {"b": 1 + seq % 2, "s": seq, "t": T0 + timedelta(days=seq), "i": 10 + seq})  # fmt: skip
    x(text("SELECT setval('node_epoch_seq', 5000)"))
    return ids | {"fanout": fan, "sub_process": subp}


def test_migrate_keeps_every_row_of_the_previous_release(
    pg_server: PostgresServer, database: str, settings: Settings, tmp_path: Path
) -> None:
    command.upgrade(alembic_config(database), PREVIOUS)
    eng = create_engine(database)
    with eng.begin() as c:
        ids = fill_previous_release(c)
    with eng.connect() as c:
        old_columns = table_columns(c)
        before = rowsets(c, old_columns)
        epoch_before = c.execute(text("SELECT last_value FROM node_epoch_seq")).scalar()
    total = sum(len(rows) for rows in before.values())
    counts = {t: len(r) for t, r in sorted(before.items())}
    assert total >= 400 and all(counts.values()), counts
    print(f"previous release ({PREVIOUS}): {total} rows: {counts}")

    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGKEEPER_")}
    env |= {"DAGKEEPER_DB__URL": database, "DAGKEEPER_DATA_DIR": str(tmp_path)}
    exe = Path(sys.executable).with_name("dagkeeper")
    done = subprocess.run(
        [str(exe), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "schema is at the newest revision" in done.stdout
    assert "Traceback" not in done.stderr

    with eng.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
        assert rowsets(c, old_columns) == before  # every row, every value of the old columns
        assert c.execute(text("SELECT last_value FROM node_epoch_seq")).scalar() == epoch_before
        for sql, expected in AFTER["0008"][:3] + AFTER["0010"]:
            assert [tuple(r) for r in c.execute(text(sql))] == expected, sql
        alerts = c.execute(
            text("SELECT DISTINCT status, tries, deliveries::text, sent_at FROM alert")
        )
        assert [tuple(r) for r in alerts] == [("SKIPPED", 0, "{}", None)]  # history is not mailed
        migrated = schema_objects(c)
    fresh = pg_server.create_database(f"dk_migrations_fresh_{next(_numbers)}")
    command.upgrade(alembic_config(fresh), "heads")
    fresh_eng = create_engine(fresh)
    with fresh_eng.connect() as c:
        assert migrated == schema_objects(c)  # the same schema a new install gets (indexes valid)
    fresh_eng.dispose()
    pg_server.drop_database(fresh.rsplit("/", 1)[1])
    eng.dispose()

    s = settings.model_copy(deep=True)
    s.db = DbSettings(url=database, managed=False)
    with api_client(s) as api:
        wfs = api.get("/api/v1/workflows", params={"limit": 100}).json()["items"]
        assert sorted(w["name"] for w in wfs) == [f"wf{w}" for w in range(1, 8)]
        assert {(w["project"], w["release_state"]) for w in wfs} == {("default", "ONLINE")}
        assert api.get("/api/v1/instances").json()["total"] == 61
        inst = api.get(f"/api/v1/instances/{ids['failed']}").json()
        assert inst["state"] == W.FAILURE and inst["reason"] == "task b failed"
        b = sorted((t for t in inst["tasks"] if t["name"] == "b"), key=lambda t: t["attempt"])
        assert [(t["attempt"], t["state"], t["exit_code"]) for t in b] == [
            (1, T.FAILURE, 1), (2, T.FAILURE, 1)]  # fmt: skip
        log = api.get(f"/api/v1/task-instances/{ids['failed_b2']}/log").json()
        assert log["lines"][:5] == ["b#2 line 0", "line 1", "b#2 line 2", "line 3", "b#2 line 4"]
        assert len(log["lines"]) == 6 and log["lines"][5].startswith("line 5")
        assert log["complete"] is True
        first = api.get("/api/v1/instances/1").json()
        subs = sorted(t["target"] for t in first["tasks"] if t.get("parent_id") == ids["fanout"])
        assert subs == ["h0", "h1", "h2"]
        sub_attempt = next(t for t in first["tasks"] if t["id"] == ids["sub_process"])
        assert sub_attempt["child_instance_id"] == 61
        assert (
            api.get("/api/v1/instances/61").json()["parent_task_instance_id"] == ids["sub_process"]
        )
        assert api.get("/api/v1/schedules").json()["total"] == 4
        assert len(api.get("/api/v1/datasources").json()["items"]) == 3


def _seeds_through(rev: str | None) -> list[str]:
    """The seed rows of every revision up to ``rev`` (none before the first)."""
    if rev is None:
        return []
    return [s for r in REVISIONS[: REVISIONS.index(rev) + 1] for s in SEEDS[r]]


def _has_downgrade(rev: str) -> bool:
    module: Any = SCRIPTS.get_revision(rev).module
    fn = getattr(module, "downgrade", None)
    return fn is not None and "op." in inspect.getsource(fn)


def test_every_revision_has_its_migration_test_data() -> None:
    assert REVISIONS[-1] == HEAD and REVISIONS[0] == "0001"
    assert sorted(SEEDS) == sorted(NEW) == REVISIONS  # a new revision needs its entries here


@pytest.mark.parametrize("rev", REVISIONS)
def test_revision_keeps_rows_creates_its_objects_and_downgrades(database: str, rev: str) -> None:
    down = SCRIPTS.get_revision(rev).down_revision
    assert down is None or isinstance(down, str)
    cfg = alembic_config(database)
    if down:
        command.upgrade(cfg, down)
    eng = create_engine(database)
    with eng.begin() as c:
        run_sql(c, _seeds_through(down))
    with eng.connect() as c:
        columns, objects = table_columns(c), schema_objects(c)
        rows = rowsets(c, columns)
    assert all(rows.values()), rows  # every table of the old schema holds a row

    command.upgrade(cfg, rev)
    with eng.begin() as c:
        after = schema_objects(c)
        assert rowsets(c, columns) == rows
        assert NEW[rev] <= after.keys(), sorted(NEW[rev] - after.keys())
        assert not NEW[rev] & objects.keys()
        assert not GONE.get(rev, set()) & after.keys()
        for sql, expected in AFTER.get(rev, []):
            assert [tuple(r) for r in c.execute(text(sql))] == expected, sql

    if not _has_downgrade(rev):
        print(f"revision {rev} defines no downgrade: not tested")
    else:
        command.downgrade(cfg, down or "base")
        with eng.connect() as c:
            assert schema_objects(c) == objects  # exactly the schema before it
            assert rowsets(c, columns) == rows
        command.upgrade(cfg, rev)
    with eng.begin() as c:  # the revision's own objects take rows
        run_sql(c, SEEDS[rev])
    eng.dispose()
