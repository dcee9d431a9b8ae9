"""Browser end-to-end fixtures: one real stack per session (PostgreSQL, ZooKeeper, a master, a
worker and the API as child processes on loopback), Debian's chromium driven by Playwright, and
a page that records every request it makes. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))
from harness import Cluster  # noqa: E402

from ops.localserver import PostgresServer, free_port, wait_for  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "e2e-ui-token"
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives the web UI in a real browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.integration)


@dataclass
class Stack:
    cluster: Cluster
    base_url: str  # the API's origin, e.g. http://127.0.0.1:41234
    client: httpx.Client  # authenticated REST client on /api/v1

    def create_workflow(self, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post("/workflows", json=spec)
        assert r.status_code == 201, r.text
        return r.json()

    def run(self, workflow_id: int, **body: Any) -> int:
        r = self.client.post(f"/workflows/{workflow_id}/runs", json=body)
        assert r.status_code == 202, r.text
        return int(r.json()["instance_id"])

    def instance(self, instance_id: int) -> dict[str, Any]:
        r = self.client.get(f"/instances/{instance_id}")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="session")
def ui_stack(
    server_root: Path,
    pg_server: PostgresServer,
    migrated_template: str,
    zk_server: Any,
    timeout_scale: float,
) -> Iterator[Stack]:
    if not (REPO / "api" / "static" / "ui" / "index.html").is_file():
        pytest.fail("api/static/ui/ has no built UI: run scripts/install.sh (it builds ui/)")
    db_url = pg_server.create_database("dk_e2e", template=migrated_template)
    cluster = Cluster(server_root / "e2e", db_url, zk_server.hosts, "/dk_e2e", timeout_scale)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(
        base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    try:
        cluster.master("m1")
        cluster.worker("w1", DAGKEEPER_WORKER__CAPACITY="4")
        cluster.start(
            "api",
            "api",
            DAGKEEPER_API__HOST="127.0.0.1",
            DAGKEEPER_API__PORT=str(port),
            DAGKEEPER_API__TOKEN=TOKEN,
        )

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60 * timeout_scale, 0.2, "the API to answer /ready")
        cluster.wait_registered(masters=1, workers=1, timeout=60)
        yield Stack(cluster, base, client)
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium (never a downloaded browser) with a fresh profile, 1280x800."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            accept_downloads=True,
        )
        try:
            yield ctx
        finally:
            ctx.close()


@dataclass
class RecordedPage:
    page: Any
    requests: list[tuple[float, str, str]]  # (monotonic time, method, url)
    origins: list[str]  # the API origins the page may talk to

    def urls(self, contains: str = "") -> list[str]:
        return [u for _, _, u in self.requests if contains in u]


@pytest.fixture
def ui(browser_context: Any, ui_stack: Stack) -> Iterator[RecordedPage]:
    """A new tab (its own sessionStorage) whose every request is recorded; at the end, every
    one of them must have gone to the API's origin."""
    import time

    page = browser_context.new_page()
    page.set_default_timeout(20_000)
    rec = RecordedPage(page, [], [ui_stack.base_url])
    page.on("request", lambda r: rec.requests.append((time.monotonic(), r.method, r.url)))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield rec
    finally:
        page.close()
    allowed = tuple(f"{o}/" for o in rec.origins)
    foreign = [u for _, _, u in rec.requests if not u.startswith(allowed)]
    foreign = [u for u in foreign if not u.startswith(("data:", "blob:"))]
    assert not foreign, f"the page loaded something from outside the API: {foreign}"
    assert not errors, f"uncaught errors in the page: {errors}"


def sign_in(rec: RecordedPage, stack: Stack, token: str = TOKEN, ok: bool = True) -> None:
    """Open the root, sign in with ``token``; with ``ok``, wait until the app is shown."""
    from playwright.sync_api import expect

    page = rec.page
    page.goto(stack.base_url + "/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    if ok:
        expect(page.get_by_role("navigation", name="main")).to_be_visible()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=False)
