"""Earliest-deadline-first bookkeeping for many timers, without IO: the transport owns one real timer
and asks this object what is due. An item has at most one live entry; a deadline that moves later
is not re-entered (the item is simply asked again when the earlier entry comes due)."""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Generic, Hashable, TypeVar

__all__ = ["Deadlines"]

Item = TypeVar("Item", bound=Hashable)


class Deadlines(Generic[Item]):
    def __init__(self, slack_entries: int = 64) -> None:
        self._heap: list[tuple[float, int, Item]] = []
        self._live: dict[Item, float] = {}
        self._sequence = itertools.count()
        self._slack = slack_entries

    def __len__(self) -> int:
        """Entries held, live or stale; at most about twice the live ones plus the slack."""
        return len(self._heap)

    def schedule(self, item: Item, at: float) -> bool:
        """Be asked about ``item`` at ``at``; True if that is earlier than anything it had."""
        if at >= self._live.get(item, math.inf):
            return False
        self._live[item] = at
        heapq.heappush(self._heap, (at, next(self._sequence), item))
        return True

    def discard(self, item: Item) -> None:
        """Forget ``item``; its heap entries are dropped once stale ones are the majority."""
        self._live.pop(item, None)
        if len(self._heap) > 2 * len(self._live) + self._slack:
            self._heap = [(at, next(self._sequence), i) for i, at in self._live.items()]
            heapq.heapify(self._heap)

    def pop_due(self, now: float) -> list[Item]:
        """Items whose live deadline is at or before ``now``, earliest first; they are no longer scheduled."""
        due: list[Item] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, item = heapq.heappop(self._heap)
            if self._live.get(item) == at:
                del self._live[item]
                due.append(item)
        return due

    def next_at(self) -> float:
        """The earliest entry (possibly stale: waking for it is harmless), or infinity."""
        return self._heap[0][0] if self._heap else math.inf
