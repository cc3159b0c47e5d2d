"""The process's one timer (``adapters/scheduler.py``) with a fake clock and fake parts: due parts run in
deadline order, the timer is armed for the earliest deadline and re-armed when a part's deadline moves, and
a part that raises neither stops the others nor is logged more than once while it keeps failing."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

import pytest

from fota_server.adapters.machine_timers import MachineTimers
from fota_server.adapters.scheduler import MonotonicTimer, Periodic, Scheduler
from fota_server.clock import FakeClock, SystemClock

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


class Part:
    def __init__(self, name: str, ran: list[str], deadline: datetime | None, every: timedelta | None = None,
                 fails: bool = False) -> None:
        self.name, self.ran, self.deadline, self.every, self.fails = name, ran, deadline, every, fails

    def next_deadline(self) -> datetime | None:
        return self.deadline

    def on_timer(self, now: datetime) -> None:
        self.ran.append(self.name)
        if self.fails:
            raise RuntimeError(f"{self.name} broke")
        self.deadline = now + self.every if self.every is not None else None


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_due_parts_run_in_deadline_order_and_the_timer_is_armed_for_the_earliest() -> None:
    clock, ran = FakeClock(T0), list[str]()
    scheduler = Scheduler(clock)
    late, early, later = Part("late", ran, at(3)), Part("early", ran, at(1)), Part("later", ran, at(10))
    for part in (late, early, later):
        scheduler.add(part, part.name)
    assert scheduler.armed_at == at(1)
    assert scheduler.run_due() == 0 and ran == []          # nothing due yet
    clock.set(at(5))
    assert scheduler.run_due() == 2
    assert ran == ["early", "late"]
    assert scheduler.armed_at == at(10)


def test_a_deadline_moved_earlier_rearms_and_one_moved_later_waits_for_the_early_wake() -> None:
    clock, ran = FakeClock(T0), list[str]()
    scheduler = Scheduler(clock)
    part = Part("p", ran, at(30))
    scheduler.add(part, "p")
    assert scheduler.armed_at == at(30)
    part.deadline = at(2)
    scheduler.reschedule()
    assert scheduler.armed_at == at(2)
    part.deadline = at(20)
    scheduler.reschedule()                                 # later: the armed timer stays; waking early is harmless
    assert scheduler.armed_at == at(2)
    clock.set(at(2))
    assert scheduler.run_due() == 0 and ran == []
    assert scheduler.armed_at == at(20)


def test_a_part_added_or_with_nothing_planned() -> None:
    clock, ran = FakeClock(T0), list[str]()
    scheduler = Scheduler(clock, max_wait_s=60)
    idle = Part("idle", ran, None)
    scheduler.add(idle, "idle")
    assert scheduler.armed_at is None
    far = Part("far", ran, at(3600))
    scheduler.add(far, "far")
    assert scheduler.armed_at == at(60)                    # never longer than max_wait_s: a clock step is seen
    scheduler.discard(far)
    clock.set(at(60))
    assert scheduler.run_due() == 0
    assert scheduler.armed_at is None


def test_a_part_still_due_after_it_ran_is_asked_again_a_step_later() -> None:
    clock, ran = FakeClock(T0), list[str]()
    scheduler = Scheduler(clock, min_step_s=0.01)
    stuck = Part("stuck", ran, at(0), every=timedelta(0))
    scheduler.add(stuck, "stuck")
    assert scheduler.run_due() == 1
    assert scheduler.armed_at == at(0.01)


def test_a_failing_part_does_not_stop_the_others_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock, ran = FakeClock(T0), list[str]()
    scheduler = Scheduler(clock, error_pause_s=1.0)
    broken = Part("broken", ran, at(1), fails=True)
    fine = Part("fine", ran, at(1), every=timedelta(seconds=1))
    scheduler.add(broken, "broken part")
    scheduler.add(fine, "fine part")
    with caplog.at_level(logging.DEBUG, logger="fota_server.scheduler"):
        for second in range(1, 6):
            clock.set(at(second))
            scheduler.run_due()
        assert ran.count("fine") == 5
        assert 3 <= ran.count("broken") <= 5               # asked again once its pause is over
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "broken part" in errors[0].getMessage()
        broken.fails = False
        clock.set(at(7))
        scheduler.run_due()
    assert any(r.levelno == logging.INFO and "broken part" in r.getMessage() for r in caplog.records)


def test_a_part_rescheduling_from_its_timer_does_not_arm_twice() -> None:
    clock, ran = FakeClock(T0), list[str]()
    scheduler = Scheduler(clock)

    class Chained(Part):
        def on_timer(self, now: datetime) -> None:
            super().on_timer(now)
            other.deadline = now + timedelta(seconds=1)
            scheduler.reschedule()

    other = Part("other", ran, None)
    chained = Chained("chained", ran, at(1))
    scheduler.add(chained, "chained")
    scheduler.add(other, "other")
    clock.set(at(1))
    scheduler.run_due()
    assert scheduler.armed_at == at(2)


def test_a_periodic_part_runs_every_interval_until_stopped() -> None:
    clock, runs = FakeClock(T0), list[datetime]()
    scheduler = Scheduler(clock)
    periodic = Periodic(timedelta(seconds=2), runs.append, first_at=at(1))
    scheduler.add(periodic, "pump")
    for second in range(1, 8):
        clock.set(at(second))
        scheduler.run_due()
    assert runs == [at(1), at(3), at(5), at(7)]
    periodic.stop()
    clock.set(at(20))
    assert scheduler.run_due() == 0 and scheduler.armed_at is None


class Monotonic:
    """Deadlines in monotonic seconds, on their own clock that moves with the fake one."""

    def __init__(self) -> None:
        self.now_s = 1000.0
        self.deadlines: list[float] = []
        self.fired: list[float] = []

    def next_at(self) -> float | None:
        return min(self.deadlines, default=None)

    def fire(self) -> None:
        self.fired += [d for d in self.deadlines if d <= self.now_s]
        self.deadlines = [d for d in self.deadlines if d > self.now_s]


def test_monotonic_deadlines_are_shown_as_instants_and_fire_when_due() -> None:
    clock, part = FakeClock(T0), Monotonic()
    scheduler = Scheduler(clock)
    timer = MonotonicTimer(scheduler, "exchanges", part.next_at, part.fire, lambda: part.now_s)
    assert scheduler.armed_at is None
    part.deadlines.append(1005.0)
    timer.moved()                                          # earlier than anything shown: armed
    assert scheduler.armed_at == at(5)
    part.deadlines.append(1009.0)
    timer.moved()                                          # later: the armed timer stays
    assert scheduler.armed_at == at(5)
    clock.set(at(5))
    part.now_s = 1005.0
    assert scheduler.run_due() == 1 and part.fired == [1005.0]
    assert scheduler.armed_at == at(9)
    part.deadlines.append(1004.0)                          # already passed: due at once
    timer.moved()
    assert scheduler.run_due() == 1 and part.fired == [1005.0, 1004.0]
    timer.close()
    assert scheduler.next_deadline() is None


def test_many_machines_deadlines_are_one_part_firing_each_once_when_due() -> None:
    clock, mono, due = FakeClock(T0), [1000.0], list[str]()
    scheduler = Scheduler(clock)
    timers = MachineTimers[str](scheduler, "machines", due.append, lambda: mono[0])
    timers.watch("a", 1010.0)
    timers.watch("b", 1003.0)
    timers.watch("c", 1005.0)
    assert scheduler.armed_at == at(3)
    timers.watch("b", 1020.0)                              # moved later: its earlier entry is stale
    timers.forget("c")
    clock.set(at(10))
    mono[0] = 1010.0
    scheduler.run_due()
    assert due == ["a"]
    assert scheduler.armed_at == at(20)
    for n in range(500):                                   # moving deadlines leave the heap bounded
        timers.watch("b", 1020.0 + n)
    assert len(timers) < 2 * 1 + 64 + 2
    timers.close()
    assert scheduler.next_deadline() is None


def test_the_real_timer_fires_on_the_running_loop() -> None:
    async def main() -> list[str]:
        ran: list[str] = []
        done = asyncio.Event()
        scheduler = Scheduler(SystemClock())

        class Signal(Part):
            def on_timer(self, now: datetime) -> None:
                super().on_timer(now)
                done.set()

        scheduler.add(Signal("soon", ran, SystemClock().now() + timedelta(seconds=0.05)), "soon")
        scheduler.add(Part("never", ran, SystemClock().now() + timedelta(hours=1)), "never")
        await asyncio.wait_for(done.wait(), 30)
        scheduler.close()
        return ran

    assert asyncio.run(main()) == ["soon"]
