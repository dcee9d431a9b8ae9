"""The web UI in Debian's chromium against a real cluster: sign in, start the diamond by
clicking, watch its nodes turn SUCCESS, read a log; stop a long run; refused actions carry the
API's reason; a bad token gets a clear sign-in error; nothing is loaded from elsewhere."""

from __future__ import annotations

import re
import time

import httpx
from conftest import TOKEN, RecordedPage, Stack, shot, sign_in
from playwright.sync_api import expect

DIAMOND = {
    "name": "diamond-ui",
    "description": "a -> b, a -> c, (b, c) -> d",
    "params": {"greeting": "hello"},
    "tasks": [
        {"name": "a", "type": "SHELL", "command": "echo $greeting from a; sleep 1"},
        {
            "name": "b",
            "type": "SHELL",
            "command": "for i in 1 2 3; do echo b line $i; done; sleep 1",
            "depends_on": ["a"],
        },
        {"name": "c", "type": "SHELL", "command": "echo c; sleep 1", "depends_on": ["a"]},
        {"name": "d", "type": "SHELL", "command": "echo d done", "depends_on": ["b", "c"]},
    ],
}


def test_diamond_run_by_clicking(ui: RecordedPage, ui_stack: Stack) -> None:
    wf = ui_stack.create_workflow(DIAMOND)
    page = ui.page
    sign_in(ui, ui_stack)
    row = page.locator(f'tr[data-workflow="{wf["name"]}"]')
    expect(row).to_be_visible()
    assert page.url.endswith("/ui/"), page.url
    shot(page, "workflows.png")

    row.get_by_role("button", name="Run…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r".*/ui/instances/\d+$"))
    instance_id = int(page.url.rsplit("/", 1)[1])

    for name in "abcd":
        expect(page.locator(f'g[data-task="{name}"]')).to_have_attribute(
            "data-state", "SUCCESS", timeout=60_000
        )
    expect(page.locator(f'section[data-instance="{instance_id}"]')).to_have_attribute(
        "data-state", "SUCCESS"
    )
    assert ui_stack.instance(instance_id)["state"] == "SUCCESS"

    # the live page polled at most once a second
    polls = [t for t, _, u in ui.requests if u.endswith(f"/api/v1/ui/instances/{instance_id}")]
    assert len(polls) >= 2
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    assert min(gaps) >= 0.95, gaps

    # keyboard: focus b, arrow to d, Enter opens d's panel and log
    page.locator('g[data-task="b"]').focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator('g[data-task="d"]')).to_be_focused()
    page.keyboard.press("ArrowLeft")
    page.locator('g[data-task="b"]').press("Enter")
    panel = page.locator('section[data-panel-task="b"]')
    expect(panel).to_be_visible()
    log = panel.locator("pre.log-lines")
    expect(log).to_contain_text("b line 1")
    expect(log).to_contain_text("b line 3")
    expect(page.locator("svg.gantt g.bar")).to_have_count(4)
    shot(page, "instance.png")

    # the instance page is reachable by its address too
    page.goto(f"{ui_stack.base_url}/ui/instances/{instance_id}?task=a")
    expect(page.locator('section[data-panel-task="a"] pre.log-lines')).to_contain_text(
        "hello from a"
    )


