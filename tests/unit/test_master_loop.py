"""The master loop's run_once decisions on fakes (no servers): what each kind of event makes a
pass do, the one-line reason it reports, and the safe mode an outage puts the node in."""

from __future__ import annotations

import threading

import pytest
from fakes.master import make_master
from kazoo.exceptions import ConnectionLoss
from sqlalchemy.exc import OperationalError

from coord.zk import SESSION_CONNECTED, SESSION_LOST, SESSION_SUSPENDED
from core.errors import CoordinationUnavailable, DatabaseUnavailable
from db.notify import Event
from master.events import LoopPass, sort


def test_an_idle_pass_does_nothing_and_says_so() -> None:
    m, _zk, runner, commands, _ = make_master()
    p = m.run_once(0.0)
    assert not p.acted and p.reason.startswith("nothing to do")
    assert commands.calls == 0 and runner.steps == []


def test_a_command_event_claims_and_steps_the_new_instances() -> None:
    m, _zk, runner, commands, _ = make_master()
    commands.claims = [[11, 12]]
    runner.created_per_step = 3
    m.events.put(Event("command"))
    p = m.run_once(0.0)
    assert commands.calls == 1 and p.claimed == [11, 12]
    assert runner.steps == [({11, 12}, None)]  # a full step of what was claimed
    assert p.acted and "claimed commands for instances [11, 12]" in p.reason
    assert "3 attempt(s) created" in p.reason


def test_the_command_table_is_polled_as_a_fallback_without_events() -> None:
    m, _zk, _runner, commands, _ = make_master(command_poll_interval_s=1.0)
    m._last_poll = 0.0  # long ago
    m.run_once(0.0)
    assert commands.calls == 1
    m.run_once(0.0)  # just polled: not again within the interval
    assert commands.calls == 1


def test_a_task_event_naming_its_attempt_is_a_partial_step() -> None:
    m, _zk, runner, _, _ = make_master()
    runner.owned[5] = object()
    m.events.put(Event("task", 5, 900))
    m.run_once(0.0)
    assert runner.steps == [({5}, {900})]


def test_a_task_event_without_attempt_reloads_and_steps_in_full() -> None:
    m, _zk, runner, _, _ = make_master()
    m.events.put(Event("task", 5, 0))
    m.run_once(0.0)
    assert [5] in runner.loaded and runner.steps == [({5}, None)]


def test_a_membership_change_adopts_and_reoffers_and_watches_groups_from_the_loop() -> None:
    m, zk, runner, _, fo = make_master()
    zk.kids[zk.paths.workers_root()] = ["g1", "g2"]
    runner.owned[3] = object()
    fo.lost = {3}
    m._on_worker_groups(["g1", "g2"])  # the kazoo callback: only sets events
    assert zk.watches == [] and fo.adopts == 0
    p = m.run_once(0.0)
    assert fo.adopts == 1 and fo.reoffers and p.reoffered == 1
    assert {w.path for w in zk.watches} == {zk.paths.workers("g1"), zk.paths.workers("g2")}
    m._on_worker_groups(["g1", "g2"])
    m.run_once(0.0)
    assert len(zk.watches) == 2  # a live watch per group is not installed again
    assert ({3}, None) in runner.steps  # the instance with a re-offered attempt is stepped


def test_a_lost_session_drops_everything_and_registers_anew() -> None:
    m, zk, runner, _, _ = make_master()
    runner.owned[1] = object()
    zk.connected.clear()  # cannot re-register before the session is back
    zk.events.put(SESSION_LOST)
    p = m.run_once(0.0)
    assert runner.dropped == 1 and m.fenced and m.epoch == 0
    assert p.safe_mode and not p.acted and "safe mode" in p.reason


def test_a_suspended_session_fences_until_it_resumes() -> None:
    m, zk, _runner, commands, _ = make_master()
    zk.events.put(SESSION_SUSPENDED)
    m.events.put(Event("command"))
    assert m.run_once(0.0).safe_mode and commands.calls == 0
    zk.events.put(SESSION_CONNECTED)  # same session, our registration still there
    m.run_once(0.0)
    assert not m.fenced and commands.calls == 1


def test_zookeeper_and_postgresql_outages_are_one_error_each() -> None:
    m, zk, runner, _, _ = make_master()
    m.events.put(Event("task", 5, 0))
    runner.fail = ConnectionLoss()
    with pytest.raises(CoordinationUnavailable):
        m.run_once(0.0)
    runner.fail = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    m.events.put(Event("task", 5, 0))
    with pytest.raises(DatabaseUnavailable):
        m.run_once(0.0)
    runner.fail = ValueError("a bug")  # not an outage: not translated
    m.events.put(Event("task", 5, 0))
    with pytest.raises(ValueError):
        m.run_once(0.0)


def test_serve_forever_fences_on_a_zookeeper_outage_and_leaves_safe_mode_when_it_answers() -> None:
    m, zk, runner, _, _ = make_master()
    stop = threading.Event()
    m.events.put(Event("task", 5, 0))
    runner.fail = ConnectionLoss()
    real = m.run_once

    def once(timeout: float = 0.5) -> LoopPass:
        stop.set()  # one pass only
        return real(0.0)

    m.run_once = once  # type: ignore[method-assign]
    m.serve_forever(stop)
    assert m.fenced and m._outage and "ZooKeeper unreachable" in m._outage
    runner.fail = None
    m.run_once = real  # type: ignore[method-assign]
    m.run_once(0.0)  # connected and still registered: out of safe mode
    assert not m.fenced and m._outage is None
    zk.nodes.clear()  # our registration is gone meanwhile: register anew, not resume
    m.fenced, m._outage = True, "x"
    m._handle_session_events()
    assert m._reregister


def test_sorting_events() -> None:
    b = sort([Event("task", 1, 10), Event("task", 1, 11), Event("task", 2), Event("resync")])
    assert (b.partial, b.changed, b.reload) == ({1}, {10, 11}, {2})
    assert b.commands and b.resync and b.count == 4
