"""Many protocol machines' deadlines as one part of the process's scheduler (``adapters/scheduler.py``).

The LwM2M driver runs one firmware-update machine per attempt, thousands at once in a large campaign; each
has deadlines in monotonic seconds (the command in flight, the phase, the next poll, the device gone quiet).
``MachineTimers`` keeps them in one heap and shows the scheduler only the earliest, so the scheduler's cost
does not grow with the attempts. ``watch(item, at)`` sets an item's deadline (later or earlier; None: none);
when it comes, ``due(item)`` is called once, and the item watches again with its machine's next deadline.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Callable, Generic, Hashable, TypeVar

from .scheduler import MonotonicTimer, Scheduler

__all__ = ["MachineTimers"]

log = logging.getLogger("fota_server.scheduler")

Item = TypeVar("Item", bound=Hashable)


class MachineTimers(Generic[Item]):
    def __init__(self, scheduler: Scheduler, name: str, due: Callable[[Item], None],
                 monotonic: Callable[[], float], slack_entries: int = 64) -> None:
        self._due = due
        self._monotonic = monotonic
        self._heap: list[tuple[float, int, Item]] = []
        self._live: dict[Item, float] = {}
        self._order = itertools.count()
        self._slack = slack_entries
        self._timer = MonotonicTimer(scheduler, name, self.next_at, self._fire, monotonic)

    def __len__(self) -> int:
        """Entries held, live or stale; at most about twice the live ones plus the slack."""
        return len(self._heap)

    def watch(self, item: Item, at: float | None) -> None:
        if at is None:
            self.forget(item)
            return
        if self._live.get(item) == at:
            return
        self._live[item] = at
        heapq.heappush(self._heap, (at, next(self._order), item))
        self._compact()
        self._timer.moved()

    def forget(self, item: Item) -> None:
        if self._live.pop(item, None) is not None:
            self._compact()

    def next_at(self) -> float | None:
        heap = self._heap
        while heap and self._live.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)   # forgotten or moved
        return heap[0][0] if heap else None

    def close(self) -> None:
        self._timer.close()

    def _fire(self) -> None:
        now, due = self._monotonic(), []
        while (at := self.next_at()) is not None and at <= now:
            _, _, item = heapq.heappop(self._heap)
            del self._live[item]
            due.append(item)
        for item in due:   # after the heap is settled: an item may watch again from ``due``
            try:
                self._due(item)
            except Exception:
                log.exception("timer of %r failed", item)

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self._live) + self._slack:
            self._heap = [(at, next(self._order), item) for item, at in self._live.items()]
            heapq.heapify(self._heap)
