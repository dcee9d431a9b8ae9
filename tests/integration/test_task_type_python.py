"""PYTHON tasks through a real worker: parameters as environment variables, setValue outputs,
the interpreter from the task or the worker setting, failure exit codes and kill of the group."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from task_type_support import Bench, gone, log_of, read_text

from ops.localserver import wait_for


@pytest.fixture
def wrapper(tmp_path: Path) -> Path:
    """An 'interpreter' that marks its runs, then execs the real Python."""
    path = tmp_path / "marked-python"
    path.write_text(f'#!/bin/sh\nexport MARK=wrapped\nexec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return path


def test_python_params_outputs_interpreters_and_failure(bench: Bench, wrapper: Path) -> None:
    bench.start_worker()
    script = (
        "import os, sys\n"
        "print('hello', os.environ['who'])\n"
        "print('exe', sys.executable, os.environ.get('MARK', 'plain'))\n"
        "print('${setValue(total=%d)}' % (int(os.environ['n']) * 2))\n"
    )
    _, got = bench.run_tasks(
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
    )
    plain, wrapped, bad, missing = got.values()
    assert (plain.state, plain.exit_code, plain.output) == ("SUCCESS", 0, {"total": "42"})
    assert "hello world" in log_of(plain) and f"exe {sys.executable} plain" in log_of(plain)
    assert (wrapped.state, wrapped.output) == ("SUCCESS", {"total": "2"})
    assert "wrapped" in log_of(wrapped)
    assert (bad.state, bad.exit_code) == ("FAILURE", 3) and "bad" in log_of(bad)
    assert missing.state == "FAILURE" and "/no/such/python" in log_of(missing)


def test_worker_python_setting_and_kill_reaches_children(
    bench: Bench, wrapper: Path, tmp_path: Path
) -> None:
    w = bench.start_worker(python=str(wrapper), kill_grace_s=0.5)
    pids = tmp_path / "pids"
    script = (
        "import os, subprocess, time\n"
        "print(os.environ.get('MARK'), flush=True)\n"
        f"p = subprocess.Popen(['sleep', '300'])\nopen({str(pids)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n"
    )
    ti, row = bench.running({"type": "PYTHON", "script": script})
    wait_for(lambda: read_text(pids).strip(), 10 * bench.scale, what="child pid")
    child = int(read_text(pids))
    assert w.kill_task(ti)
    done = bench.wait([ti], timeout=10)[ti]
    assert done.state == "KILL"
    assert row.pid is not None and gone(row.pid)
    wait_for(lambda: gone(child), 5 * bench.scale, what="child killed")
    assert "wrapped" in log_of(bench.row(ti))
