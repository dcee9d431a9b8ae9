"""Secret files (the API token, the datasource key): read one, or create it 0600 with fresh
content, race-free between processes (written aside, then linked into place)."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from core.errors import ConfigError

log = logging.getLogger(__name__)


def read_or_create(path: Path, make: Callable[[], str], what: str) -> str:
    """The stripped content of ``path``; when missing, ``make()`` is written there first (mode
    0600; if another process wins the race, its content is used). A looser mode is tightened."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(make() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
                log.info("created %s file %s (mode 0600)", what, path)
            except FileExistsError:
                pass  # another process won the race: use its content
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s file %s had mode %o; tightening to 0600", what, path, mode)
        os.chmod(path, 0o600)
    text = path.read_text().strip()
    if not text:
        raise ConfigError(f"{what} file {path} is empty; delete it to get a new one")
    return text
