"""The open DM sessions of the OMA-DM endpoint, by (DevId, SessionID), with their idle deadlines in a heap.

A request touches only its own session; ``due(now)`` hands out the sessions whose idle deadline has passed
in O(log n) each, so 10,000 idle sessions cost a request nothing. ``SessionTimer`` puts the earliest idle
deadline on the process's scheduler, whose timer ends the session (each request also ends the sessions due),
so an idle session ends on time even when no other request arrives. When the table
is full, the oldest session whose client never authenticated makes room (``oldest_unproven``), so clients
without credentials cannot lock devices out by filling it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

from ..clock import Clock
from ..protocol.omadm.session import DmServerSession
from ..store.health import StorageUnavailable
from .scheduler import Scheduler

__all__ = ["SessionKey", "SessionTable", "SessionTimer"]

SessionKey = tuple[str, str]
_DUE = datetime(1970, 1, 1, tzinfo=timezone.utc)   # a deadline already passed: due at any instant


class SessionTable:
    def __init__(self) -> None:
        self._sessions: dict[SessionKey, DmServerSession] = {}
        self._keys: dict[int, SessionKey] = {}  # id(session) -> its key
        self._unproven: OrderedDict[int, DmServerSession] = OrderedDict()  # not authenticated yet, oldest first
        self._heap: list[tuple[float, int, SessionKey, DmServerSession]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[SessionKey]:
        return iter(list(self._sessions))

    def get(self, key: SessionKey) -> DmServerSession | None:
        return self._sessions.get(key)

    def add(self, key: SessionKey, session: DmServerSession) -> None:
        old = self._sessions.get(key)
        if old is not None:
            self._keys.pop(id(old), None)
        self._sessions[key] = session
        self._keys[id(session)] = key
        if not session.authenticated:
            self._unproven[id(session)] = session
        self._schedule(key, session)

    def proven(self, session: DmServerSession) -> None:
        """The session's client authenticated: it is no longer the first to go when the table is full."""
        self._unproven.pop(id(session), None)

    def oldest_unproven(self) -> DmServerSession | None:
        """The session opened longest ago whose client has not authenticated (to make room for a new one)."""
        return next(iter(self._unproven.values()), None)

    def drop(self, session: DmServerSession) -> None:
        """Forget the session (its heap entry goes when it comes up)."""
        self._unproven.pop(id(session), None)
        key = self._keys.pop(id(session), None)
        if key is not None and self._sessions.get(key) is session:
            del self._sessions[key]
        if len(self._heap) > 4 * len(self._sessions) + 1024:  # mostly entries of sessions gone: rebuild
            self._heap = []
            for live_key, live in self._sessions.items():
                self._schedule(live_key, live)

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[DmServerSession]:
        """The open sessions whose idle deadline is ``now`` or earlier; a session whose deadline moved on is
        put back with its new one."""
        out: list[DmServerSession] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, key, session = heapq.heappop(self._heap)
            if self._sessions.get(key) is not session:
                continue  # dropped or replaced meanwhile
            deadline = session.next_deadline()
            if deadline is not None and deadline > now:
                self._schedule(key, session)
            else:
                out.append(session)
        return out

    def _schedule(self, key: SessionKey, session: DmServerSession) -> None:
        deadline = session.next_deadline()
        heapq.heappush(self._heap, (-math.inf if deadline is None else deadline, next(self._order), key, session))


class SessionTimer:
    """The table's earliest idle deadline as a ``Timed`` part of the process's scheduler. The sessions keep
    monotonic seconds (``now`` of the DM session machine); the scheduler is shown them as instants of its
    clock, and ``on_timer`` hands ``expire`` the monotonic time again."""

    def __init__(self, table: SessionTable, expire: Callable[[float], None], clock: Clock,
                 monotonic: Callable[[], float]) -> None:
        self._table, self._expire, self._clock, self._monotonic = table, expire, clock, monotonic
        self.scheduler: Scheduler | None = None

    def attach(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        scheduler.add(self, "OMA-DM session expiry")

    def detach(self) -> None:
        if self.scheduler is not None:
            self.scheduler.discard(self)
            self.scheduler = None

    def next_deadline(self) -> datetime | None:
        deadline = self._table.next_deadline()
        if deadline is None:
            return None
        left = deadline - self._monotonic()
        return _DUE if left <= 0 else self._clock.now() + timedelta(seconds=left)

    def on_timer(self, now: datetime) -> None:
        try:
            self._expire(self._monotonic())
        except StorageUnavailable:
            pass   # logged once by the store's health; the sessions still due are asked again

    def moved(self) -> None:
        """A session was opened or heard from: arm the timer sooner if its deadline is the earliest."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        deadline = self.next_deadline()
        if deadline is not None and (scheduler.armed_at is None or deadline < scheduler.armed_at):
            scheduler.reschedule()
