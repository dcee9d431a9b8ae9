"""Masters claim commands on real PostgreSQL + ZooKeeper: each command becomes exactly one owned
instance even when masters race, and tasks are committed before they are queued."""

from __future__ import annotations

from sqlalchemy import text

from coord.queue import parse_key
from core.spec import parse_workflow_spec
from db import runs
from db.definitions import create_workflow
from ops.localserver import wait_for


def _workflow(sf, name="w", tasks=None):
    spec = parse_workflow_spec({"name": name, "tasks": tasks or [{"name": "a", "command": "true"}]})
    with sf.begin() as s:
        definition, _ = create_workflow(s, spec)
        return definition.id


def _submit(sf, workflow_id, n):
    ids = []
    with sf.begin() as s:
        for _ in range(n):
            ids.append(runs.submit_run(s, workflow_id).id)
    return ids


def test_racing_masters_turn_each_command_into_one_owned_instance(cluster, timeout_scale):
    # every master is registered before the commands exist; they start serving together after
    masters = [cluster.start_master(f"m{i}", serve=False) for i in range(3)]
    sf = masters[0].sf
    wf = _workflow(sf)
    instance_ids = _submit(sf, wf, 60)
    for m in masters:
        cluster.serve(m)

    def all_claimed():
        with sf.begin() as s:
            left = s.execute(text("SELECT count(*) FROM command")).scalar_one()
            owned = s.execute(
                text("SELECT count(*) FROM workflow_instance WHERE owner IS NOT NULL")
            ).scalar_one()
            attempts = s.execute(text("SELECT count(*) FROM task_instance")).scalar_one()
        n = len(instance_ids)
        return left == 0 and owned == n and attempts >= n

    wait_for(all_claimed, 30 * timeout_scale, what="every command claimed")
    with sf.begin() as s:
        rows = s.execute(
            text("SELECT id, owner, owner_epoch, state FROM workflow_instance ORDER BY id")
        ).all()
        attempts = s.execute(
            text("SELECT workflow_instance_id, count(*) FROM task_instance GROUP BY 1")
        ).all()
    assert [r.id for r in rows] == sorted(instance_ids)
    epochs = {m.master_id: m.epoch for m in masters}
    for r in rows:
        assert r.owner in epochs and r.owner_epoch == epochs[r.owner]
        assert r.state == "RUNNING"
    # one attempt of the single task per instance, however the masters raced
    assert sorted(a[0] for a in attempts) == sorted(instance_ids)
    assert all(a[1] == 1 for a in attempts)


def test_attempts_are_committed_then_queued_in_priority_order(cluster, timeout_scale):
    master = cluster.start_master("solo", serve=False)  # driven by run_once below
    sf = master.sf
    wf = _workflow(
        sf,
        tasks=[
            {"name": "low", "command": "true", "priority": "LOWEST"},
            {"name": "high", "command": "true", "priority": "HIGHEST"},
        ],
    )
    (iid,) = _submit(sf, wf, 1)
    wait_for(
        lambda: (master.run_once(0.2), len(master.queue.entries("default")) == 2)[1],
        20 * timeout_scale,
        what="two queue entries",
    )
    keys = master.queue.entries("default")
    parsed = [parse_key(k) for k in keys]
    assert all(p.workflow_instance_id == iid for p in parsed)
    with sf.begin() as s:
        rows = dict(
            s.execute(
                text("SELECT id, name FROM task_instance WHERE workflow_instance_id = :i"),
                {"i": iid},
            ).all()
        )
        states = set(s.execute(text("SELECT state FROM task_instance")).scalars())
    assert [rows[p.task_instance_id] for p in parsed] == ["high", "low"]
    assert states == {"DISPATCHED"}
