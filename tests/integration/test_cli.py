"""The client CLI end to end, as a user runs it (the installed ``dagkeeper`` script in a
subprocess, HOME in a temp dir) against a real cluster: login, apply (YAML and an SDK file),
run --wait (exit 0 on success, 1 on a failing workflow; a live table and progress bar on a
terminal), --output json on the listings, logs --follow printing lines while the task runs,
backfill with progress, and one clear line with exit 2 for a wrong token or a refused spec."""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_sdk import TOKEN, Fleet, api_url, client, fleet  # noqa: F401

from dagkeeper import Client

DAGKEEPER = str(Path(sys.executable).with_name("dagkeeper"))
DIAMOND_YAML = """
name: cli_diamond
params: {greeting: hello}
tasks:
  - {name: a, command: "echo a ${greeting}"}
  - {name: b, command: "echo b", depends_on: [a]}
  - {name: c, command: "echo c", depends_on: [a]}
  - {name: d, command: "echo d", depends_on: [b, c]}
"""
SDK_FILE = """
from dagkeeper import Shell, Workflow

with Workflow("cli_py") as wf:
    Shell("one", "echo one") >> Shell("two", "echo two")
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def cli(
    home: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DAGKEEPER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=user_env(home, **env),
        stdin=subprocess.DEVNULL,
    )


def user_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGKEEPER_")}
    env.update({"HOME": str(home), "COLUMNS": "120", **extra})
    env.pop("TERM", None)
    return env


def ok(r: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert r.returncode == code, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout


def test_login_apply_run_and_json_listings(
    fleet: Fleet, api_url: str, home: Path, tmp_path: Path, timeout_scale: float
) -> None:
    out = ok(cli(home, "login", "--url", api_url, "--token", TOKEN))
    saved = home / ".dagkeeper" / "client.json"
    assert f"logged in to {api_url}" in out and str(saved) in out, out
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {"url": api_url, "token": TOKEN}
    # from here on the saved login is used: no --url, no --token
    (tmp_path / "diamond.yaml").write_text(DIAMOND_YAML)
    (tmp_path / "flow.py").write_text(SDK_FILE)
    assert "'cli_diamond': created (id" in ok(cli(home, "apply", str(tmp_path / "diamond.yaml")))
    assert "'cli_diamond': unchanged" in ok(cli(home, "apply", str(tmp_path / "diamond.yaml")))
    assert "'cli_py': created" in ok(cli(home, "apply", str(tmp_path / "flow.py")))

    out = ok(cli(home, "run", "cli_diamond", "--wait", "-p", "greeting=hi"))
    lines = out.splitlines()
    assert lines[-1].startswith("run ") and "(cli_diamond): SUCCESS in" in lines[-1], out
    progress = [ln for ln in lines if ln.startswith("[")]
    assert "a: SUCCESS" in progress[0] or "a: " in progress[0], progress
    assert any(ln.startswith("[4/4] d: SUCCESS") for ln in progress), progress
    order = [ln.split("] ")[1].split(":")[0] for ln in progress if ": SUCCESS" in ln]
    assert order[0] == "a" and order[-1] == "d" and sorted(order) == ["a", "b", "c", "d"], order

    apply_failing = {"name": "cli_fail", "tasks": [{"name": "boom", "command": "echo no; exit 3"}]}
    (tmp_path / "fail.json").write_text(json.dumps(apply_failing))
    ok(cli(home, "apply", str(tmp_path / "fail.json")))
    out = ok(cli(home, "run", "cli_fail", "--wait"), code=1)
    assert "boom: FAILURE" in out and "(cli_fail): FAILURE" in out, out

    started = json.loads(ok(cli(home, "run", "cli_py", "--no-wait", "-o", "json")))
    assert set(started) == {"instance_id"}
    names = {w["name"] for w in json.loads(ok(cli(home, "workflows", "-o", "json")))}
    assert {"cli_diamond", "cli_py", "cli_fail"} <= names
    inst = json.loads(ok(cli(home, "instances", "--workflow", "cli_diamond", "-o", "json")))
    assert (
        len(inst) == 1 and inst[0]["state"] == "SUCCESS" and inst[0]["params"]["greeting"] == "hi"
    )
    detail = json.loads(ok(cli(home, "show", str(inst[0]["id"]), "-o", "json")))
    assert sorted(t["name"] for t in detail["tasks"]) == ["a", "b", "c", "d"]
    assert "cli_diamond" in ok(cli(home, "show", str(inst[0]["id"])))
    assert json.loads(ok(cli(home, "schedules", "-o", "json"))) == []
    members = json.loads(ok(cli(home, "cluster", "-o", "json")))
    assert len(members["masters"]) == 1 and len(members["workers"]) == 4, members
    assert "cron leader:" in ok(cli(home, "cluster"))


def test_run_wait_on_a_terminal_shows_a_live_table_and_a_progress_bar(
    fleet: Fleet, api_url: str, home: Path, client: Client, timeout_scale: float
) -> None:
    # each task takes a second: the view polls twice a second, so it shows 1/2 for a while
    spec = {"name": "cli_tty", "tasks": [{"name": "x", "command": "sleep 1"}, {"name": "y",
            "command": "sleep 1", "depends_on": ["x"]}]}  # fmt: skip
    client.create_workflow(spec)
    leader, follower = pty.openpty()
    p = subprocess.Popen(
        [DAGKEEPER, "--url", api_url, "--token", TOKEN, "run", "cli_tty", "--wait"],
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        env=user_env(home, TERM="xterm", COLUMNS="100", LINES="40"),
    )
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 60 * timeout_scale
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        elif p.poll() is not None:
            break
    os.close(leader)
    assert p.wait(timeout=30) == 0, screen.decode(errors="replace")
    text = screen.decode(errors="replace")
    assert "━" in text, text  # the progress bar
    assert "task" in text and "state" in text and "attempt" in text, text  # the table's header
    assert "0/2 tasks" in text and "1/2 tasks" in text and "2/2 tasks" in text, text
    assert "(cli_tty): SUCCESS" in text, text


def test_a_wrong_token_or_a_refused_spec_is_one_clear_line_and_exit_2(
    api_url: str, home: Path, tmp_path: Path
) -> None:
    r = cli(home, "--url", api_url, "--token", "wrong", "workflows")
    ok(r, code=2)
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "API token" in r.stderr and "HTTP 401" in r.stderr, r.stderr
    assert "dagkeeper login" in r.stderr, r.stderr
    r = cli(home, "--url", api_url, "--token", "wrong", "login", "--url", api_url, "--token", "bad")
    ok(r, code=2)
    assert not (home / ".dagkeeper" / "client.json").exists()
    bad = {"name": "cli_bad", "tasks": [{"name": "a", "command": "true", "depends_on": ["ghost"]}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    r = cli(home, "apply", str(tmp_path / "bad.json"), DAGKEEPER_URL=api_url, DAGKEEPER_TOKEN=TOKEN)
    ok(r, code=2)
    assert "task 'a'" in r.stderr and "ghost" in r.stderr and "HTTP 422" in r.stderr, r.stderr
    r = cli(home, "run", "no_such_flow", DAGKEEPER_URL=api_url, DAGKEEPER_TOKEN=TOKEN)
    ok(r, code=2)
    assert r.stderr.strip() == "dagkeeper: no workflow named 'no_such_flow' (HTTP 404)", r.stderr
    r = cli(home, "run", "x", "-p", "novalue", DAGKEEPER_URL=api_url, DAGKEEPER_TOKEN=TOKEN)
    ok(r, code=2)
    assert "expected name=value" in r.stderr, r.stderr


def _lines(stream: Any, into: list[tuple[float, str]]) -> None:
    for line in stream:
        into.append((time.monotonic(), line.rstrip("\n")))


def test_logs_follow_prints_lines_while_the_task_runs(
    fleet: Fleet, api_url: str, home: Path, client: Client, timeout_scale: float
) -> None:
    ticks = 'for i in $(seq 1 6); do echo "tick $i"; sleep 0.5; done'
    wid = client.create_workflow({"name": "cli_ticks", "tasks": [{"name": "t", "command": ticks}]})[
        "id"
    ]
    run = client.run(wid)

    def running_attempt() -> dict[str, Any] | None:
        ts = run.refresh().tasks
        return ts[0] if ts and ts[0]["state"] in ("RUNNING", "SUCCESS") else None

    from ops.localserver import wait_for

    ti = wait_for(running_attempt, 30 * timeout_scale, 0.1, "the task to start")
    p = subprocess.Popen(
        [DAGKEEPER, "logs", str(ti["id"]), "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(home, DAGKEEPER_URL=api_url, DAGKEEPER_TOKEN=TOKEN),
    )
    seen: list[tuple[float, str]] = []
    reader = threading.Thread(target=_lines, args=(p.stdout, seen), daemon=True)
    reader.start()
    wait_for(lambda: any("tick" in s for _, s in seen), 30 * timeout_scale, 0.05, "a first line")
    state_at_first_line = client.task_instance(int(ti["id"]))["state"]
    assert p.wait(timeout=60 * timeout_scale) == 0, p.stderr.read() if p.stderr else ""
    reader.join(timeout=10)
    texts = [s for _, s in seen if s.startswith("tick")]
    assert texts == [f"tick {i}" for i in range(1, 7)], seen
    assert state_at_first_line == "RUNNING", "the first line came only after the task ended"
    assert seen[-1][0] - seen[0][0] > 1.0, seen  # lines arrived over time, not all at the end
    assert client.task_instance(int(ti["id"]))["state"] == "SUCCESS"


def test_backfill_runs_every_date_with_progress(
    fleet: Fleet, api_url: str, home: Path, client: Client
) -> None:
    spec = {"name": "cli_bf", "tasks": [{"name": "day", "command": "echo ${system.biz.date}"}]}
    client.create_workflow(spec)
    env = {"DAGKEEPER_URL": api_url, "DAGKEEPER_TOKEN": TOKEN}
    r = cli(home, "backfill", "cli_bf", "--start", "2026-01-01", "--end", "2026-01-04",
            "--parallel", "2", **env)  # fmt: skip
    out = ok(r)
    lines = out.splitlines()
    assert lines[0].startswith("backfill ") and "4 date(s), 2 at a time" in lines[0], out
    progress = [ln for ln in lines if "dates finished" in ln]
    assert progress and progress[-1].endswith("4/4 dates finished, 0 running"), out
    finished = [int(ln.split(": ")[1].split("/")[0]) for ln in progress]
    assert finished == sorted(finished), progress
    assert lines[-1].endswith(": DONE: 4 date(s), all succeeded"), out
    dates = sorted(i["schedule_time"][:10] for i in client.instances("cli_bf"))
    assert dates == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
