#!/usr/bin/env python3
"""The stamp that ties the committed bundle (api/static/ui/) to the UI's sources (ui/): ``write``
records both hashes after a build, ``check`` exits 1 (saying which side changed) when the
sources or the bundle no longer match the stamp. Standard library only."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

UI = Path(__file__).resolve().parent
BUNDLE = UI.parent / "api" / "static" / "ui"
STAMP = BUNDLE / "build-stamp.json"
SOURCE_FILES = ("index.html", "package.json", "package-lock.json", "vite.config.js")
SOURCE_DIRS = ("src", "public")


def digest(base: Path, files: list[Path]) -> str:
    """sha256 over each file's path (relative, '/'-separated) and content hash, sorted by path."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.relative_to(base).as_posix()):
        h.update(f.relative_to(base).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


def source_files() -> list[Path]:
    files = [UI / name for name in SOURCE_FILES]
    for d in SOURCE_DIRS:
        files += [p for p in (UI / d).rglob("*") if p.is_file()]
    return files


def bundle_files() -> list[Path]:
    if not BUNDLE.is_dir():
        return []
    return [p for p in BUNDLE.rglob("*") if p.is_file() and p != STAMP]


def current() -> dict[str, str]:
    return {"sources": digest(UI, source_files()), "bundle": digest(BUNDLE, bundle_files())}


def problems() -> list[str]:
    """What no longer matches the stamp (empty: the bundle is the build of these sources)."""
    if not (BUNDLE / "index.html").is_file():
        return ["api/static/ui/index.html is missing: the UI was never built"]
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return [f"{STAMP.name} is missing or unreadable: build the UI (cd ui && npm run build)"]
    now = current()
    out = []
    if stamp.get("sources") != now["sources"]:
        out.append(
            "ui/ sources changed since the bundle was built: cd ui && npm ci && npm run build"
        )
    if stamp.get("bundle") != now["bundle"]:
        out.append("api/static/ui/ was changed by hand: rebuild it (cd ui && npm run build)")
    return out


def main(argv: list[str]) -> int:
    if argv[1:] == ["write"]:
        STAMP.write_text(json.dumps(current(), indent=2) + "\n")
        print(f"stamp: wrote {STAMP.relative_to(UI.parent)}")
        return 0
    if argv[1:] == ["check"]:
        found = problems()
        for p in found:
            print(f"stamp: {p}", file=sys.stderr)
        return 1 if found else 0
    print("usage: stamp.py write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
