"""Pacing pieces of the LwM2M server: the device-read queue and the Max-Age a saturated server hands out."""

from __future__ import annotations

import asyncio
import random

from fota_server.adapters.lwm2m_fastpath import Pressure
from fota_server.adapters.lwm2m_reads import PacedReads
from tests.waiting import apoll


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_max_age_spreads_the_deferred_over_the_rate_registers_were_taken() -> None:
    clock = _Clock()
    pressure = Pressure(None, clock, random.Random(3), min_wait_s=2, max_wait_s=60)
    for _ in range(100):
        pressure.taken()          # 100 Registers taken in one second of the window
    first = [pressure.defer() for _ in range(10)]
    assert first[0] == 2 and all(2 <= age <= 60 for age in first)  # a few deferred: come back soon
    many = [pressure.defer() for _ in range(5000)]
    assert 45 <= max(many) <= 51 and min(many) >= 2       # 5,000 deferred, 100 taken at best a second: ~50 s
    assert sum(many) / len(many) > 10
    clock.now += Pressure.WINDOW_S + 1                     # the window has passed: the backlog is forgotten
    assert pressure.defer() == 2 and pressure.deferred == 5011
    assert not pressure.sample()                           # no socket: never saturated


def test_reads_are_queued_once_bounded_and_capped_in_flight() -> None:
    async def scenario() -> None:
        started: list[str] = []
        release = asyncio.Event()
        running = 0
        most = 0

        async def read(endpoint: str) -> None:
            nonlocal running, most
            started.append(endpoint)
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1

        reads = PacedReads(read, per_second=10_000, in_flight=3, queued=5)
        for n in (1, 2, 2, 3, 4, 5, 6):
            reads.add(f"ep{n}")
        assert reads.queued == 5 and reads.dropped == 1    # ep2 once; ep6 found the queue full
        reads.discard("ep5")
        worker = asyncio.ensure_future(reads.run())
        await apoll(lambda: len(started), lambda n: n == 3, 10, "three reads in flight")
        assert reads.queued == 1 and most == 3             # the fourth waits for a slot
        release.set()
        await apoll(lambda: reads.done, lambda n: n == 4, 10, "every queued device read")
        assert started == ["ep1", "ep2", "ep3", "ep4"]
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)

    asyncio.run(scenario())


def test_reads_wait_while_the_server_is_busy() -> None:
    async def scenario() -> None:
        busy = True
        asked = 0
        done: list[str] = []

        def is_busy() -> bool:
            nonlocal asked
            asked += 1
            return busy

        async def read(endpoint: str) -> None:
            done.append(endpoint)

        reads = PacedReads(read, per_second=10_000, in_flight=4, queued=10, busy=is_busy)
        reads.add("ep1")
        worker = asyncio.ensure_future(reads.run())
        await apoll(lambda: asked, lambda n: n >= 3, 10, "the queue looked at the load three times")
        assert done == []
        busy = False
        await apoll(lambda: done, lambda d: d == ["ep1"], 10, "the read once the load eased")
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)

    asyncio.run(scenario())
