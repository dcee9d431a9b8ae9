"""The web UI's static bundle (built from ui/ into api/static/ui/): `/` redirects to `/ui/`,
hashed assets get year-long cache headers, every other `/ui/...` path is the single page's
index.html, and a Content-Security-Policy keeps the page talking to this origin only."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

log = logging.getLogger(__name__)

BUNDLE_DIR = Path(__file__).resolve().parent / "static" / "ui"
UI_PREFIX = "/ui"

# Nothing but this origin: no CDN, no third-party fonts, no inline script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# file names under assets/ carry a content hash: they never change
ASSET_CACHE = "public, max-age=31536000, immutable"
PAGE_CACHE = "no-cache"

router = APIRouter(include_in_schema=False)


def _inside(base: Path, relative: str) -> Path | None:
    """``base/relative`` if it is a file inside ``base`` (no ``..`` escapes), else None."""
    candidate = (base / relative).resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate


def _page(bundle: Path) -> Response:
    index = bundle / "index.html"
    if not index.is_file():
        log.warning("api: web UI requested but %s is missing", index)
        return PlainTextResponse(
            "the web UI is not built: run scripts/install.sh (it builds ui/ into api/static/ui/)",
            status_code=503,
        )
    return FileResponse(index, media_type="text/html; charset=utf-8", headers=_headers(PAGE_CACHE))


def _headers(cache: str) -> dict[str, str]:
    return {**SECURITY_HEADERS, "Cache-Control": cache}


def serve(path: str, bundle: Path = BUNDLE_DIR) -> Response:
    """The answer for ``/ui/<path>``: an asset file, a top-level file of the bundle (icon), or
    the page itself for a client route such as ``instances/42``."""
    if path.startswith("assets/"):
        found = _inside(bundle, path)
        if found is None:
            return PlainTextResponse(f"no such asset: {path}", status_code=404)
        return FileResponse(found, headers=_headers(ASSET_CACHE))
    if path and "/" not in path and path != "index.html":
        found = _inside(bundle, path)
        if found is not None:
            return FileResponse(found, headers=_headers("public, max-age=3600"))
    return _page(bundle)


@router.get("/")
def root() -> RedirectResponse:
    """The root is the UI."""
    return RedirectResponse(f"{UI_PREFIX}/", status_code=307)


@router.get(UI_PREFIX)
def ui_bare() -> RedirectResponse:
    return RedirectResponse(f"{UI_PREFIX}/", status_code=307)


@router.get(UI_PREFIX + "/{path:path}")
def ui_path(path: str) -> Response:
    return serve(path)
