"""Link impairments for fleet devices, on real sockets.

``UdpImpairment`` sits between one LwM2M device's socket and the server: the device talks to the relay's
device-side port, the relay forwards from its own server-side socket (which the server then knows as the
device's address) and sends the server's datagrams back to wherever the device last spoke from. Each
datagram may be lost (``loss_rate``, each direction) or held back (``latency_s``).

``ImpairedTransport`` does the same for HTTP and OMA-DM devices one request at a time on a shared httpx
connection pool. TCP hides loss as delay, so a "lost" request waits a retransmission timeout (1 s, doubling
while the retransmission is lost too, at most three times) and then goes through; latency is added to every
request; while the device is ``offline`` every request fails as a connect error.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

__all__ = ["UdpImpairment", "ImpairedTransport", "Offline"]


class Offline:
    """A device's offline window in loop time: ``[start_at, end_at)``; open-ended before ``start`` is set."""

    def __init__(self) -> None:
        self.start_at: float | None = None
        self.end_at: float | None = None

    def begin(self, now: float, duration_s: float) -> None:
        self.start_at, self.end_at = now, now + duration_s

    def active(self, now: float) -> bool:
        return self.start_at is not None and self.end_at is not None and self.start_at <= now < self.end_at


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: "UdpImpairment", towards_server: bool) -> None:
        self._relay = relay
        self._towards_server = towards_server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._relay.received(data, addr, self._towards_server)


class UdpImpairment:
    """A lossy, slow UDP relay for one device (two sockets); ``open`` returns the device-side address."""

    def __init__(self, server: tuple[str, int], loss_rate: float = 0.0, latency_s: float = 0.0,
                 seed: int = 0, bind_host: str = "127.0.0.1") -> None:
        self.server = server
        self.loss_rate, self.latency_s = loss_rate, latency_s
        self.bind_host = bind_host
        self.offline = Offline()
        self.lost = 0
        self.passed = 0
        self._rng = random.Random(seed)
        self._device_addr: tuple[str, int] | None = None
        self._down: asyncio.DatagramTransport | None = None
        self._up: asyncio.DatagramTransport | None = None

    async def open(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._down, _ = await loop.create_datagram_endpoint(lambda: _Side(self, True),
                                                            local_addr=(self.bind_host, 0))
        self._up, _ = await loop.create_datagram_endpoint(lambda: _Side(self, False), remote_addr=self.server)
        host, port = self._down.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def close(self) -> None:
        for transport in (self._down, self._up):
            if transport is not None:
                transport.close()

    def received(self, data: bytes, addr: tuple[str, int], towards_server: bool) -> None:
        loop = asyncio.get_running_loop()
        if towards_server:
            self._device_addr = addr
        if self.offline.active(loop.time()) or self._rng.random() < self.loss_rate:
            self.lost += 1
            return
        self.passed += 1
        if self.latency_s > 0:
            loop.call_later(self.latency_s, self._forward, data, towards_server)
        else:
            self._forward(data, towards_server)

    def _forward(self, data: bytes, towards_server: bool) -> None:
        if towards_server and self._up is not None and not self._up.is_closing():
            self._up.sendto(data)
        elif not towards_server and self._down is not None and self._device_addr is not None \
                and not self._down.is_closing():
            self._down.sendto(data, self._device_addr)


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
        self._rng = random.Random(seed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self.offline.active(asyncio.get_running_loop().time()):
            self.lost += 1
            raise httpx.ConnectError("device offline (injected)", request=request)
        rto, delay = 1.0, 0.0
        for _ in range(3):
            if not self.loss_rate or self._rng.random() >= self.loss_rate:
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
