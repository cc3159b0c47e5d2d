"""The process's one timer (STYLE a: "the runner reads the real clock").

Every part of the server that has something to do at a given instant is a ``Timed`` part: it says when
(``next_deadline()``, an aware UTC datetime, or None for nothing planned) and does it when told
(``on_timer(now)``), without sleeping or reading a clock itself, as aioquic's connection does under its
asyncio protocol. The ``Scheduler`` keeps the registered parts, arms one asyncio timer for the earliest
of their deadlines, and when it fires calls ``on_timer(now)`` on every part that is due, earliest first,
then arms again. A part whose deadline moves earlier calls ``reschedule()`` (cheap: the parts are few);
one that moves later need not, the timer then fires early, finds it not due and arms again.

Time comes from the injected ``Clock`` only. A part that raises is logged once (until it succeeds again),
does not stop the others, and is not asked again for ``error_pause_s``. The timer never waits longer than
``max_wait_s``, so a step of the wall clock is noticed within that long.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

from ..clock import Clock

__all__ = ["Timed", "Scheduler", "Periodic", "MonotonicTimer"]

log = logging.getLogger("fota_server.scheduler")
_DUE = datetime(1970, 1, 1, tzinfo=timezone.utc)   # a deadline already passed: due at any instant


class Timed(Protocol):
    def next_deadline(self) -> datetime | None:
        """When this part next has something to do (a past instant: now), or None."""
        ...

    def on_timer(self, now: datetime) -> None:
        """Do what is due at ``now``."""
        ...


@dataclass
class _Entry:
    part: Timed
    name: str
    order: int
    failing: bool = False
    paused_until: datetime | None = None

    def deadline(self) -> datetime | None:
        deadline = self.part.next_deadline()
        if deadline is None or self.paused_until is None:
            return deadline
        return max(deadline, self.paused_until)


class Scheduler:
    def __init__(self, clock: Clock, *, max_wait_s: float = 60.0, min_step_s: float = 0.005,
                 error_pause_s: float = 1.0) -> None:
        self.clock = clock
        self._max_wait = timedelta(seconds=max_wait_s)
        self._min_step = timedelta(seconds=min_step_s)
        self._error_pause = timedelta(seconds=error_pause_s)
        self._entries: dict[int, _Entry] = {}          # id(part) -> its entry
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._wake_at: datetime | None = None          # when the armed timer fires
        self._firing = False
        self._closed = False

    @property
    def armed_at(self) -> datetime | None:
        """The instant the one timer is armed for (without a running loop: would be armed for), or None."""
        return self._wake_at

    def add(self, part: Timed, name: str) -> None:
        self._entries[id(part)] = _Entry(part, name, next(self._order))
        self.reschedule()

    def discard(self, part: Timed) -> None:
        self._entries.pop(id(part), None)

    def next_deadline(self) -> datetime | None:
        """The earliest deadline of the registered parts (a failing part's no sooner than its pause ends)."""
        known = [d for d in (entry.deadline() for entry in self._entries.values()) if d is not None]
        return min(known) if known else None

    def reschedule(self) -> None:
        """A part's deadline may have moved earlier: arm the timer sooner if it must."""
        if self._firing or self._closed:
            return   # run_due arms once every due part has run
        earliest = self.next_deadline()
        if earliest is not None and (self._wake_at is None or earliest < self._wake_at):
            self._arm(earliest, self.clock.now())

    def run_due(self) -> int:
        """Call ``on_timer(now)`` on every due part, earliest deadline first; returns how many ran. Then arm
        the timer for what is next (a part still due after it ran is asked again a ``min_step_s`` later)."""
        now = self.clock.now()
        due: list[tuple[datetime, int, _Entry]] = []
        for entry in self._entries.values():
            deadline = entry.deadline()
            if deadline is not None and deadline <= now:
                due.append((deadline, entry.order, entry))
        due.sort(key=lambda item: (item[0], item[1]))
        self._firing = True
        try:
            for _, _, entry in due:
                if self._entries.get(id(entry.part)) is entry:
                    self._run_one(entry, now)
        finally:
            self._firing = False
        self._cancel()
        earliest = self.next_deadline()
        if earliest is not None and not self._closed:
            self._arm(max(earliest, now + self._min_step), now)
        return len(due)

    def close(self) -> None:
        """Cancel the timer; nothing fires after this."""
        self._closed = True
        self._cancel()

    def _run_one(self, entry: _Entry, now: datetime) -> None:
        try:
            entry.part.on_timer(now)
        except Exception:
            if not entry.failing:
                log.exception("timer of %s failed; it is tried again every %.0f s", entry.name,
                              self._error_pause.total_seconds())
            else:
                log.debug("timer of %s failed again", entry.name, exc_info=True)
            entry.failing = True
            entry.paused_until = now + self._error_pause
            return
        if entry.failing:
            log.info("timer of %s runs again", entry.name)
        entry.failing, entry.paused_until = False, None

    def _arm(self, deadline: datetime, now: datetime) -> None:
        self._cancel()
        wake_at = min(deadline, now + self._max_wait)
        self._wake_at = wake_at
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return   # no loop (a test of pure logic): ``armed_at`` says when, the caller calls run_due
        self._timer = loop.call_later(max(0.0, (wake_at - now).total_seconds()), self._fire)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake_at = None

    def _fire(self) -> None:
        self._timer, self._wake_at = None, None
        self.run_due()


class Periodic:
    """A ``Timed`` part that calls ``action(now)`` every ``interval`` from ``first_at`` until ``stop()``."""

    def __init__(self, interval: timedelta, action: Callable[[datetime], None], first_at: datetime) -> None:
        self.interval = interval
        self._action = action
        self._at: datetime | None = first_at

    def next_deadline(self) -> datetime | None:
        return self._at

    def on_timer(self, now: datetime) -> None:
        if self._at is None or now < self._at:
            return
        self._at = now + self.interval
        self._action(now)

    def stop(self) -> None:
        self._at = None


class MonotonicTimer:
    """A ``Timed`` part over a component whose deadlines are monotonic seconds (the event loop's time, or
    ``time.monotonic``; the sans-IO machines' ``now``): ``next_at()`` says its earliest (None or infinity:
    nothing), ``fire()`` acts on what is due by its own clock. The scheduler is shown the deadline as an
    instant of its clock; a deadline already passed is due at once. ``moved()`` after a change that may have
    brought the earliest deadline forward re-arms the scheduler only when it must."""

    def __init__(self, scheduler: Scheduler, name: str, next_at: Callable[[], float | None], fire: Callable[[], None],
                 monotonic: Callable[[], float]) -> None:
        self.scheduler = scheduler
        self._next_at, self._fire, self._monotonic = next_at, fire, monotonic
        self._told: float | None = None        # the earliest deadline the scheduler was last shown
        scheduler.add(self, name)

    def next_deadline(self) -> datetime | None:
        at = self._next_at()
        self._told = at
        if at is None or at == float("inf"):
            return None
        left = at - self._monotonic()
        return _DUE if left <= 0 else self.scheduler.clock.now() + timedelta(seconds=left)

    def on_timer(self, now: datetime) -> None:
        self._fire()

    def moved(self) -> None:
        at = self._next_at()
        if at is not None and (self._told is None or at < self._told):
            self.scheduler.reschedule()

    def close(self) -> None:
        self.scheduler.discard(self)
