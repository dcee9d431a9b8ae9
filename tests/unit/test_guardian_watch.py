"""The watchdog's rule (``worker.guardian.Watch``), pure: when a silence of the worker is a lapse,
which groups a lapse condemns, the pipe's protocol, and that the worker's side and the guardian,
reading the same stamps at other moments, always condemn the same groups; and the setting's
validation against the session timeout."""

from __future__ import annotations

import os
import random

import pytest
from pydantic import ValidationError

from core.settings import MasterSettings, Settings, WorkerSettings, ZkSettings
from worker.guardian import Lapse, Watch, beat_period, check_period


def test_not_armed_before_the_first_beat() -> None:
    w = Watch(1.0)
    w.watch(10, 7)
    assert w.check(1000.0) is None
    assert w.beat(1000.0) is None  # the first beat arms it; nothing to compare with
    assert w.check(1001.0) is None  # exactly the deadline is not a lapse
    lapse = w.check(1001.01)
    assert lapse is not None and lapse.groups == {10: 7}
    assert lapse.silence_s == pytest.approx(1.01)


def test_a_silence_is_reported_once_then_only_for_groups_registered_during_it() -> None:
    w = Watch(1.0)
    w.beat(0.0)
    w.watch(10, 7)
    w.watch(11, 8)
    assert w.check(1.5) == Lapse(1.5, {10: 7, 11: 8})
    assert w.check(1.6) is None and w.check(9.0) is None
    w.watch(12, 9)  # spawned after a thaw, before the first beat: condemned too
    assert w.check(9.1) == Lapse(9.1, {12: 9})
    assert w.killed == {10: 1.5, 11: 1.5, 12: 9.1}
    # the beat that ends the silence reports nothing new; later ones are ordinary
    assert w.beat(9.2) is None
    assert w.beat(9.4) is None and w.check(10.3) is None


def test_a_gap_between_two_stamps_is_a_lapse() -> None:
    """Both frozen, the worker continued first: its fresh beat carries the silence."""
    w = Watch(1.0)
    w.watch(10, 7)
    for t in (0.0, 0.25, 0.5):
        assert w.beat(t) is None
    assert w.beat(6.5) == Lapse(6.0, {10: 7})
    assert w.check(6.6) is None  # and the silence is over


def test_forgotten_groups_are_spared_and_a_reused_pgid_starts_clean() -> None:
    w = Watch(1.0)
    w.beat(0.0)
    w.watch(10, 7)
    w.watch(11, 8)
    w.forget(11)  # ended before the freeze
    assert w.check(2.0) == Lapse(2.0, {10: 7})
    w.forget(10)
    assert w.killed == {}
    w.beat(2.1)
    w.watch(10, 9)  # the pid came back for another attempt, after the thaw
    assert 10 not in w.killed and w.check(2.5) is None


def test_clear_disarms() -> None:
    w = Watch(1.0)
    w.beat(0.0)
    w.watch(10, 7)
    w.clear()
    assert w.groups == {} and w.check(100.0) is None


def test_protocol_lines() -> None:
    w = Watch(1.0)
    assert w.apply(b"+ 10 7") is None and w.groups == {10: 7}
    assert w.apply(b"b 5.000000") is None and w.last_beat == 5.0
    assert w.apply(b"b 7.5") == Lapse(2.5, {10: 7})
    assert w.apply(b"- 10") is None and w.groups == {}
    w.apply(b"+ 11 8")
    assert w.apply(b"nonsense here") is None and w.groups == {11: 8}
    w.apply(b"clear")
    assert w.groups == {} and w.last_beat is None


def test_periods_are_fractions_of_the_deadline() -> None:
    assert beat_period(2.5) == 0.25 and check_period(2.5) == 0.1
    assert beat_period(0.4) == pytest.approx(0.1) and check_period(0.4) == pytest.approx(0.04)


