"""What the HTTP device endpoints read on every request, kept in memory per database: the outcome of a device's
token check (``DeviceAuthCache``) and the device's HTTP state, its open offer among it (``DeviceStateCache``).

Both are exact for this process: the stores drop a device's entry after every write of this process that changes
what it holds (a credential; an offer, the device's logging switch or DDI attributes), and drop every entry when
another connection, another process say, has committed to the database since the last look (SQLite's
``PRAGMA data_version``, read at most once a millisecond, as the LwM2M admission does: reading it costs about as
much as the rest of a lookup; on PostgreSQL the devices other processes changed are dropped one by
one, as their notifications arrive). A lookup that a write overtook keeps nothing (a generation count).
"""

from __future__ import annotations

import hmac
import time
import weakref
from typing import Callable, TypeVar

from ..records import Device
from .database import SqlDatabase
from .device_cache import PerDeviceCache
from .protocol_ports import DeviceState

__all__ = ["DeviceAuthCache", "DeviceState", "DeviceStateCache", "caches_of"]

V = TypeVar("V")


class _PerDevice(PerDeviceCache[V]):
    def _current(self, db: SqlDatabase, device_id: str) -> V | None:
        self.look_at_version(db.data_version)
        return self.get(device_id)


class DeviceAuthCache(_PerDevice[tuple[str, Device, float]]):
    """Successful device-token checks: the device and its stored token hash; a check compares the hash. An entry
    lives ``ttl_s`` at most, so the device's reported fields it holds are at most that old. Failed checks are
    never kept: a device added or given a token elsewhere is found at its first request."""

    def __init__(self, ttl_s: float = 10.0, max_entries: int = 65536) -> None:
        super().__init__(max_entries)
        self.ttl_s = ttl_s

    def device(self, db: SqlDatabase, device_id: str, hashed: str,
               lookup: Callable[[str], tuple[Device, str] | None]) -> Device | None:
        """The device if ``hashed`` is the SHA-256 (hex) of its HTTP token, else None."""
        entry = self._current(db, device_id)
        now = time.monotonic()
        if entry is not None and entry[2] > now and hmac.compare_digest(entry[0], hashed):
            return entry[1]
        generation = self.generation
        found = lookup(device_id)
        if found is None or not hmac.compare_digest(found[1], hashed):
            return None
        self.keep(generation, device_id, (found[1], found[0], now + self.ttl_s))
        return found[0]


class DeviceStateCache(_PerDevice[DeviceState]):
    def __init__(self, max_entries: int = 65536) -> None:
        super().__init__(max_entries)

    def state(self, db: SqlDatabase, device_id: str, read: Callable[[str], DeviceState]) -> DeviceState:
        state = self._current(db, device_id)
        if state is None:
            generation = self.generation
            state = read(device_id)
            self.keep(generation, device_id, state)
        return state


_CACHES: weakref.WeakKeyDictionary[SqlDatabase, tuple[DeviceAuthCache, DeviceStateCache]] = \
    weakref.WeakKeyDictionary()


def caches_of(db: SqlDatabase) -> tuple[DeviceAuthCache, DeviceStateCache]:
    """The database's caches, made (the token checks hooked to its credential changes) on first use."""
    caches = _CACHES.get(db)
    if caches is None:
        caches = _CACHES[db] = (DeviceAuthCache(), DeviceStateCache())
        db.credential_listeners.append(caches[0].forget)
        peers: list[Callable[[str], None]] | None = getattr(db, "peer_change_listeners", None)
        if peers is not None:   # PostgreSQL: the devices other processes changed (store/postgres_changes.py)
            peers += [caches[0].forget, caches[1].forget]
    return caches
