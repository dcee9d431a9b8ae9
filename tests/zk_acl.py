"""The test clusters' ZooKeeper credentials: every znode namespace the suite makes has a digest
ACL (dagkeeper's own: the fixtures' settings, the process harness's daemons and the plain kazoo
clients of the tests all carry this password), so the whole suite runs with ACLs on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coord.zk import acl_options
from core.settings import ZkSettings

ZK_PASSWORD = "dagkeeper-tests-zk-acl"  # noqa: S105 - the test clusters' credential


def kazoo_acl() -> dict[str, Any]:
    """KazooClient keywords (``auth_data``, ``default_acl``) of the test namespaces."""
    return acl_options(ZkSettings(auth_password=ZK_PASSWORD))


def password_file(directory: Path) -> Path:
    """The password in ``directory/zk-password`` (0600), for daemons started as processes."""
    path = directory / "zk-password"
    path.write_text(ZK_PASSWORD + "\n")
    path.chmod(0o600)
    return path
