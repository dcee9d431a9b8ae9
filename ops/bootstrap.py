"""Secrets a cluster starts with: the bootstrap admin and its token (``api.token``, or
``<data_dir>/api-token`` created 0600; a token created now is printed once, afterwards only where
it is), and standalone's ZooKeeper password for the namespace's digest ACL."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from core import secret_files
from core.settings import Settings
from db.engine import make_engine, make_session_factory
from db.users import bootstrap

log = logging.getLogger(__name__)

ZK_PASSWORD_FILE = "zk-password"  # noqa: S105 - a file name, not a secret


def ensure_admin(settings: Settings, say: Callable[[str], None] = print) -> str:
    """Make sure the bootstrap admin and its token exist; say where the token is (the token
    itself only when it was just created). Returns the admin's name."""
    from api.deps import resolve_token, token_file

    engine = make_engine(settings.db, pool_size=1)
    try:
        with make_session_factory(engine).begin() as s:
            name = bootstrap(s).name
    finally:
        engine.dispose()
    if settings.api.token:
        say(f"bootstrap admin {name!r}: its token is DAGKEEPER_API__TOKEN")
        return name
    path = token_file(settings)
    existed = path.exists()
    token = resolve_token(settings)
    if existed:
        say(f"bootstrap admin {name!r}: its token is in {path}")
    else:
        say(f"bootstrap admin {name!r}: token (shown once; kept in {path}, mode 0600): {token}")
    return name


def secure_zookeeper(settings: Settings, data_dir: Path) -> None:
    """A private ZooKeeper's namespace gets digest ACLs: unless the settings name credentials, a
    random password in ``<data_dir>/zk-password`` (0600), which every daemon reads from that file
    (never from its environment or command line)."""
    if settings.zk.digest_auth() is not None:
        return
    path = data_dir / ZK_PASSWORD_FILE
    secret_files.read_or_create(path, lambda: secrets.token_urlsafe(32), "ZooKeeper password")
    settings.zk.auth_password_file = str(path)
    log.info("standalone: ZooKeeper namespace %s has a digest ACL (%s)", settings.zk.root, path)


def announce_admin(settings: Settings, db_url: str) -> None:
    """``ensure_admin`` against the database standalone runs (its URL is not the settings')."""
    s = settings.model_copy(deep=True)
    s.db.url = db_url
    ensure_admin(s, lambda line: print(f"dagkeeper standalone: {line}", flush=True))
