"""pyproject.toml against the package code: every declared runtime dependency is used (imported,
or named as the SQLAlchemy driver of a URL the code builds), and no third-party module is
imported that is not declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "coord", "db", "ops", "master", "worker", "api", "dagkeeper")
# distribution name -> the top-level module it installs, where the two differ
IMPORT_NAMES = {
    "psycopg2-binary": "psycopg2",
    "PyMySQL": "pymysql",
    "SQLAlchemy": "sqlalchemy",
    "pydantic-settings": "pydantic_settings",
    "PyYAML": "yaml",
}
# "<dialect>+<driver>" in a SQLAlchemy URL: SQLAlchemy imports the driver module itself
DRIVER = re.compile(r"""["'](?:postgresql|mysql|mariadb)\+(\w+)["'/:]""")


def requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]


def import_name(dist: str) -> str:
    return IMPORT_NAMES.get(dist, dist.lower().replace("-", "_"))


def declared() -> dict[str, str]:
    """Runtime dependencies: import name -> distribution name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {import_name(requirement_name(r)): requirement_name(r) for r in project["dependencies"]}


def package_files() -> list[Path]:
    return sorted(f for p in PACKAGES for f in (ROOT / p).rglob("*.py"))


def third_party_uses() -> dict[str, set[str]]:
    """Top-level third-party module -> the package files that import it (also inside functions)
    or name it as a SQLAlchemy driver."""
    first_party = set(PACKAGES)
    out: dict[str, set[str]] = {}
    for f in package_files():
        source = f.read_text()
        names: list[str] = []
        for node in ast.walk(ast.parse(source, str(f))):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.append(node.module)
        names += DRIVER.findall(source)
        for name in names:
            top = name.split(".")[0]
            if top not in first_party and top not in sys.stdlib_module_names:
                out.setdefault(top, set()).add(str(f.relative_to(ROOT)))
    return out


def test_requirement_names_and_import_names() -> None:
    assert requirement_name("psycopg2-binary>=2.9") == "psycopg2-binary"
    assert requirement_name("APScheduler>=3.10,<4") == "APScheduler"
    assert (
        import_name("PyMySQL") == "pymysql"
        and import_name("pydantic-settings") == "pydantic_settings"
    )
    assert DRIVER.findall('url = "mysql+pymysql://h/db"; x = ("postgresql+psycopg2", 5432)') == [
        "pymysql",
        "psycopg2",
    ]


def test_every_declared_runtime_dependency_is_used_by_package_code() -> None:
    uses = third_party_uses()
    unused = sorted(dist for mod, dist in declared().items() if mod not in uses)
    assert not unused, f"declared in pyproject.toml but never imported by package code: {unused}"


def test_package_code_imports_only_declared_third_party_modules() -> None:
    deps = declared()
    undeclared = {m: sorted(files) for m, files in third_party_uses().items() if m not in deps}
    assert not undeclared, f"imported by package code but not a runtime dependency: {undeclared}"