@pytest.mark.parametrize("seed", range(60))
def test_both_sides_condemn_the_same_groups(seed: int) -> None:
    """The worker registers groups, beats, asks ``lapse_of`` (always before a forget, as a runner
    thread does) and freezes now and then; the guardian reads what was written before each of its
    random wake-ups (frozen too at times) and then checks its own clock. Whatever the timing,
    every group the guardian kills is one the worker knows the watchdog killed (so it is never
    reported as the task's failure), and the guardian kills every group the worker condemned
    that it still holds."""
    rng = random.Random(seed)
    worker, guardian = Watch(1.0), Watch(1.0)
    pipe: list[tuple[float, bytes]] = []  # (written at, line)
    by_worker: set[int] = set()
    t, pgid = 0.0, 100

    def check(at: float) -> None:
        lapse = worker.check(at)
        by_worker.update(lapse.groups if lapse else ())

    def beat(at: float) -> None:
        lapse = worker.beat(at)
        by_worker.update(lapse.groups if lapse else ())
        pipe.append((at, f"b {at:.6f}".encode()))

    while t < 60.0:
        r = rng.random()
        if r < 0.08:
            t += rng.uniform(0.5, 3.0)  # frozen (or stalled)
        elif r < 0.25:
            pgid += 1
            worker.watch(pgid, pgid * 10)
            pipe.append((t, f"+ {pgid} {pgid * 10}".encode()))
        elif r < 0.35 and worker.groups:
            gone = rng.choice(sorted(worker.groups))
            check(t)  # lapse_of, then forget
            worker.forget(gone)
            pipe.append((t, f"- {gone}".encode()))
        elif r < 0.45:
            check(t)
        else:
            beat(t)
        t += rng.uniform(0.0, 0.3)
    beat(t)
    end = t
    by_guardian: set[int] = set()
    now, read = 0.0, 0
    while read < len(pipe):
        now += rng.choice((0.1, 0.1, 0.1, rng.uniform(0.5, 4.0)))
        while read < len(pipe) and pipe[read][0] < now:
            lapse = guardian.apply(pipe[read][1])
            by_guardian.update(lapse.groups if lapse else ())
            read += 1
        if now <= end:  # afterwards the worker stops gracefully (``clear``), it is not frozen
            lapse = guardian.check(now)
            by_guardian.update(lapse.groups if lapse else ())
    assert by_guardian <= by_worker, (seed, by_guardian - by_worker)
    held = set(guardian.groups)
    assert by_worker & held <= by_guardian, (seed, (by_worker & held) - by_guardian)
    assert by_worker, "the schedule must contain lapses"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DAGKEEPER_"):
            monkeypatch.delenv(name)


def _settings(session_s: float, watchdog_deadline_s: float = 0.0) -> Settings:
    beat = min(2.0, session_s / 4)
    return Settings(
        zk=ZkSettings(session_timeout_s=session_s),
        master=MasterSettings(heartbeat_interval_s=beat),
        worker=WorkerSettings(
            heartbeat_interval_s=beat,
            report_retry_deadline_s=session_s / 2,
            watchdog_deadline_s=watchdog_deadline_s,
        ),
    )


def test_default_deadline_is_a_quarter_of_the_session_timeout() -> None:
    assert Settings().watchdog_deadline == 2.5  # the defaults satisfy the rule
    assert _settings(4).watchdog_deadline == 1.0
    assert _settings(10, watchdog_deadline_s=3.0).watchdog_deadline == 3.0


@pytest.mark.parametrize("deadline", [3.4, 0.1])
def test_deadline_refused_outside_its_window(deadline: float) -> None:
    with pytest.raises(ValidationError) as exc:
        _settings(10, watchdog_deadline_s=deadline)
    text = str(exc.value)
    assert f"worker.watchdog_deadline_s ({deadline}) must be 0 (= zk.session_timeout_s / 4)" in text
    assert "from 0.2 to zk.session_timeout_s / 3 (3.33)" in text
    assert "Traceback" not in text
