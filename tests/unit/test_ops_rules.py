"""The operators' tools' pure rules: the rolling restart's plan and its "replaced" check, the
restart command's argv (no shell), `dagkeeper status`'s minimums and text, purge's ages, and what
`standalone --reset` removes (and refuses)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.settings import Settings
from ops import reset, rolling, status
from ops.purge import parse_age


def _doc(masters: list[str], workers: dict[str, bool]) -> dict[str, Any]:
    return {
        "zookeeper": {"hosts": "zk:2181", "root": "/dagkeeper", "ok": True},
        "postgresql": {"url": "pg/dagkeeper", "ok": True, "revision": "0011", "newest": "0012",
                       "live_instances": {"RUNNING": 2}, "commands_waiting": 0},
        "masters": [{"id": m, "host": "h", "pid": 10 + i, "epoch": i, "instances": 1,
                     "heartbeat_age_s": 0.5, "cron_leader": i == 0} for i, m in enumerate(masters)],
        "workers": [{"id": w, "host": w.split("-")[0], "pid": 20, "epoch": 1, "groups": ["default"],
                     "running": 1, "capacity": 4, "draining": d} for w, d in workers.items()],
    }  # fmt: skip


def test_the_plan_restarts_masters_first_then_workers_each_by_id() -> None:
    doc = _doc(["m-b", "m-a"], {"w2-1": False, "w1-1": False})
    assert [(t.role, t.id) for t in rolling.plan(doc)] == [
        ("master", "m-a"), ("master", "m-b"), ("worker", "w1-1"), ("worker", "w2-1")
    ]  # fmt: skip
    assert [t.id for t in rolling.plan(doc, only="worker")] == ["w1-1", "w2-1"]


def test_a_daemon_counts_as_replaced_only_when_gone_and_a_serving_one_is_new() -> None:
    before = {"w1-1", "w2-1"}
    target = rolling.Target("worker", "w1-1", "w1", 20)
    still = _doc([], {"w1-1": True, "w2-1": False})
    assert rolling.replaced(target, before, still) == (False, "worker w1-1 is still registered")
    gone = _doc([], {"w2-1": False})
    assert rolling.replaced(target, before, gone) == (False, "1 of 2 workers registered")
    draining_new = _doc([], {"w2-1": False, "w1-2": True})
    assert rolling.replaced(target, before, draining_new)[0] is False
    back = _doc([], {"w2-1": False, "w1-2": False})
    assert rolling.replaced(target, before, back) == (True, "worker w1-1 replaced by w1-2")


def test_the_restart_command_is_an_argv_with_placeholders_never_a_shell_line() -> None:
    t = rolling.Target("master", "vm-1-ab", "vm; rm -rf /", 42)
    argv = rolling.command_for("ssh {host} systemctl restart 'dagkeeper-{role}'", t)
    assert argv == ["ssh", "vm; rm -rf /", "systemctl", "restart", "dagkeeper-master"]
    assert rolling.command_for("kill -TERM {pid}", t) == ["kill", "-TERM", "42"]
    with pytest.raises(KeyError):
        rolling.command_for("kill {nope}", t)


def test_status_minimums_ignore_draining_workers_and_the_text_says_what_runs() -> None:
    doc = _doc(["m-a"], {"w1-1": False, "w2-1": True})
    assert status.enough(doc, 1, 1) == (True, "1 master(s) of 1, 1 worker(s) of 1 registered")
    assert status.enough(doc, 1, 2)[0] is False
    text = status.render(doc)
    assert "schema 0011 (newest is 0012: run dagkeeper migrate)" in text
    assert "live instances: 2 RUNNING" in text
    assert "m-a  host h pid 10 epoch 0: 1 instance(s), cron leader" in text
    assert "w2-1  host w2 pid 20 epoch 1: groups default, running 1 of 4, DRAINING" in text
    down = {**doc, "zookeeper": {**doc["zookeeper"], "ok": False, "error": "timed out"}}
    assert "ZooKeeper   zk:2181 /dagkeeper: unreachable (timed out)" in status.render(down)


@pytest.mark.parametrize(
    ("text", "age"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
     ("3600s", timedelta(hours=1)), ("2w", timedelta(days=14)), (" 1.5d ", timedelta(hours=36))],
)  # fmt: skip
def test_purge_ages(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["30", "d", "-1d", "0d", "30 days", "1y"])
def test_a_bad_purge_age_names_the_option(text: str) -> None:
    with pytest.raises(ValueError, match="--older-than"):
        parse_age(text)


def _settings(data: Path) -> Settings:
    """Defaults and this data dir only (no DAGKEEPER_* environment read)."""
    return Settings.model_construct(data_dir=str(data))


def _standalone_dir(data: Path) -> None:
    (data / "postgres" / "pgdata").mkdir(parents=True)
    (data / "zookeeper").mkdir()
    (data / "logs" / "1").mkdir(parents=True)
    for name in ("api-token", "zk-password", "secret.key", "client.env"):
        (data / name).write_text("x")


def test_reset_removes_the_clusters_entries_and_nothing_else(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _standalone_dir(data)
    (data / "my-notes.txt").write_text("keep me")
    removed = reset.reset(_settings(data))
    assert sorted(p.name for p in removed) == sorted(
        ["postgres", "zookeeper", "logs", "api-token", "zk-password", "secret.key", "client.env"]
    )
    assert sorted(p.name for p in data.iterdir()) == ["my-notes.txt"]


def test_reset_refuses_while_the_clusters_postgresql_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _standalone_dir(data)
    (data / "postgres" / "pgdata" / "postmaster.pid").write_text(f"{os.getpid()}\n/pgdata\n")
    with pytest.raises(ConfigError, match=f"is running \\(PostgreSQL pid {os.getpid()}\\)"):
        reset.reset(_settings(data))
    assert (data / "api-token").exists()
