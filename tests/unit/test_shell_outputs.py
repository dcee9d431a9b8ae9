"""Worker pieces that need no servers: setValue parsing, line splitting, the SHELL plugin, the
output pump and process-group kills."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from worker.executor import base_env
from worker.task_types import (
    MAX_OUTPUT_KEYS,
    OutputCollector,
    UnknownTaskType,
    exit_code_of,
    get_task_type,
    kill_process_group,
    parse_set_values,
    pump_output,
    supported_types,
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# setValue


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("${setValue(x=1)}", {"x": "1"}),
        ("prefix ${setValue(name = hello world )} suffix", {"name": "hello world"}),
        ("${setValue(a=1)} and ${setValue(b=two)}", {"a": "1", "b": "two"}),
        ("${setValue(a=1)}${setValue(a=2)}", {"a": "2"}),
        ("${setValue(k=)}", {"k": ""}),
        ("${setValue(k=a=b)}", {"k": "a=b"}),
        ("${setValue(k=f(x))}", {"k": "f(x)"}),  # the value ends at the first ")}"
        ("${setValue(my.key-1=v)}", {"my.key-1": "v"}),
        ("$setValue(x=1)", {}),
        ("${setValue(=1)}", {}),
        ("${setValue(1x=1)}", {}),
        ("${setValue(x 1)}", {}),
        ("echo nothing", {}),
    ],
)
def test_parse_set_values(line: str, expected: dict[str, str]) -> None:
    assert parse_set_values(line) == expected


def test_collector_returns_whole_lines_and_collects_across_chunks() -> None:
    c = OutputCollector()
    assert c.feed(b"hello\n${setVal") == b"hello\n"
    assert c.feed(b"ue(x=1)}\npartial") == b"${setValue(x=1)}\n"
    assert c.values == {"x": "1"}
    assert c.feed(b" more") == b""
    assert c.flush() == b"partial more"
    assert c.flush() == b""


def test_collector_last_line_without_newline_counts() -> None:
    c = OutputCollector()
    c.feed(b"a\n${setValue(last=yes)}")
    assert c.values == {}
    assert c.flush() == b"${setValue(last=yes)}"
    assert c.values == {"last": "yes"}


def test_collector_later_value_wins_and_key_count_is_capped() -> None:
    c = OutputCollector()
    c.feed(b"${setValue(x=1)}\n${setValue(x=2)}\n")
    assert c.values == {"x": "2"}
    many = "".join(f"${{setValue(k{i}=v)}}\n" for i in range(MAX_OUTPUT_KEYS + 5))
    c.feed(many.encode())
    assert len(c.values) == MAX_OUTPUT_KEYS
    assert c.dropped == 6  # x took one slot


def test_collector_survives_invalid_utf8() -> None:
    c = OutputCollector()
    c.feed(b"\xff\xfe ${setValue(bin=\xc3\xa9t\xc3\xa9)}\n")
    assert c.values == {"bin": "été"}


def test_exit_code_of_signals() -> None:
    assert exit_code_of(0) == 0
    assert exit_code_of(3) == 3
    assert exit_code_of(-15) == 143
    assert exit_code_of(-9) == 137


# the SHELL plugin


def test_shell_registered() -> None:
    assert "SHELL" in supported_types()
    assert get_task_type("shell") is get_task_type("SHELL")
    with pytest.raises(UnknownTaskType):
        get_task_type("NO_SUCH_TYPE")


def test_shell_prepare_writes_script(tmp_path: Path) -> None:
    tt = get_task_type("SHELL")
    argv = tt.prepare({"command": "echo hi\necho there"}, {}, tmp_path)
    assert argv[0] == "bash"
    script = Path(argv[1])
    assert script.parent == tmp_path
    assert script.read_text() == "echo hi\necho there\n"


@pytest.mark.parametrize("spec", [{}, {"command": ""}, {"command": "   \n"}, {"command": 3}])
def test_shell_prepare_rejects_empty_command(tmp_path: Path, spec: dict) -> None:
    with pytest.raises(ValueError, match="command"):
        get_task_type("SHELL").prepare(spec, {}, tmp_path)


def test_task_env_never_inherits_dagkeeper_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGKEEPER_DB__URL", "postgresql://secret")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    env = base_env()
    assert "DAGKEEPER_DB__URL" not in env
    assert env["LC_ALL"] == "C.UTF-8"
    assert "PATH" in env


def run_shell(tmp_path: Path, command: str, env: dict[str, str] | None = None):
    tt = get_task_type("SHELL")
    full = {**base_env(), **(env or {})}
    argv = tt.prepare({"command": command}, full, tmp_path)
    return tt, tt.spawn(argv, full, tmp_path)


def test_shell_runs_with_params_as_env_and_collects_outputs(tmp_path: Path) -> None:
    command = "echo \"hello $who\"\necho oops >&2\necho '${setValue(x=1)}'\nexit 3"
    _, proc = run_shell(tmp_path, command, {"who": "world"})
    log = tmp_path / "out.log"
    c = OutputCollector()
    with open(log, "ab", buffering=0) as f:
        pump_output(proc, f, c, lambda now: None)
    assert proc.returncode == 3
    assert log.read_text().splitlines() == ["hello world", "oops", "${setValue(x=1)}"]
    assert c.values == {"x": "1"}


def test_pump_does_not_wait_for_background_children(tmp_path: Path) -> None:
    """A script that leaves a background process holding the pipe still ends."""
    _, proc = run_shell(tmp_path, "sleep 30 &\necho $! > bg.pid\necho done")
    c = OutputCollector()
    started = time.monotonic()
    with open(tmp_path / "out.log", "ab", buffering=0) as f:
        pump_output(proc, f, c, lambda now: None)
    assert proc.returncode == 0
    assert time.monotonic() - started < 5
    bg = int((tmp_path / "bg.pid").read_text())
    os.killpg(proc.pid, 9)
    wait_for(lambda: gone(bg))


def test_pump_tick_can_kill(tmp_path: Path) -> None:
    tt, proc = run_shell(tmp_path, "echo start\nsleep 30")
    fired: list[float] = []
    deadline = time.monotonic() + 0.3

    def tick(now: float) -> float | None:
        if now >= deadline and not fired:
            fired.append(now)
            tt.terminate(proc)
        return None if fired else deadline

    with open(tmp_path / "out.log", "ab", buffering=0) as f:
        pump_output(proc, f, OutputCollector(), tick)
    assert fired
    assert exit_code_of(proc.returncode) == 143


def test_kill_process_group_reaches_children(tmp_path: Path) -> None:
    """SIGTERM-resistant children die by the SIGKILL after the grace."""
    _, proc = run_shell(tmp_path, "bash -c 'trap \"\" TERM; sleep 60' &\necho $! > child.pid\nwait")
    wait_for(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text())
    child = int((tmp_path / "child.pid").read_text())
    assert not gone(child)
    rc = kill_process_group(proc, grace_s=0.2)
    assert rc is not None and exit_code_of(rc) == 143
    wait_for(lambda: gone(child))
    proc.stdout.close()


def test_spawn_gives_the_task_its_own_process_group(tmp_path: Path) -> None:
    _, proc = run_shell(tmp_path, "sleep 30")
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    assert kill_process_group(proc, grace_s=1) == -15
    proc.stdout.close()
