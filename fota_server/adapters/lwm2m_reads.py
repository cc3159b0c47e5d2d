"""The reads after Register (/3/0 and /4/0), paced: a bounded queue of endpoints taken at a steady rate with
a cap on reads in flight, held while the server is saturated, so a registration storm is absorbed rather
than answered with a storm of requests of its own."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from ..logs import endpoint_context

__all__ = ["PacedReads"]

log = logging.getLogger("fota_server.lwm2m")

BUSY_PAUSE_S = 0.2


class PacedReads:
    def __init__(self, read: Callable[[str], Awaitable[Any]], per_second: float, in_flight: int, queued: int,
                 busy: Callable[[], bool] = lambda: False) -> None:
        self._read = read
        self._interval_s = 1.0 / per_second if per_second > 0 else 0.0
        self._in_flight = max(1, in_flight)
        self._limit = queued
        self._busy = busy
        self._queue: OrderedDict[str, None] = OrderedDict()
        self._ready = asyncio.Event()
        self._slots = asyncio.Semaphore(self._in_flight)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.dropped = 0
        self.done = 0

    def add(self, endpoint: str) -> bool:
        """Queue a device to be read once; False when the queue is full (it is read at a later Update)."""
        if endpoint in self._queue:
            return True
        if len(self._queue) >= self._limit:
            if self.dropped == 0:
                log.warning("the device-read queue is full (%d); further devices are read at a later Update",
                            self._limit)
            self.dropped += 1
            return False
        self._queue[endpoint] = None
        self._ready.set()
        return True

    def discard(self, endpoint: str) -> None:
        self._queue.pop(endpoint, None)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def reading(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        """Take queued devices at the configured rate until cancelled (then the reads in flight stop too)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while True:
                while not self._queue:
                    self._ready.clear()
                    await self._ready.wait()
                    next_at = max(next_at, loop.time())
                if self._busy():
                    await asyncio.sleep(BUSY_PAUSE_S)
                    continue
                wait_s = next_at - loop.time()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                await self._slots.acquire()
                if not self._queue:
                    self._slots.release()
                    continue
                endpoint, _ = self._queue.popitem(last=False)
                next_at = max(next_at + self._interval_s, loop.time() - 1.0)  # a burst of at most one second
                task = loop.create_task(self._one(endpoint))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _one(self, endpoint: str) -> None:
        try:
            await self._read(endpoint)
        except Exception:
            log.exception("reading device data from %s failed", endpoint[:128],
                          extra=endpoint_context(endpoint))
        finally:
            self.done += 1
            self._slots.release()
