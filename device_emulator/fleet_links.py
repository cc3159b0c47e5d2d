"""Link impairments for fleet devices, on real sockets.

LwM2M devices are impaired in their CoAP mux (``links.coap_mux.Impairment``: each datagram may be lost or
held back, in each direction). ``ImpairedTransport`` does the same for HTTP and OMA-DM devices one
request at a time on a shared httpx connection pool. TCP hides loss as delay, so a "lost" request waits a retransmission timeout (1 s, doubling
while the retransmission is lost too, at most three times) and then goes through; latency is added to every
request; while the device is ``offline`` every request fails as a connect error.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

__all__ = ["ImpairedTransport", "Offline"]


class Offline:
    """A device's offline window in loop time: ``[start_at, end_at)``; open-ended before ``start`` is set."""

    def __init__(self) -> None:
        self.start_at: float | None = None
        self.end_at: float | None = None

    def begin(self, now: float, duration_s: float) -> None:
        self.start_at, self.end_at = now, now + duration_s

    def active(self, now: float) -> bool:
        return self.start_at is not None and self.end_at is not None and self.start_at <= now < self.end_at


class ImpairedTransport(httpx.AsyncBaseTransport):
    """One device's view of a shared connection pool: loss (as retransmission delay), latency, offline windows.

    Closing it leaves the shared pool open (the fleet closes that once)."""

    def __init__(self, shared: httpx.AsyncBaseTransport, loss_rate: float = 0.0, latency_s: float = 0.0,
                 seed: int = 0) -> None:
        self._shared = shared
        self.loss_rate, self.latency_s = loss_rate, latency_s
        self.offline = Offline()
        self.lost = 0
        self.requests = 0
        self.answered = 0       # responses with a 2xx status
        self._rng = random.Random(seed) if loss_rate else None   # 2.5 KB: only lossy devices get one

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self.offline.active(asyncio.get_running_loop().time()):
            self.lost += 1
            raise httpx.ConnectError("device offline (injected)", request=request)
        rto, delay = 1.0, 0.0
        for _ in range(3):
            if self._rng is None or self._rng.random() >= self.loss_rate:
                break
            self.lost += 1
            delay, rto = delay + rto, rto * 2
        if delay:
            await asyncio.sleep(delay)
        response = await self._shared.handle_async_request(request)
        if 200 <= response.status_code < 300:
            self.answered += 1
        return response

    async def aclose(self) -> None:
        return None

    async def __aexit__(self, *args: Any) -> None:
        return None
