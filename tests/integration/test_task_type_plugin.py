"""A third-party task type: the ECHO package under tests/plugins is pip-installed into a temp
directory put on sys.path; its entry points make ECHO a known type with its own validator (spec
validation and the REST API) and a worker runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import api_client
from task_type_support import Bench, log_of

import worker.task_types as worker_types
from coord.zk import ZkClient
from core import task_types
from core.errors import ValidationError
from core.settings import Settings
from core.spec import parse_workflow_spec

PLUGIN_SRC = Path(__file__).resolve().parent.parent / "plugins" / "dk_echo_plugin"


@pytest.fixture
def echo_plugin(tmp_path: Path, timeout_scale: float) -> Iterator[Path]:
    src = tmp_path / "src"
    shutil.copytree(PLUGIN_SRC, src)  # the build writes into the source directory
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(src)],
        check=True, timeout=300 * timeout_scale,
    )  # fmt: skip
    assert (target / "dk_echo_plugin").is_dir()
    sys.path.insert(0, str(target))
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for mod in [m for m in sys.modules if m.startswith("dk_echo_plugin")]:
            del sys.modules[mod]
        task_types.forget("ECHO")
        worker_types.forget("ECHO")


def test_plugin_type_is_validated_and_runs_on_a_worker(
    bench: Bench, echo_plugin: Path, zk: ZkClient, settings: Settings
) -> None:
    assert "ECHO" in task_types.load_plugins(force=True)
    assert "ECHO" in task_types.known_types()
    # the plugin's own validator names the field
    with pytest.raises(ValidationError) as e:
        parse_workflow_spec({"name": "w", "tasks": [{"name": "e", "type": "echo", "times": 99}]})
    assert "task 'e': message: is required" in e.value.message and "times" in e.value.message

    with api_client(settings, bench.sf, zk) as c:
        ok = {"name": "wf", "tasks": [{"name": "e", "type": "ECHO", "message": "hi"}]}
        assert c.post("/api/v1/workflows", json=ok).status_code == 201
        bad = {"name": "wf2", "tasks": [{"name": "e", "type": "ECHO", "times": 2}]}
        r = c.post("/api/v1/workflows", json=bad)
        assert r.status_code == 422 and "message" in r.json()["error"]["message"]

    bench.start_worker()  # discovers the entry point at start
    assert "ECHO" in worker_types.supported_types()
    _, got = bench.run_tasks(
        [{"type": "ECHO", "message": "hello-plugin", "times": 3, "env": {"greeting": "hey"}}],
    )
    (row,) = got.values()
    assert (row.state, row.output) == ("SUCCESS", {"echoed": "hello-plugin"}), log_of(row)
    assert log_of(row).count("hello-plugin\n") == 3 and "plugin env hey" in log_of(row)
    assert type(worker_types.get_task_type("ECHO")).__module__ == "dk_echo_plugin"
