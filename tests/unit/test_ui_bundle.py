"""The web UI bundle: the committed build matches ui/'s sources (stamp), and api/ui.py serves it
(root redirect, client routes get the page, hashed assets cached for a year, no path escapes,
a same-origin Content-Security-Policy, a clear 503 when the bundle is missing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import ui

ROOT = Path(__file__).resolve().parents[2]


def load_stamp() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ui_stamp", ROOT / "ui" / "stamp.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ui_stamp"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_committed_bundle_is_the_build_of_the_sources() -> None:
    stamp = load_stamp()
    assert stamp.problems() == [], "\n".join(stamp.problems())


def test_stamp_notices_a_changed_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = load_stamp()
    before = stamp.digest(ROOT / "ui", stamp.source_files())
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.js").write_text("x")
    one = stamp.digest(tmp_path, [tmp_path / "src" / "a.js"])
    (tmp_path / "src" / "a.js").write_text("y")
    assert stamp.digest(tmp_path, [tmp_path / "src" / "a.js"]) != one
    assert stamp.digest(ROOT / "ui", stamp.source_files()) == before


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>dk</title><div id=app></div>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    (tmp_path.parent / "secret.txt").write_text("no")
    return tmp_path


@pytest.fixture
def client(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(ui, "BUNDLE_DIR", bundle)
    monkeypatch.setattr(ui.serve, "__defaults__", (bundle,))
    app = FastAPI()
    app.include_router(ui.router)
    return TestClient(app)


def test_root_redirects_to_the_ui(client: TestClient) -> None:
    for path in ("/", "/ui"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/ui/"


@pytest.mark.parametrize("path", ["/ui/", "/ui/instances/42", "/ui/workflows/3?v=2", "/ui/cluster"])
def test_client_routes_get_the_page(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "<div id=app>" in r.text
    assert r.headers["cache-control"] == "no-cache"
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp


def test_assets_are_cached_for_a_year(client: TestClient) -> None:
    r = client.get("/ui/assets/index-abc123.js")
    assert r.status_code == 200 and r.text == "console.log(1)"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get("/ui/favicon.svg").text == "<svg/>"


def test_missing_asset_is_a_404_not_the_page(client: TestClient) -> None:
    r = client.get("/ui/assets/nope.js")
    assert r.status_code == 404 and "nope.js" in r.text


def test_no_path_escapes_the_bundle(client: TestClient) -> None:
    for path in (
        "/ui/assets/../../secret.txt",
        "/ui/assets/%2e%2e/%2e%2e/secret.txt",
        "/ui/../secret.txt",
    ):
        r = client.get(path)
        assert r.text != "no" and r.status_code in (200, 404)
        assert r.status_code == 404 or "<div id=app>" in r.text


def test_missing_bundle_says_how_to_build_it(tmp_path: Path) -> None:
    r = ui.serve("instances/1", bundle=tmp_path / "empty")
    assert r.status_code == 503
    assert b"scripts/install.sh" in r.body  # type: ignore[operator]
