"""The standalone's demo: the diamond a -> b, a -> c, (b, c) -> d under the reserved name
``demo-diamond``, run through the REST API with its progress and an order check. The demo always
runs its own spec: if a user edited the workflow, its spec is restored as a new version first."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from core.spec import parse_workflow_spec
from core.states import WORKFLOW_TERMINAL, TaskState

if TYPE_CHECKING:
    from ops.standalone import Standalone

DEMO_TIMEOUT_S = 300.0
DEMO_NAME = "demo-diamond"
DEMO_SPEC: dict[str, Any] = {
    "name": DEMO_NAME,
    "description": "the standalone demo: a -> b, a -> c, (b, c) -> d",
    "params": {"greeting": "hello from dagkeeper"},
    "tasks": [
        {"name": "a", "type": "SHELL", "command": 'echo "a: $greeting"; sleep 0.5'},
        {"name": "b", "type": "SHELL", "command": "sleep 1; echo b", "depends_on": ["a"]},
        {"name": "c", "type": "SHELL", "command": "sleep 1; echo c", "depends_on": ["a"]},
        {"name": "d", "type": "SHELL", "command": "echo d: done", "depends_on": ["b", "c"]},
    ],
}


def demo_document() -> dict[str, Any]:
    """The demo's spec as the API stores it (defaults filled in)."""
    return parse_workflow_spec(DEMO_SPEC).model_dump(mode="json")


def ensure_demo(client: httpx.Client) -> int:
    """The id of the live ``demo-diamond`` whose latest version is the demo's own spec: created
    when missing, reused when unchanged, restored (a new version) when a user edited it."""
    found = client.get("/workflows", params={"name": DEMO_NAME}).raise_for_status().json()
    same = [w for w in found["items"] if w["name"] == DEMO_NAME]
    if not same:
        wf = client.post("/workflows", json=DEMO_SPEC).raise_for_status().json()
        print(f"demo: created workflow {DEMO_NAME!r} (id {wf['id']}): a -> b, a -> c, (b, c) -> d")
        return int(wf["id"])
    wid = int(same[0]["id"])
    current = client.get(f"/workflows/{wid}").raise_for_status().json()
    own = demo_document()
    if {k: current.get(k) for k in own} == own:
        print(f"demo: reusing workflow {DEMO_NAME!r} (id {wid}, version {current['version']})")
        return wid
    wf = client.put(f"/workflows/{wid}", json=DEMO_SPEC).raise_for_status().json()
    print(
        f"demo: workflow {DEMO_NAME!r} (id {wid}) was edited (version {current['version']});"
        f" the demo's own spec is restored as version {wf['version']}"
    )
    return wid


def run_demo(sa: Standalone, client: httpx.Client) -> str:
    """Create (or reuse, or restore) the diamond, run it, print progress and the timing check;
    its state."""
    wid = ensure_demo(client)
    started = time.monotonic()
    run = client.post(f"/workflows/{wid}/runs", json={}).raise_for_status().json()
    iid = run["instance_id"]
    print(f"demo: started instance {iid}", flush=True)
    seen: dict[str, tuple[int, str]] = {}
    state, deadline = "", started + DEMO_TIMEOUT_S
    while True:
        sa.check_children()
        inst = client.get(f"/instances/{iid}").raise_for_status().json()
        latest: dict[str, dict[str, Any]] = {}
        for t in sorted(inst["tasks"], key=lambda t: (t["attempt"], t["id"])):
            latest[t["name"]] = t
        for name, t in sorted(latest.items()):
            if seen.get(name) != (t["attempt"], t["state"]):
                seen[name] = (t["attempt"], t["state"])
                where = f" on {t['host']}" if t["host"] and t["state"] == TaskState.RUNNING else ""
                retry = f" (attempt {t['attempt']})" if t["attempt"] > 1 else ""
                print(f"  {time.monotonic() - started:5.1f}s  {name}: {t['state']}{where}{retry}")
        if inst["state"] != state:
            state = inst["state"]
            print(f"  {time.monotonic() - started:5.1f}s  instance {iid}: {state}", flush=True)
        if state in WORKFLOW_TERMINAL:
            break
        if time.monotonic() > deadline:
            print(f"demo: instance {iid} still {state} after {DEMO_TIMEOUT_S:.0f}s; giving up")
            return state
        if sa.stop_event.wait(0.2):
            print("demo: interrupted")
            return state
    print(f"demo: instance {iid} finished {state} in {time.monotonic() - started:.1f}s")
    print(f"  {'task':4}  {'state':8}  {'start':12}  {'end':12}  seconds")
    for name, t in sorted(latest.items()):
        secs = ""
        if t["start_time"] and t["end_time"]:
            delta = datetime.fromisoformat(t["end_time"]) - datetime.fromisoformat(t["start_time"])
            secs = f"{delta.total_seconds():.2f}"
        start, end = _clock(t["start_time"]), _clock(t["end_time"])
        print(f"  {name:4}  {t['state']:8}  {start:12}  {end:12}  {secs}")
    print(f"order check: {order_check(latest)}", flush=True)
    return state


def order_check(tasks: dict[str, dict[str, Any]]) -> str:
    """'OK ...' when b and c started after a ended and d after both ended, else what broke."""

    def ok(before: str, after: str) -> bool:
        end, start = tasks.get(before, {}).get("end_time"), tasks.get(after, {}).get("start_time")
        return bool(end and start and datetime.fromisoformat(start) >= datetime.fromisoformat(end))

    edges = (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"))
    broken = [f"{y} started before {x} ended" for x, y in edges if not ok(x, y)]
    if broken:
        return "FAILED: " + "; ".join(broken)
    return "OK: b and c started after a ended; d started after both b and c ended"


def _clock(iso: str | None) -> str:
    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S.%f")[:-3] if iso else "-"
