"""Parameters through the REST API on a real master, worker, PostgreSQL and ZooKeeper: precedence of
global < upstream output < start-up < task-local, built-ins and time expressions in the workflow's
zone, setValue flowing to direct downstream tasks only, quoting against injection, and a bad
expression failing only its task with the reason in the log."""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from support import Cluster, log_lines, run, wait_terminal


def field(lines: list[str], key: str) -> str:
    found = [ln[len(key) + 1 :] for ln in lines if ln.startswith(key + "=")]
    assert len(found) == 1, (key, lines)
    return found[0]


def test_precedence_builtins_outputs_and_quoting(
    cluster: Cluster, api: TestClient, tmp_path: Path, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    pwned = tmp_path / "pwned"
    evil = f"; touch {pwned}"
    down = "\n".join(
        [
            'echo "p=${p1},${p2},${p3},${p4}"',
            "echo d=${system.biz.date} c=${system.biz.curdate} y=$[yyyyMMdd-1] day=${day}",
            'echo "t=$[yyyy-MM-dd HH:mm] w=$[week_first_day(yyyy-MM-dd,0)]"',
            'echo "env=$p4,$system_biz_date"',
            "echo flow=${flow}",
            "echo evil=${evil}",
            'echo "evil2=${evil}" && echo evil3=$(echo ${evil})',
            "echo '${setValue(passed='\"${flow}\"'-again)}'",
        ]
    )
    spec = {
        "name": "params-precedence",
        "timezone": "Europe/Berlin",
        "params": {
            "p1": "global",
            "p2": "global",
            "p3": "global",
            "p4": "global",
            "day": "${system.biz.date}",
        },
        "tasks": [
            {
                "name": "up",
                "command": "echo '${setValue(p2=upstream)}'; echo '${setValue(p3=upstream)}'\n"
                "echo '${setValue(p4=upstream)}'; echo '${setValue(flow=from up)}'",
            },
            {"name": "down", "depends_on": ["up"], "params": {"p4": "local"}, "command": down},
            {"name": "last", "depends_on": ["down"], "command": 'echo "last=${passed}|${flow}"'},
        ],
    }
    iid = run(api, spec, params={"p3": "startup", "p4": "startup", "evil": evil})
    inst = wait_terminal(api, iid, 60 * timeout_scale)
    assert inst["state"] == "SUCCESS", inst
    tasks = {t["name"]: t for t in inst["tasks"]}
    out = log_lines(api, tasks["down"]["id"], 15 * timeout_scale)

    assert field(out, "p") == "global,upstream,startup,local", out
    # a manual run: the base time is the instance's start, in the workflow's zone
    local = datetime.fromisoformat(inst["start_time"]).astimezone(ZoneInfo("Europe/Berlin"))
    biz = (local.date() - timedelta(days=1)).strftime("%Y%m%d")
    cur = local.strftime("%Y%m%d")
    assert field(out, "d") == f"{biz} c={cur} y={biz} day={biz}", out
    monday = local.date() - timedelta(days=local.weekday())
    assert field(out, "t") == f"{local:%Y-%m-%d %H:%M} w={monday:%Y-%m-%d}", out
    assert field(out, "env") == f"local,{biz}", out  # environment variables, dotted names aliased
    assert field(out, "flow") == "from up", out
    # the start-up value is data: it is echoed, never run
    assert not pwned.exists()
    assert field(out, "evil") == evil and field(out, "evil2") == evil, out
    assert field(out, "evil3") == evil, out

    r = api.get(f"/api/v1/task-instances/{tasks['down']['id']}")
    assert r.status_code == 200 and r.json()["output"] == {"passed": "from up-again"}, r.text
    # the command as it ran: every substituted value quoted for where it stands
    assert f"echo evil={shlex.quote(evil)}\n" in r.json()["spec"]["command"], r.text
    # outputs reach direct downstream tasks only: 'last' gets down's 'passed', not up's 'flow'
    assert log_lines(api, tasks["last"]["id"], 15 * timeout_scale) == ["last=from up-again|"]


def test_a_bad_expression_fails_its_task_with_the_reason(
    cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    cluster.start_master()
    cluster.start_worker()
    spec = {
        "name": "params-bad",
        "params": {"g": "$[yyyyMMdd]"},
        "tasks": [
            {"name": "ok", "command": "echo fine ${g}"},
            {"name": "badexpr", "command": "echo $[yyyyMMdd+q]"},
            {"name": "cycle", "params": {"a": "${b}", "b": "${a}"}, "command": "echo ${g}"},
        ],
    }
    iid = run(api, spec)
    inst = wait_terminal(api, iid, 60 * timeout_scale)
    assert inst["state"] == "FAILURE", inst
    tasks = {t["name"]: t for t in inst["tasks"]}
    assert tasks["ok"]["state"] == "SUCCESS", tasks
    assert tasks["badexpr"]["state"] == tasks["cycle"]["state"] == "FAILURE", tasks
    bad = log_lines(api, tasks["badexpr"]["id"], 15 * timeout_scale)
    assert any("$[yyyyMMdd+q]" in ln for ln in bad), bad
    cyc = log_lines(api, tasks["cycle"]["id"], 15 * timeout_scale)
    assert any("parameter cycle" in ln and "${a}" in ln for ln in cyc), cyc

    # the master carries on
    iid2 = run(api, {"name": "params-after", "tasks": [{"name": "t", "command": "echo $[yyyy]"}]})
    assert wait_terminal(api, iid2, 30 * timeout_scale)["state"] == "SUCCESS"
