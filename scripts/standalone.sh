#!/usr/bin/env bash
# Everything on this machine: private PostgreSQL and ZooKeeper, master, worker, API, demo workflows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install.sh --runtime  # only what runs: no test servers, browser or test extra
exec .venv/bin/dagkeeper standalone --demo "$@"
