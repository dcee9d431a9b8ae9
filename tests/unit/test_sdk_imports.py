"""The SDK and client CLI stand alone: ``dagkeeper/`` imports (at any depth) only the standard
library, its own modules and its declared client packages, and importing all of it, or running
``dagkeeper --help``, loads no server package and no server library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "dagkeeper"
CLIENT_PACKAGES = frozenset({"httpx", "typer", "rich", "yaml"})
SERVER = ("core", "coord", "db", "ops", "master", "worker", "api")
SERVER_LIBRARIES = (
    "sqlalchemy",
    "kazoo",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "psycopg2",
)


def imports(f: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append(
                (node.lineno, "dagkeeper" if node.level else (node.module or "").split(".")[0])
            )
    return out


def test_the_walk_sees_nested_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import json\n\ndef f():\n    from db import engine\n    import kazoo.client\n")
    assert imports(f) == [(1, "json"), (4, "db"), (5, "kazoo")]


def test_the_sdk_imports_only_the_stdlib_itself_and_client_packages() -> None:
    files = sorted(SDK.rglob("*.py"))
    assert len(files) >= 10, files
    bad = [
        f"{f.relative_to(ROOT)}:{line} imports {name}"
        for f in files
        for line, name in imports(f)
        if name not in sys.stdlib_module_names and name not in CLIENT_PACKAGES | {"dagkeeper"}
    ]
    assert not bad, "the SDK must talk REST only:\n" + "\n".join(bad)


def test_importing_every_sdk_module_loads_no_server_code() -> None:
    modules = sorted(f"dagkeeper.{f.stem}" for f in SDK.glob("*.py") if f.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "import dagkeeper\n"
        "for n in dagkeeper.__all__: getattr(dagkeeper, n)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {SERVER + SERVER_LIBRARIES!r})\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"server modules loaded: {r.stdout.strip()}"


def test_client_help_is_fast_and_loads_no_server_package() -> None:
    """``dagkeeper --help`` goes through ops.cli (the console script) and the SDK's CLI only."""
    code = (
        "import json, sys, time\n"
        "t = time.monotonic()\n"
        "from ops.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "took = time.monotonic() - t\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {SERVER + SERVER_LIBRARIES!r})\n"
        "bad = [m for m in bad if m not in ('ops', 'ops.cli')]\n"
        "print(json.dumps({'loaded': bad, 'took': took}), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "Usage: dagkeeper" in r.stdout and "run " in r.stdout and "master" in r.stdout, r.stdout
    found = json.loads(r.stderr.strip().splitlines()[-1])
    assert found["loaded"] == [], f"--help loaded {found['loaded']}"
    print(f"dagkeeper --help (in-process, imports included): {found['took']:.3f} s")
    assert found["took"] < 1.0, found
