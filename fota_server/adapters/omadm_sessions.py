"""The open DM sessions of the OMA-DM endpoint, by (DevId, SessionID), with their idle deadlines in a heap.

A request touches only its own session; ``due(now)`` hands out the sessions whose idle deadline has passed
in O(log n) each, so 10,000 idle sessions cost a request nothing. The earliest idle deadline is a part of
the process's scheduler (``OmadmServer.timer``), whose timer ends the session (each request also ends the
sessions due), so an idle session ends on time even when no other request arrives. When the table
is full, the oldest session whose client never authenticated makes room (``oldest_unproven``), so clients
without credentials cannot lock devices out by filling it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, OrderedDict
from typing import Iterator

from ..protocol.omadm.session import DmServerSession

__all__ = ["SessionKey", "SessionTable"]

SessionKey = tuple[str, str]
# a session's state when it is dropped -> the metrics' result label
_ENDINGS = {"ended": "completed", "error": "error", "active": "idle_timeout", "awaiting_auth": "unauthenticated"}


class SessionTable:
    def __init__(self) -> None:
        self._sessions: dict[SessionKey, DmServerSession] = {}
        self._keys: dict[int, SessionKey] = {}  # id(session) -> its key
        self._unproven: OrderedDict[int, DmServerSession] = OrderedDict()  # not authenticated yet, oldest first
        self._heap: list[tuple[float, int, SessionKey, DmServerSession]] = []
        self._order = itertools.count()
        self.ended: Counter[str] = Counter()   # sessions forgotten, by how they ended (metrics)

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
        self.ended[_ENDINGS.get(session.state.value, session.state.value)] += 1   # metrics
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
