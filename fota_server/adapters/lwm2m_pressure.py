"""How far the LwM2M server falls behind the datagrams on its socket, and how long a Register it puts off
is asked to wait (RFC 7252 §5.9.3.4: 5.03 Service Unavailable with Max-Age)."""

from __future__ import annotations

import math
import random
import socket
import struct
from typing import Callable

__all__ = ["Pressure"]

_SO_MEMINFO = 55   # Linux: the socket's memory counters, the receive queue's bytes first


class Pressure:
    """How far the server falls behind its datagrams, from the kernel's count of the bytes queued on its
    socket (SO_MEMINFO, Linux): above ``deep_fraction`` of the queue's room a share of new Registers is put
    off, growing with the depth (all of them at twice that depth), so the queue settles where the server
    keeps up. A quarter of the room is about 2,000 datagrams with the room the server asks for: a burst the
    server works off well within a device's first retransmission timeout (2 s)."""

    WINDOW_S = 10
    MIN_RATE = 200   # Registers a second assumed takeable before any were measured

    def __init__(self, sock: socket.socket | None, monotonic: Callable[[], float],
                 rng: random.Random | None = None, deep_fraction: float = 0.25,
                 min_wait_s: int = 2, max_wait_s: int = 60) -> None:
        self._sock = sock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._deep_fraction = deep_fraction
        self._min_wait_s, self._max_wait_s = min_wait_s, max_wait_s
        self.shed = 0.0                          # the share of new Registers to put off now
        self.deferred = 0
        self._taken = [0] * self.WINDOW_S        # Registers taken and deferred, per second, over the window
        self._put_off = [0] * self.WINDOW_S
        self._second = 0
        self._next_return = 0.0

    @property
    def saturated(self) -> bool:
        return self.shed > 0.0

    def sample(self) -> bool:
        """Look at the receive queue once; True while it is deeper than ``deep_fraction`` of its room."""
        if self._sock is None:
            return False
        try:
            queued, room = struct.unpack_from("2I", self._sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 36))
        except (OSError, struct.error):
            self._sock = None  # not Linux: never saturated by this measure
            return False
        deep = room * self._deep_fraction
        self.shed = min(1.0, max(0.0, (queued - deep) / deep)) if deep > 0 else 0.0
        return self.saturated

    def calm(self) -> None:
        self.shed = 0.0

    def put_off(self) -> bool:
        """Whether to put off this Register."""
        return self.shed > 0.0 and self._rng.random() < self.shed

    def _slot(self) -> int:
        second = int(self._monotonic())
        if second != self._second:
            for step in range(min(second - self._second, self.WINDOW_S)):
                slot = (self._second + 1 + step) % self.WINDOW_S
                self._taken[slot] = self._put_off[slot] = 0
            self._second = second
        return second % self.WINDOW_S

    def taken(self) -> None:
        self._taken[self._slot()] += 1

    def defer(self) -> int:
        """Count a deferred Register and return the Max-Age to answer it with: deferred devices are given
        return times one after another at the rate the server takes Registers (its best second in the window),
        so they come back no faster than it can take them and no later than they need to."""
        now = self._monotonic()
        self._put_off[self._slot()] += 1
        self.deferred += 1
        rate = max(max(self._taken), self.MIN_RATE)
        self._next_return = min(max(self._next_return, now + self._min_wait_s) + 1.0 / rate,
                                now + self._max_wait_s)
        return max(self._min_wait_s, min(self._max_wait_s, math.ceil(self._next_return - now)))
