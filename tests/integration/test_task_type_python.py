"""PYTHON tasks through a real worker: parameters as environment variables, setValue outputs,
the interpreter from the task or the worker setting, failure exit codes and kill of the group."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from task_type_support import (
    create_run,
    gone,
    log_of,
    push,
    read_text,
    rows,
    run_tasks,
    wait_rows,
)

from coord.zk import ZkClient
from db.engine import SessionFactory
from ops.localserver import wait_for
from worker.server import WorkerServer


@pytest.fixture
def wrapper(tmp_path: Path) -> Path:
    """An 'interpreter' that marks its runs, then execs the real Python."""
    path = tmp_path / "marked-python"
    path.write_text(f'#!/bin/sh\nexport MARK=wrapped\nexec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return path


def test_python_params_outputs_interpreters_and_failure(
    sf: SessionFactory,
    zk: ZkClient,
    start_worker: Callable[..., WorkerServer],
    wrapper: Path,
    timeout_scale: float,
) -> None:
    start_worker()
    script = (
        "import os, sys\n"
        "print('hello', os.environ['who'])\n"
        "print('exe', sys.executable, os.environ.get('MARK', 'plain'))\n"
        "print('${setValue(total=%d)}' % (int(os.environ['n']) * 2))\n"
    )
    _, got = run_tasks(
        sf,
        zk,
        [
            {"type": "PYTHON", "script": script, "env": {"who": "world", "n": "21"}},
            {
                "type": "PYTHON",
                "script": script,
                "interpreter": str(wrapper),
                "env": {"who": "x", "n": "1"},
            },
            {"type": "PYTHON", "script": "import sys\nprint('bad')\nsys.exit(3)"},
            {"type": "PYTHON", "script": "print(1)", "interpreter": "/no/such/python"},
        ],
        timeout_scale,
    )
    plain, wrapped, bad, missing = got.values()
    assert (plain.state, plain.exit_code, plain.output) == ("SUCCESS", 0, {"total": "42"})
    assert "hello world" in log_of(plain) and f"exe {sys.executable} plain" in log_of(plain)
    assert (wrapped.state, wrapped.output) == ("SUCCESS", {"total": "2"})
    assert "wrapped" in log_of(wrapped)
    assert (bad.state, bad.exit_code) == ("FAILURE", 3) and "bad" in log_of(bad)
    assert missing.state == "FAILURE" and "/no/such/python" in log_of(missing)


def test_worker_python_setting_and_kill_reaches_children(
    sf: SessionFactory,
    zk: ZkClient,
    start_worker: Callable[..., WorkerServer],
    wrapper: Path,
    tmp_path: Path,
    timeout_scale: float,
) -> None:
    w = start_worker(python=str(wrapper), kill_grace_s=0.5)
    pids = tmp_path / "pids"
    script = (
        "import os, subprocess, time\n"
        "print(os.environ.get('MARK'), flush=True)\n"
        f"p = subprocess.Popen(['sleep', '300'])\nopen({str(pids)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n"
    )
    run = create_run(sf, [{"type": "PYTHON", "script": script}])
    push(zk, run)
    ti = run.task_ids[0]
    row = wait_rows(sf, [ti], timeout_scale, states={"RUNNING"})[ti]
    wait_for(lambda: read_text(pids).strip(), 10 * timeout_scale, what="child pid")
    child = int(read_text(pids))
    assert w.kill_task(ti)
    done = wait_rows(sf, [ti], timeout_scale, timeout=10)[ti]
    assert done.state == "KILL"
    assert row.pid is not None and gone(row.pid)
    wait_for(lambda: gone(child), 5 * timeout_scale, what="child killed")
    assert "wrapped" in log_of(rows(sf, [ti])[ti])
