#!/usr/bin/env bash
# Idempotent setup: ZooKeeper, PostgreSQL, MariaDB, Java and chromium from apt when missing, then .venv (Python >= 3.11)
# with the project installed editable; pip runs only when pyproject.toml or the package set changed.
# --runtime (what scripts/standalone.sh uses): only what runs — ZooKeeper, Java, PostgreSQL and the
# package without its test extra (no MariaDB, chromium, pyspark, playwright, schemathesis).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=test
[[ ${1:-} == --runtime ]] && mode=runtime
say() { echo "install: $*"; }

# --- system packages ------------------------------------------------------------------------------
pkgs=()
[[ -f /usr/share/java/zookeeper.jar ]] || pkgs+=(zookeeper)
command -v java >/dev/null 2>&1 || pkgs+=(default-jre-headless)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || pkgs+=(postgresql)
if [[ $mode == test ]]; then
    # MariaDB: SQL tasks on MySQL-family datasources are tested against a private server
    [[ -x /usr/sbin/mariadbd ]] || pkgs+=(mariadb-server)
    # Debian's chromium: the web UI's browser tests drive it (Playwright's own browser download is not used)
    [[ -x /usr/bin/chromium ]] || pkgs+=(chromium)
fi
if ((${#pkgs[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install: missing system packages; run as root:" >&2
        echo "  apt-get update && apt-get install -y ${pkgs[*]}" >&2
        exit 1
    fi
    say "installing ${pkgs[*]} with apt-get"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}"
elif [[ $mode == test ]]; then
    say "ZooKeeper, Java, PostgreSQL, MariaDB and chromium present"
else
    say "ZooKeeper, Java and PostgreSQL present"
fi

# --- Python virtualenv --------------------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
    py=""
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            py=$candidate
            break
        fi
    done
    if [[ -z $py ]]; then
        echo "install: Python >= 3.11 is needed (python3.11 or python3); found none" >&2
        exit 1
    fi
    say "creating .venv with $("$py" --version)"
    "$py" -m venv .venv
fi

# Reinstall when pyproject.toml changes, or when a top-level package appears (editable installs
# map the packages that existed at install time).
# The stamp names the mode too: a test install also serves --runtime, not the other way round.
stamp_file=.venv/.dagkeeper-install-stamp
stamp=$({ sha256sum pyproject.toml; ls -1 -- */__init__.py 2>/dev/null || true; } | sha256sum)
have=$(cat "$stamp_file" 2>/dev/null || true)
if [[ $have == "test $stamp" || ($mode == runtime && $have == "runtime $stamp") ]]; then
    say ".venv up to date"
elif [[ $mode == test ]]; then
    say "pip install -e '.[test]' into .venv"
    .venv/bin/pip install -q -e '.[test]'
    echo "test $stamp" >"$stamp_file"
else
    say "pip install -e . into .venv (runtime only; scripts/test.sh adds the test extra)"
    .venv/bin/pip install -q -e .
    echo "runtime $stamp" >"$stamp_file"
fi

# --- web UI -----------------------------------------------------------------------------------------
# The built bundle (api/static/ui/) is committed; rebuild it only when ui/'s sources no longer match
# its stamp (that needs Node.js >= 20.19 and npm; the lock file pins every package).
if python3 ui/stamp.py check >/dev/null 2>&1; then
    say "web UI bundle matches ui/ sources"
elif command -v npm >/dev/null 2>&1; then
    say "building the web UI (npm ci && npm run build in ui/)"
    (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build)
else
    python3 ui/stamp.py check || true
    echo "install: the web UI bundle is out of date and npm is missing: install Node.js 20 and npm" >&2
    exit 1
fi
