"""A bounded per-device memory in front of a store, kept exact for one process.

The owner drops a device's entry after every write of this process that changes it (``forget``) and reports the
database's ``data_version`` (``saw_version``): when another connection, another process say, has committed since
the last look, every entry goes; ``look_at_version`` reads that version at most once per ``recheck_s`` (reading
it costs about as much as the lookup it saves, so another process's commit is seen within that). A lookup that
an invalidation overtook keeps nothing: take ``generation`` before reading the store and hand it to ``keep``.
"""

from __future__ import annotations

import time
from typing import Callable, Generic, TypeVar

__all__ = ["PerDeviceCache"]

V = TypeVar("V")


class PerDeviceCache(Generic[V]):
    def __init__(self, max_entries: int, recheck_s: float = 0.001,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, V] = {}
        self.generation = 0   # moves on every invalidation
        self._seen_version: int | None = None
        self.recheck_s = recheck_s
        self.monotonic = monotonic
        self._recheck_at = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def forget(self, device_id: str) -> None:
        self.generation += 1
        self._entries.pop(device_id, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def saw_version(self, version: int) -> None:
        """The database's ``data_version`` now; every entry goes if it moved."""
        if version != self._seen_version:
            self.clear()
            self._seen_version = version

    def look_at_version(self, data_version: Callable[[], int]) -> None:
        """``saw_version(data_version())``, unless the version was read less than ``recheck_s`` ago."""
        now = self.monotonic()
        if now >= self._recheck_at:
            self._recheck_at = now + self.recheck_s
            self.saw_version(data_version())

    def get(self, device_id: str) -> V | None:
        return self._entries.get(device_id)

    def keep(self, generation: int, device_id: str, value: V) -> None:
        """Keep ``value``, read from the store when ``generation`` was current, unless an invalidation came since."""
        if generation != self.generation:
            return
        if device_id not in self._entries and len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # the oldest entry
        self._entries[device_id] = value
