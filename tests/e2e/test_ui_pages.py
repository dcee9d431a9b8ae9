"""More of the web UI in chromium: a workflow's graph and the diff of two versions, a run from a
chosen node, a schedule created with its live next-fires preview (and the API's 422 shown as
it is), enabled and disabled; the instance page on a narrow screen."""

from __future__ import annotations

import re

from conftest import RecordedPage, Stack, sign_in
from playwright.sync_api import expect

FLOW = {
    "name": "versions-ui",
    "tasks": [
        {"name": "extract", "type": "SHELL", "command": "echo extract"},
        {"name": "load", "type": "SHELL", "command": "echo load v1", "depends_on": ["extract"]},
    ],
}


def test_versions_diff_and_run_from_a_node(ui: RecordedPage, ui_stack: Stack) -> None:
    wf = ui_stack.create_workflow(FLOW)
    v2 = {**FLOW, "tasks": [FLOW["tasks"][0], {**FLOW["tasks"][1], "command": "echo load v2"}]}
    r = ui_stack.client.put(f"/workflows/{wf['id']}", json=v2)
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    page = ui.page
    sign_in(ui, ui_stack)
    page.goto(f"{ui_stack.base_url}/ui/workflows/{wf['id']}")
    for name in ("extract", "load"):
        expect(page.locator(f'g[data-task="{name}"]')).to_have_attribute(
            "data-state", "NOT_STARTED"
        )
    page.get_by_role("button", name="Diff with v1").click()
    diff = page.locator("pre.diff")
    expect(diff.locator(".del")).to_contain_text("echo load v1")
    expect(diff.locator(".add")).to_contain_text("echo load v2")
    expect(page.get_by_text("v1 → v2: 2 changed lines")).to_be_visible()

    # click a node: the Run dialog starts from it (TASK_POST: it and what follows)
    page.locator('g[data-task="load"]').click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("load", exact=True)).to_be_checked()
    expect(dialog.get_by_label("extract", exact=True)).not_to_be_checked()
    dialog.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r".*/ui/instances/\d+$"))
    iid = int(page.url.rsplit("/", 1)[1])
    expect(page.locator('g[data-task="load"]')).to_have_attribute(
        "data-state", "SUCCESS", timeout=30_000
    )
    expect(page.locator('g[data-task="extract"]')).to_have_attribute("data-state", "NOT_STARTED")
    assert ui_stack.instance(iid)["run_options"]["start_nodes"] == ["load"]


def test_schedule_with_live_preview(ui: RecordedPage, ui_stack: Stack) -> None:
    wf = ui_stack.create_workflow({**FLOW, "name": "scheduled-ui"})
    page = ui.page
    sign_in(ui, ui_stack)
    page.get_by_role("link", name="Schedules").click()
    page.get_by_role("button", name="New schedule").click()
    form = page.get_by_role("form", name="new schedule")
    form.get_by_label("Workflow").select_option(label="scheduled-ui")
    form.get_by_label("Time zone").fill("Europe/Berlin")
    cron = form.locator('input[name="cron"]')
    cron.fill("0 61 * * *")
    said = ui_stack.client.get(
        "/cron/preview", params={"expr": "0 61 * * *", "timezone": "Europe/Berlin"}
    )
    assert said.status_code == 422
    expect(form.get_by_role("alert")).to_have_text(said.json()["error"]["message"])
    cron.fill("30 2 * * *")
    fires = form.locator("li[data-fire]")
    expect(fires).to_have_count(6)
    expected = ui_stack.client.get(
        "/cron/preview", params={"expr": "30 2 * * *", "timezone": "Europe/Berlin", "count": 6}
    ).json()["items"]
    assert [f.get_attribute("data-fire") for f in fires.all()] == [i["utc"] for i in expected]
    form.get_by_role("button", name="Create").click()
    row = page.locator("tr[data-schedule]").filter(has_text="scheduled-ui")
    expect(row).to_contain_text("30 2 * * *")
    expect(row.locator("td").nth(5)).to_have_text("yes")
    row.get_by_role("button", name="Disable").click()
    expect(row.locator("td").nth(5)).to_have_text("no")
    (sched,) = ui_stack.client.get("/schedules", params={"workflow_id": wf["id"]}).json()["items"]
    assert sched["enabled"] is False and sched["timezone"] == "Europe/Berlin"
    row.get_by_role("button", name="Enable").click()
    expect(row.locator("td").nth(5)).to_have_text("yes")


def test_instance_page_on_a_narrow_screen(ui: RecordedPage, ui_stack: Stack) -> None:
    wf = ui_stack.create_workflow({**FLOW, "name": "narrow-ui"})
    iid = ui_stack.run(wf["id"])
    page = ui.page
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(ui, ui_stack)
    page.goto(f"{ui_stack.base_url}/ui/instances/{iid}?task=load")
    expect(page.locator(f'section[data-instance="{iid}"]')).to_have_attribute(
        "data-state", "SUCCESS", timeout=30_000
    )
    expect(page.locator('section[data-panel-task="load"] pre.log-lines')).to_contain_text("load v1")
    expect(page.get_by_role("navigation", name="main")).to_be_visible()
    # nothing wider than the screen: the graph and the tables scroll inside their own boxes
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
        " > window.innerWidth + 1 && !(e.parentElement && e.parentElement.closest('.dag-wrap,"
        " .gantt-wrap, .table-wrap')))"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right)"
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), wide
    page.set_viewport_size({"width": 1280, "height": 800})


def test_fanout_targets_and_sub_process_children_by_click(
    ui: RecordedPage, ui_stack: Stack
) -> None:
    child = ui_stack.create_workflow(
        {
            "name": "child-ui",
            "tasks": [{"name": "inner", "type": "SHELL", "command": "echo inside"}],
        }
    )
    parent = ui_stack.create_workflow(
        {
            "name": "parent-ui",
            "tasks": [
                {
                    "name": "fan",
                    "type": "FANOUT",
                    "command": "echo on $DAGKEEPER_FANOUT_TARGET",
                    "targets": {"hosts": ["w1"]},
                },
                {
                    "name": "sub",
                    "type": "SUB_PROCESS",
                    "workflow_id": child["id"],
                    "depends_on": ["fan"],
                },
            ],
        }
    )
    iid = ui_stack.run(parent["id"])
    page = ui.page
    sign_in(ui, ui_stack)
    page.goto(f"{ui_stack.base_url}/ui/instances/{iid}")
    section = page.locator(f'section[data-instance="{iid}"]')
    expect(section).to_have_attribute("data-state", "SUCCESS", timeout=45_000)
    target = page.locator("tr.sub").filter(has_text="w1")
    expect(target).to_have_count(1)
    target.get_by_role("button", name="Log").click()
    expect(page.locator("pre.log-lines")).to_contain_text("on w1")

    page.get_by_role("link", name=re.compile(r"^child #\d+$")).click()
    page.wait_for_url(re.compile(r".*/ui/instances/\d+$"))
    child_id = int(page.url.rsplit("/", 1)[1])
    assert child_id != iid
    expect(page.locator('g[data-task="inner"]')).to_have_attribute("data-state", "SUCCESS")
    page.get_by_role("link", name=f"instance #{iid}").click()
    expect(page.locator(f'section[data-instance="{iid}"]')).to_be_visible()
