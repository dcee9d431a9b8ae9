#!/usr/bin/env bash
# Lint, format check, type check, then the whole test suite: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install.sh
echo "test: ruff check"
.venv/bin/ruff check .
echo "test: ruff format --check"
.venv/bin/ruff format --check .
# mypy fails on a directory without Python files, so only the packages that have code yet
packages=()
for d in core coord db ops master worker api dagkeeper; do
    if compgen -G "$d/*.py" >/dev/null; then packages+=("$d"); fi
done
echo "test: mypy ${packages[*]}"
.venv/bin/mypy "${packages[@]}"
echo "test: pytest"
exec .venv/bin/pytest -q -ra tests "$@"
