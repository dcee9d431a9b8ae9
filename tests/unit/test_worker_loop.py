"""The worker loop's decisions, pass by pass, on fakes (``tests/fakes/worker.py``): no servers,
a clock that moves when the test says so. What each ``run_once`` claims, kills, abandons and
says; what an outage of ZooKeeper or PostgreSQL does (``serve_once``: the safe mode)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fakes.worker import FakeClock, FakeZooKeeper, make_worker
from kazoo.exceptions import ConnectionLoss

from coord.zk import SESSION_CONNECTED, SESSION_LOST, SESSION_SUSPENDED
from core.errors import CoordinationUnavailable, DatabaseUnavailable
from core.states import TaskState
from worker.attempt import Cancel, Outcome
from worker.executor import DB_BACKOFF_S
from worker.fetcher import Claim
from worker.heartbeat import Heartbeat
from worker.loop import ClaimView, SafeMode, claim_limit
from worker.session import RECONNECT_BACKOFF_S

LOGGER = "worker.server"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def zk() -> FakeZooKeeper:
    return FakeZooKeeper()


def test_claims_fill_the_free_slots_and_never_more(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper
) -> None:
    w, ex = make_worker(tmp_path, clock, zk, capacity=3)
    zk.queue.push(1, 2, 3, 4, 5)

    first = w.run_once()
    assert (first.claimed, first.reason) == (3, "claimed 3 of 3 free slots")
    assert w.running == [1, 2, 3] and zk.session.fetcher.limits == [3]

    full = w.run_once()
    assert (full.claimed, full.acted) == (0, False)
    assert full.reason == "at capacity (3 of 3 running)"
    assert zk.session.fetcher.limits == [3]  # not even asked

    ex.finish(2)
    after = w.run_once()
    assert (after.finished, after.claimed) == (1, 1)
    assert after.reason == "claimed 1 of 1 free slots"
    assert w.running == [1, 3, 4]
    assert zk.session.fetcher.released == [2]  # the lease of the finished attempt goes
    assert (w.stats["finished"], w.stats[TaskState.SUCCESS.value], w.stats["claimed"]) == (1, 1, 4)
    # every claim carries the registration's epoch as its lease token
    assert {h.claim.epoch for h in ex.handles.values()} == {zk.session.epoch}


def test_a_pass_that_acted_is_logged_at_info_an_idle_one_at_debug(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper, caplog: pytest.LogCaptureFixture
) -> None:
    w, _ = make_worker(tmp_path, clock, zk)
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    idle = [w.run_once() for _ in range(3)]
    assert [p.reason for p in idle] == ["nothing to claim (3 free slots)"] * 3
    passes = [r for r in caplog.records if "pass:" in r.getMessage()]
    assert [r.levelno for r in passes] == [logging.DEBUG] * 3

    caplog.clear()
    zk.queue.push(7)
    assert w.run_once().acted
    (line,) = [r for r in caplog.records if "pass:" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert line.getMessage() == "worker w-test: pass: claimed 1 of 3 free slots"


def test_claims_pause_while_the_connection_is_suspended(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper
) -> None:
    w, _ = make_worker(tmp_path, clock, zk)
    zk.queue.push(1, 2)
    zk.session.events.append(SESSION_SUSPENDED)

    paused = w.run_once()
    assert paused.claimed == 0 and paused.events == ("ZooKeeper connection suspended",)
    assert paused.reason.endswith("not claiming: ZooKeeper connection suspended")
    clock.advance(1.0)
    assert w.run_once().claimed == 0
    assert zk.session.fetcher.limits == []

    zk.session.events.append(SESSION_CONNECTED)
    resumed = w.run_once()
    assert resumed.events == ("ZooKeeper session resumed",) and resumed.claimed == 2


def test_silence_fences_running_attempts_at_three_quarters_of_the_session_timeout(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper
) -> None:
    w, ex = make_worker(tmp_path, clock, zk)  # 4 s sessions: the fence is at 3 s
    zk.queue.push(1, 2)
    assert w.run_once().claimed == 2  # its beat is answered: contact at t0
    s = zk.session
    s.answering = False
    clock.advance(1.0)
    w.run_once()  # the next beat goes unanswered
    clock.advance(1.9)
    assert w.run_once().killed == 0 and ex.cancelled == []  # 2.9 s: not yet

    clock.advance(0.2)
    fenced = w.run_once()
    assert fenced.killed == 2
    assert ex.cancelled == [(1, Cancel.FENCE), (2, Cancel.FENCE)]
    assert fenced.events == ("fenced 2 attempts after 3.1s without an answer from ZooKeeper",)
    assert "not claiming: no answer from ZooKeeper for 3.1s" in fenced.reason
    asked = len(s.fetcher.limits)
    zk.queue.push(3)
    clock.advance(0.1)
    assert w.run_once().killed == 0 and len(ex.cancelled) == 2  # once per loss of contact
    # the killed attempts come back fenced: kept, not reported while the session is in doubt
    ex.finish(1, Outcome.FENCED, TaskState.NEED_FAULT_TOLERANCE)
    ex.finish(2, Outcome.FENCED, TaskState.NEED_FAULT_TOLERANCE)
    assert w.run_once().finished == 2
    assert (ex.reported, s.fetcher.released, len(s.fetcher.limits)) == ([], [], asked)

    s.answer_all()  # the session survived: our token is still good
    back = w.run_once()
    assert ex.reported == [1, 2] and s.fetcher.released == [1, 2]
    assert back.claimed == 1 and w.running == [3]


def test_a_lost_session_abandons_its_attempts_and_registers_again(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper
) -> None:
    w, ex = make_worker(tmp_path, clock, zk)
    zk.queue.push(1, 2)
    w.run_once()
    old = zk.session
    old.events.append(SESSION_LOST)

    lost = w.run_once()
    assert lost.abandoned == 2 and ex.abandoned == [1, 2] and w.running == []
    assert lost.events == ("ZooKeeper session lost (epoch 1)", "re-registered with epoch 2")
    assert old.closed and len(zk.sessions) == 2 and w.epoch == 2
    assert w.stats["sessions_lost"] == 1
    # an abandoned attempt's outcome is dropped: its lease went with the old session
    ex.finish(1, Outcome.ABANDONED, None)
    assert w.run_once().finished == 0
    assert old.fetcher.released == [] and zk.session.fetcher.released == []
    zk.queue.push(3)
    assert w.run_once().claimed == 1 and ex.handles[3].claim.epoch == 2


def test_a_failed_registration_is_the_safe_mode_and_is_retried_after_a_backoff(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper, caplog: pytest.LogCaptureFixture
) -> None:
    w, _ = make_worker(tmp_path, clock, zk)
    zk.session.events.append(SESSION_LOST)
    zk.fail.append(DatabaseUnavailable("register: PostgreSQL unreachable (connection refused)"))
    zk.queue.push(1)

    failed = w.serve_once()
    reason = "cannot re-register: register: PostgreSQL unreachable (connection refused)"
    assert failed.reason == f"safe mode, not claiming: {reason}" and w.zk is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"worker w-test: safe mode, not claiming for 1.0s: {reason}"]
    assert zk.attempts == 2
    # no session: the loop may sleep until the next try instead of spinning
    assert w.keeper.wait_s(0.5, False, clock()) == pytest.approx(0.5)
    clock.advance(RECONNECT_BACKOFF_S / 2)
    assert w.serve_once().claimed == 0 and zk.attempts == 2  # not before the backoff

    clock.advance(RECONNECT_BACKOFF_S / 2)
    back = w.serve_once()
    assert zk.attempts == 3 and w.epoch == 2
    assert back.events == ("re-registered with epoch 2", "safe mode over") and back.claimed == 1


def test_a_database_outage_stops_claims_for_the_backoff(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper, caplog: pytest.LogCaptureFixture
) -> None:
    w, ex = make_worker(tmp_path, clock, zk)
    zk.queue.push(1)
    w.run_once()
    ex.database_down()
    zk.queue.push(2, 3)

    with pytest.raises(DatabaseUnavailable):
        w.run_once()  # one exception, for serve_once to catch
    ex.database_down()
    safe = w.serve_once()
    assert safe.claimed == 0 and safe.reason.startswith("safe mode, not claiming: finish:")
    clock.advance(DB_BACKOFF_S / 2)
    ex.database_down()  # the same outage again: said once
    w.serve_once()
    clock.advance(DB_BACKOFF_S * 0.6)
    assert w.serve_once().claimed == 0  # the backoff counts from the last outage
    assert zk.session.fetcher.limits == [3]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "PostgreSQL unreachable" in warnings[0].getMessage()

    clock.advance(DB_BACKOFF_S * 0.5)
    resumed = w.serve_once()
    assert resumed.events == ("safe mode over",) and resumed.claimed == 2


def test_a_zookeeper_outage_in_a_pass_is_one_exception_and_pauses_claims(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper
) -> None:
    w, _ = make_worker(tmp_path, clock, zk)
    zk.queue.push(1)
    zk.session.fetcher.fail = ConnectionLoss()
    with pytest.raises(CoordinationUnavailable, match="ZooKeeper unreachable"):
        w.run_once()

    zk.session.fetcher.fail = ConnectionLoss()
    assert w.serve_once().reason.startswith("safe mode, not claiming: pass: ZooKeeper")
    assert w.serve_once().claimed == 0 and zk.session.fetcher.limits == [3, 3]
    clock.advance(RECONNECT_BACKOFF_S)
    assert w.serve_once().claimed == 1


def test_a_bug_in_a_pass_is_logged_with_its_traceback_and_claims_pause(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper, caplog: pytest.LogCaptureFixture
) -> None:
    w, _ = make_worker(tmp_path, clock, zk)
    zk.queue.push(1)
    zk.session.fetcher.fail = RuntimeError("boom")
    bug = w.serve_once()
    assert bug.reason == "safe mode, not claiming: unexpected error: RuntimeError('boom')"
    (err,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert err.exc_info is not None and "unexpected error in a pass" in err.getMessage()


def test_kill_requests_cancel_held_attempts_only(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper
) -> None:
    w, ex = make_worker(tmp_path, clock, zk)
    zk.queue.push(1, 2)
    w.run_once()
    zk.session.inbox.requests.extend([2, 99])
    assert w.run_once().killed == 1
    assert ex.cancelled == [(2, Cancel.KILL)] and w.stats["kill_requests"] == 1
    assert zk.session.inbox.requests == []  # every request is handled, held or not


def test_an_unstarted_attempt_goes_back_and_an_interrupted_claim_is_adopted(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper
) -> None:
    w, ex = make_worker(tmp_path, clock, zk, capacity=1)
    zk.queue.push(1)
    w.run_once()
    ex.finish(1, Outcome.UNCLAIM, None)
    s = zk.session
    s.fetcher.uncertain.append(Claim("default", "key-5", 5, s.epoch))
    p = w.run_once()
    assert [c.task_instance_id for c in s.fetcher.put_back] == [1] and w.stats["unclaim"] == 1
    assert s.fetcher.released == []  # a key put back is not released as finished
    assert p.events == ("adopted 1 interrupted claims",) and w.running == [5]
    assert p.reason.endswith("at capacity (1 of 1 running)")


def test_stop_removes_the_inbox_and_ends_the_session(
    tmp_path: Path, clock: FakeClock, zk: FakeZooKeeper
) -> None:
    w, ex = make_worker(tmp_path, clock, zk)
    w.stop(grace=0)
    s = zk.session
    assert s.inbox.removed and s.closed and ex.shut_down and w.zk is None
    assert w.run_once().reason == "not running (stopped)"


def test_an_unanswered_beat_does_not_make_the_loop_spin(clock: FakeClock) -> None:
    beat = Heartbeat(interval_s=1.0, session_timeout_s=4.0, clock=clock)
    clock.advance(5.0)
    beat.reset()  # a new session: in contact now
    beat.beat(lambda data, on_answer: None, 0, None)  # sent, never answered
    clock.advance(1.5)  # the next beat would be due, but one is still pending
    assert beat.wait_s(0.5, busy=False, now=clock()) == pytest.approx(0.5)
    # with attempts running it still wakes up for the fence (3 s after the last answer)
    clock.advance(1.4)
    assert beat.wait_s(0.5, busy=True, now=clock()) == pytest.approx(0.1)


def test_claim_limit_reasons_in_their_order() -> None:
    def view(**kw: object) -> ClaimView:
        base: dict[str, object] = {"capacity": 4, "running": 1, "session": "", "safe_mode": None}
        return ClaimView(**(base | kw))  # type: ignore[arg-type]

    assert claim_limit(view()) == (3, "3 free slots")
    assert claim_limit(view(running=4)) == (0, "at capacity (4 of 4 running)")
    assert claim_limit(view(running=4, session="no ZooKeeper session")) == (
        0,
        "not claiming: no ZooKeeper session",
    )
    assert claim_limit(view(session="x", safe_mode="PostgreSQL unreachable"))[1] == (
        "safe mode, not claiming: PostgreSQL unreachable"
    )


def test_safe_mode_is_said_again_only_for_a_new_reason_or_after_a_while() -> None:
    safe = SafeMode()
    assert safe.enter("a", 0.0, 1.0) is True
    assert safe.enter("a", 0.5, 1.0) is False and safe.active(1.2) == "a"  # extended to 1.5
    assert safe.enter("b", 0.6, 1.0) is True
    assert safe.enter("b", 40.0, 1.0) is True  # still not over: reminded after 30 s
    assert safe.leave_if_over(40.5) is None and safe.leave_if_over(41.0) == "b"
    assert safe.active(41.0) is None and safe.leave_if_over(42.0) is None
