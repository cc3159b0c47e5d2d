"""Throttling of OMA-DM authentication failures, per device and per source address (issue 12, abuse limits).

Every failed authentication (SyncHdr 401: a wrong credential, a stale nonce, an unknown device) counts
against the DevId it claimed and the address it came from. After ``max_failures`` within ``window_s``
that key is blocked for ``block_s``: its messages are refused before any credential is checked (the
adapter answers HTTP 429 with ``Retry-After`` and a SyncML 503; see README "OMA-DM authentication").
A successful authentication clears its device's count, and takes the failures of its own session off its
address's count (many devices behind one address, each with a stale nonce now and then, are not a
guesser). Plain data, ``now`` in
monotonic seconds; the table holds at most ``max_keys`` keys, oldest dropped first.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ThrottleSettings", "AuthThrottle"]


@dataclass(frozen=True)
class ThrottleSettings:
    max_failures: int = 10
    window_s: float = 60.0
    block_s: float = 60.0
    max_keys: int = 100_000


@dataclass
class _Count:
    window_start: float
    failures: int = 0
    blocked_until: float = -math.inf


class AuthThrottle:
    def __init__(self, settings: ThrottleSettings = ThrottleSettings()) -> None:
        self.settings = settings
        self._counts: OrderedDict[tuple[str, str], _Count] = OrderedDict()
        self.refused = 0   # messages refused while blocked

    @staticmethod
    def _keys(device_id: str, peer: str) -> list[tuple[str, str]]:
        return [k for k in (("device", device_id[:128]), ("peer", peer[:64])) if k[1]]

    def retry_after(self, device_id: str, peer: str, now: float) -> int | None:
        """Whole seconds until the device and the address may try again; None if neither is blocked."""
        left = max((self._counts[k].blocked_until - now for k in self._keys(device_id, peer) if k in self._counts),
                   default=0.0)
        if left <= 0:
            return None
        self.refused += 1
        return max(1, math.ceil(left))

    def failed(self, device_id: str, peer: str, now: float) -> bool:
        """Count one failure against both keys; True if it blocked one of them just now."""
        blocked = False
        for key in self._keys(device_id, peer):
            count = self._counts.get(key)
            if count is None or now - count.window_start >= self.settings.window_s:
                count = self._counts[key] = _Count(now, blocked_until=-math.inf if count is None else count.blocked_until)
            self._counts.move_to_end(key)
            count.failures += 1
            if count.failures >= self.settings.max_failures and count.blocked_until <= now:
                count.blocked_until, blocked = now + self.settings.block_s, True
        while len(self._counts) > self.settings.max_keys:
            self._counts.popitem(last=False)
        return blocked

    def succeeded(self, device_id: str, peer: str = "", forgiven: int = 0) -> None:
        """The device authenticated: its count goes, and its address is forgiven the ``forgiven`` failures of
        the same session (a stale nonce answered right after the challenge is no guess)."""
        self._counts.pop(("device", device_id[:128]), None)
        count = self._counts.get(("peer", peer[:64])) if peer else None
        if count is not None:
            count.failures = max(0, count.failures - forgiven)
