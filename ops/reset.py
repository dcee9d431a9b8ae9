"""``dagkeeper standalone --reset``: wipe what a standalone cluster keeps in its data dir (the
private PostgreSQL and ZooKeeper data, daemon and task logs, working directories, tokens, keys,
client settings) so that the next start is a fresh cluster. Only those entries are removed, and
never while that cluster's PostgreSQL still runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.errors import ConfigError
from core.settings import Settings

# what `dagkeeper standalone` (and its daemons) create under <data_dir>
ENTRIES = (
    "postgres",
    "zookeeper",
    "daemons",
    "logs",
    "exec",
    "api-token",
    "log-token",
    "zk-password",
    "secret.key",
    "client.env",
)


def _running_postmaster(data: Path) -> int | None:
    pid_file = data / "postgres" / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def reset(settings: Settings) -> list[Path]:
    """Remove the standalone entries of the data dir; the paths removed. ConfigError while the
    cluster runs."""
    data = settings.data_path
    pid = _running_postmaster(data)
    if pid is not None:
        raise ConfigError(
            f"--reset: the standalone cluster in {data} is running (PostgreSQL pid {pid}); "
            "stop it first"
        )
    targets = [data / name for name in ENTRIES]
    for extra in (settings.log_path, settings.exec_path):  # configured elsewhere in the data dir
        if extra != data and extra.is_relative_to(data) and extra not in targets:
            targets.append(extra)  # (outside the data dir nothing is touched)
    removed = []
    for path in targets:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed
