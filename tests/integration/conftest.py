"""Integration fixtures shared by modules: ``proc_cluster``, masters and workers as real child
processes (tests/chaos/harness.py) for kill -9, SIGSTOP and restarts, with their logs printed
when a test fails."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))
from harness import Cluster  # noqa: E402

# ZooKeeper session timeout of the cluster's nodes: short, so failovers happen within a test
PROC_SESSION_S = 4


@pytest.fixture
def proc_cluster(
    request: pytest.FixtureRequest,
    server_root: Path,
    db_url: str,
    zk_hosts: str,
    zk_root: str,
    timeout_scale: float,
) -> Iterator[Cluster]:
    c = Cluster(
        server_root / f"{request.node.name[:40]}{zk_root.replace('/', '_')}",
        db_url,
        zk_hosts,
        zk_root,
        timeout_scale,
        session_timeout_s=PROC_SESSION_S,
    )
    failed = request.session.testsfailed
    try:
        yield c
    finally:
        c.close()
        if request.session.testsfailed > failed:
            print(c.logs())
