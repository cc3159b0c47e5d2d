"""Pacing pieces of the LwM2M server: the device-read queue and the Max-Age a saturated server hands out."""

from __future__ import annotations

import asyncio
import random

from fota_server.adapters.lwm2m_pressure import Pressure
from fota_server.adapters.lwm2m_reads import PacedReads
from tests.waiting import apoll


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_deferred_devices_are_given_return_times_at_the_rate_registers_are_taken() -> None:
    clock = _Clock()
    pressure = Pressure(None, clock, random.Random(3), min_wait_s=2, max_wait_s=60)
    for _ in range(400):
        pressure.taken()          # 400 Registers taken in one second of the window
    ages = [pressure.defer() for _ in range(8000)]
    assert ages[0] == 3 and ages == sorted(ages)           # one after another, never sooner than the minimum
    assert ages.count(3) in (399, 400) and ages.count(4) in (399, 400, 401)  # 400 a second: what it takes
    assert ages[-1] in (22, 23)                            # 8,000 deferred: spread over 20 s
    more = [pressure.defer() for _ in range(20000)]
    assert more[-1] == 60                                  # never asked to wait longer than the maximum
    clock.now += 61                                        # the window and the return times have passed
    assert pressure.defer() == 3 and pressure.deferred == 28001
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
