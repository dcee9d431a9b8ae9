"""Settings validation and workflow-spec validation messages."""

import pytest
from pydantic import ValidationError as PydanticValidationError

from core.errors import ValidationError
from core.settings import Settings
from core.spec import parse_workflow_spec
from core.zk_paths import ZkPaths


def test_nested_env_settings(monkeypatch):
    monkeypatch.setenv("DAGKEEPER_WORKER__GROUPS", "etl, gpu")
    monkeypatch.setenv("DAGKEEPER_ZK__SESSION_TIMEOUT_S", "6")
    monkeypatch.setenv("DAGKEEPER_API__PORT", "23456")
    s = Settings()
    assert s.worker.groups == ["etl", "gpu"]
    assert s.zk.session_timeout_s == 6 and s.api.port == 23456


def test_heartbeat_must_fit_in_session_timeout():
    with pytest.raises(PydanticValidationError, match="heartbeat_interval_s"):
        Settings(zk={"session_timeout_s": 2}, master={"heartbeat_interval_s": 1.5})


def test_report_deadline_must_fit_in_session_timeout():
    with pytest.raises(PydanticValidationError, match="report_retry_deadline_s"):
        Settings(zk={"session_timeout_s": 4}, worker={"report_retry_deadline_s": 5})


def test_zk_root_must_be_absolute():
    with pytest.raises(PydanticValidationError):
        Settings(zk={"root": "dagkeeper"})


def test_paths_layout():
    p = ZkPaths("/dk")
    assert p.master("m1") == "/dk/nodes/masters/m1"
    assert p.worker("default", "w1") == "/dk/nodes/workers/default/w1"
    assert p.queue_entry("default", "k") == "/dk/queue/default/k"
    assert p.lease(42) == "/dk/leases/42"
    assert p.lock("failover") == "/dk/locks/failover"
    with pytest.raises(ValueError):
        p.worker("a/b", "w")


def error_of(raw):
    with pytest.raises(ValidationError) as e:
        parse_workflow_spec(raw)
    return e.value


def test_missing_command_names_the_task():
    err = error_of({"name": "w", "tasks": [{"name": "a", "type": "SHELL"}]})
    assert "'a'" in err.message and "command" in err.message


def test_bad_field_names_the_task():
    err = error_of(
        {
            "name": "w",
            "tasks": [
                {"name": "ok", "command": "x"},
                {"name": "bad", "command": "x", "retries": -1},
            ],
        }
    )
    assert "'bad'" in err.message and "retries" in err.message


def test_unknown_type_and_timezone():
    err = error_of(
        {
            "name": "w",
            "timezone": "Mars/Olympus",
            "tasks": [{"name": "a", "type": "TELEPORT", "command": "x"}],
        }
    )
    assert "TELEPORT" in err.message and "Mars/Olympus" in err.message


def test_priorities_normalised():
    spec = parse_workflow_spec(
        {"name": "w", "priority": "high", "tasks": [{"name": "a", "command": "x", "priority": 0}]}
    )
    assert spec.priority == "HIGH" and spec.tasks[0].priority == "HIGHEST"
