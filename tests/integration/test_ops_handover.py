"""SIGTERM to a master hands its instances to a live master at once (ownership released in
PostgreSQL, registration deleted), not a session timeout later: no failover alert, no task run
twice, and the next task of a chain starts right after its predecessor."""

from __future__ import annotations

import signal
import time

from harness import Cluster


def test_sigterm_hands_a_masters_instances_over_at_once(proc_cluster: Cluster) -> None:
    c = proc_cluster
    c.up(masters=2, workers=1)
    iid = c.submit(
        [
            {"name": "a", "command": "sleep 1.5"},
            {"name": "b", "command": "sleep 1.5", "depends_on": ["a"]},
            {"name": "c", "command": "true", "depends_on": ["b"]},
        ]
    )
    c.wait(lambda: c.find_attempt(iid, "a"), 30, "a running")
    name = c.wait(lambda: c.master_owning(iid), 10, "the owner of the instance")
    old = c.one("SELECT owner FROM workflow_instance WHERE id = :i", i=iid)
    p = c.procs[name]
    assert p.popen is not None
    sent = time.monotonic()
    p.popen.send_signal(signal.SIGTERM)

    def adopted() -> bool:
        row = c.rows("SELECT owner, owner_epoch FROM workflow_instance WHERE id = :i", i=iid)[0]
        return row.owner != old and row.owner_epoch is not None

    c.wait(adopted, 30, "adoption by the other master", interval=0.01)
    took = time.monotonic() - sent
    p.popen.wait(15 * c.scale)
    c.wait_success(iid)
    session = c.session_timeout_s
    print(f"\nmaster SIGTERM -> adopted by the other master in {took:.3f}s (session {session}s)")
    assert took < session / 2, took
    assert c.one("SELECT count(*) FROM alert WHERE kind = 'MASTER_FAILOVER'") == 0
    assert "handed over 1 instance(s)" in p.log_path.read_text()
    rows = {r.name: r for r in c.attempts(iid)}
    assert [r.attempt for r in c.attempts(iid)] == [1, 1, 1]
    for prev, nxt in (("a", "b"), ("b", "c")):
        gap = c.one(
            "SELECT extract(epoch FROM n.submit_time - p.end_time) FROM task_instance p,"
            " task_instance n WHERE p.id = :p AND n.id = :n",
            p=rows[prev].id,
            n=rows[nxt].id,
        )
        assert float(gap) < 1.0, (prev, nxt, gap)
    c.assert_invariants()