def test_stop_a_long_run_then_refused_actions_say_why(ui: RecordedPage, ui_stack: Stack) -> None:
    wf = ui_stack.create_workflow(
        {
            "name": "long-ui",
            "tasks": [
                {"name": "sleepy", "type": "SHELL", "command": "echo going to sleep; sleep 300"},
                {
                    "name": "after",
                    "type": "SHELL",
                    "command": "echo never",
                    "depends_on": ["sleepy"],
                },
            ],
        }
    )
    instance_id = ui_stack.run(wf["id"])
    page = ui.page
    sign_in(ui, ui_stack)
    page.goto(f"{ui_stack.base_url}/ui/instances/{instance_id}")
    expect(page.locator('g[data-task="sleepy"]')).to_have_attribute(
        "data-state", "RUNNING", timeout=30_000
    )
    expect(page.locator('g[data-task="after"]')).to_have_attribute("data-state", "NOT_STARTED")
    resume = page.locator('button[data-action="resume"]')
    expect(resume).to_have_attribute("aria-disabled", "true")

    page.locator('button[data-action="stop"]').click()
    section = page.locator(f'section[data-instance="{instance_id}"]')
    expect(section).to_have_attribute("data-state", "STOP", timeout=30_000)
    expect(page.locator('g[data-task="sleepy"]')).to_have_attribute("data-state", "KILL")
    assert ui_stack.instance(instance_id)["state"] == "STOP"

    stop = page.locator('button[data-action="stop"]')
    reason = f"cannot stop instance {instance_id}: it is STOP; it has already finished"
    expect(stop).to_have_attribute("aria-disabled", "true")
    expect(stop).to_have_attribute("data-reason", reason)
    # the API's own answer to the same request is that reason, word for word
    r = ui_stack.client.post(f"/instances/{instance_id}/stop")
    assert r.status_code == 409 and r.json()["error"]["message"] == reason
    before = len(ui.urls(f"/instances/{instance_id}/stop"))
    stop.focus()  # a refused action stays reachable by keyboard; Enter says why
    page.keyboard.press("Enter")
    expect(page.locator("[data-message]")).to_have_text(reason)
    assert len(ui.urls(f"/instances/{instance_id}/stop")) == before  # refused in place, no request
    expect(page.locator('button[data-action="rerun"]')).not_to_have_attribute(
        "aria-disabled", "true"
    )

    # a viewer sees the same page with every control refused for its role, in the API's words
    uid = ui_stack.client.post("/users", json={"name": "ui-viewer", "role": "viewer"}).json()["id"]
    viewer = ui_stack.client.post(f"/users/{uid}/tokens", json={"name": "ui"}).json()["token"]
    page.evaluate("sessionStorage.clear()")
    sign_in(ui, ui_stack, viewer)
    page.goto(f"{ui_stack.base_url}/ui/instances/{instance_id}")
    rerun = page.locator('button[data-action="rerun"]')
    expect(rerun).to_have_attribute("aria-disabled", "true", timeout=15_000)
    answer = httpx.post(f"{ui_stack.base_url}/api/v1/instances/{instance_id}/rerun",
                        headers={"Authorization": f"Bearer {viewer}"}, json={})  # fmt: skip
    assert answer.status_code == 403, answer.text
    forbidden = answer.json()["error"]["message"]
    assert "viewer" in forbidden, forbidden
    expect(rerun).to_have_attribute("data-reason", forbidden)
    for action in ("stop", "recover-failed"):
        expect(page.locator(f'button[data-action="{action}"]')).to_have_attribute(
            "data-reason", forbidden
        )


def test_invalid_token_shows_a_clear_sign_in_error(ui: RecordedPage, ui_stack: Stack) -> None:
    page = ui.page
    sign_in(ui, ui_stack, token="not-the-token", ok=False)
    alert = page.get_by_role("alert")
    # the API's own words for that token, inside a sentence that says what happened
    said = httpx.get(
        f"{ui_stack.base_url}/api/v1/workflows", headers={"Authorization": "Bearer not-the-token"}
    )
    assert said.status_code == 401
    message = said.json()["error"]["message"]
    expect(alert).to_have_text(f"Sign-in failed: the API refused the token ({message}).")
    expect(page.get_by_role("navigation", name="main")).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('dagkeeper.token')") is None
    # the right token then works, and is kept in the tab's session only, never in the URL
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="main")).to_be_visible()
    assert TOKEN not in page.url and all(TOKEN not in u for u in ui.urls())
    assert page.evaluate("sessionStorage.getItem('dagkeeper.token')") == TOKEN


def test_cluster_page_and_hidden_tab_stops_polling(ui: RecordedPage, ui_stack: Stack) -> None:
    page = ui.page
    sign_in(ui, ui_stack)
    page.get_by_role("link", name="Cluster").click()
    expect(page.locator("tr[data-master]")).to_have_count(1)
    worker = page.locator("tr[data-worker]")
    expect(worker).to_have_count(1)
    expect(worker).to_contain_text("default")
    expect(worker).to_contain_text("http://")  # its log server
    shot(page, "cluster.png")
    hello = ui_stack.create_workflow(
        {"name": "hello-ui", "tasks": [{"name": "hi", "type": "SHELL", "command": "echo hi"}]}
    )
    done = ui_stack.run(hello["id"])
    page.get_by_role("link", name="Workflows").click()
    dot = page.locator(f'tr[data-workflow="hello-ui"] a.dot[href="/ui/instances/{done}"]')
    expect(dot).to_have_attribute("data-state", "SUCCESS", timeout=30_000)
    shot(page, "workflows.png")  # with the last runs of the tests before it, too
    page.get_by_role("link", name="Cluster").click()

    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    seen = len(ui.urls("/api/v1/cluster"))
    time.sleep(6)  # longer than the page's 5 s refresh: a visible tab would have asked again
    assert len(ui.urls("/api/v1/cluster")) == seen
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    expect(page.locator("tr[data-master]")).to_have_count(1)
    deadline = time.monotonic() + 10
    while len(ui.urls("/api/v1/cluster")) == seen and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(ui.urls("/api/v1/cluster")) > seen
