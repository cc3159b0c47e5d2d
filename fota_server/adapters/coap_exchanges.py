"""The sans-IO ``CoapEndpoint`` on a live UDP socket: requests become futures, Observe notifications go to
callbacks, and the endpoint's next deadline (retransmission, response timeout) is a part of the process's
scheduler (``adapters/scheduler.py``), whose one timer calls it back.

The socket's owner hands over every datagram that ``owns`` claims (responses to our requests); what this
module sends goes out through the ``send`` function it was given.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from ..protocol.errors import DecodeError
from ..protocol.lwm2m.coap_message import CoapMessage
from ..clock import SystemClock
from ..protocol.lwm2m.exchanges import CoapEndpoint, ExchangeTableFull, Failed, Response, TransmissionParams
from .scheduler import MonotonicTimer, Scheduler

__all__ = ["SocketExchanges", "Peer", "peer_key"]

log = logging.getLogger("fota_server.lwm2m")

Peer = tuple[str, int]


def peer_key(addr: Any) -> Peer:
    """(host, port) of a socket address (an IPv6 one carries flow info and scope too)."""
    return str(addr[0]), int(addr[1])


class SocketExchanges:
    def __init__(self, send: Callable[[bytes, Peer], None], params: TransmissionParams = TransmissionParams(),
                 max_open: int = 100_000, scheduler: Scheduler | None = None) -> None:
        """``scheduler``: the process's timer (one of its own without it)."""
        self._send = send
        self.endpoint: CoapEndpoint[Peer] = CoapEndpoint(params, max_open=max_open)
        self._waiting: dict[int, asyncio.Future[CoapMessage | None]] = {}
        self._notify: dict[int, Callable[[CoapMessage], None]] = {}
        self._own_scheduler = scheduler is None
        self._timer = MonotonicTimer(scheduler if scheduler is not None else Scheduler(SystemClock()),
                                     "CoAP exchanges", self.endpoint.next_deadline, self._on_timer, _loop_time)

    def owns(self, addr: Any, data: bytes) -> bool:
        return self.endpoint.owns(peer_key(addr), data)

    def receive(self, addr: Any, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            events = self.endpoint.receive(peer_key(addr), data, loop.time())
        except DecodeError:
            return  # ``owns`` looked only at the header; a broken body is dropped like any garbage
        for event in events:
            if isinstance(event, Response):
                self._answered(event.handle, event.message)
            elif isinstance(event, Failed):
                self._failed(event.handle)
        self._flush()

    async def request(self, peer: Peer, code: int, options: tuple[tuple[int, bytes], ...], payload: bytes,
                      timeout_s: float, confirmable: bool = True) -> CoapMessage | None:
        """One exchange: the response, or None when it timed out, was reset or the table is full."""
        try:
            handle, future = self.start(peer, code, options, payload, confirmable=confirmable)
        except ExchangeTableFull as exc:
            log.warning("no request sent to %s:%d: %s", peer[0], peer[1], exc)
            return None
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            return None
        finally:
            self.forget(handle)

    def start(self, peer: Peer, code: int, options: tuple[tuple[int, bytes], ...], payload: bytes, *,
              confirmable: bool = True, on_notify: Callable[[CoapMessage], None] | None = None,
              ) -> tuple[int, asyncio.Future[CoapMessage | None]]:
        """Send a request; the future has its first response (or None). With ``on_notify`` the exchange is
        kept and every later response (an Observe notification) goes there until ``forget``."""
        loop = asyncio.get_running_loop()
        handle = self.endpoint.request(peer, code, options, payload, now=loop.time(), confirmable=confirmable,
                                       keep=on_notify is not None)
        future: asyncio.Future[CoapMessage | None] = loop.create_future()
        self._waiting[handle] = future
        if on_notify is not None:
            self._notify[handle] = on_notify
        self._flush()
        return handle, future

    def forget(self, handle: int) -> None:
        self.endpoint.forget(handle)
        self._notify.pop(handle, None)
        future = self._waiting.pop(handle, None)
        if future is not None and not future.done():
            future.cancel()

    def close(self) -> None:
        self._timer.close()
        if self._own_scheduler:
            self._timer.scheduler.close()
        for handle in list(self._waiting):
            self.forget(handle)

    def _answered(self, handle: int, message: CoapMessage) -> None:
        future = self._waiting.pop(handle, None)
        if future is not None:
            if not future.done():
                future.set_result(message)
            return
        notify = self._notify.get(handle)
        if notify is not None:
            try:
                notify(message)
            except Exception:
                log.exception("a notification handler failed")

    def _failed(self, handle: int) -> None:
        self._notify.pop(handle, None)
        future = self._waiting.pop(handle, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _on_timer(self) -> None:
        loop = asyncio.get_running_loop()
        for failed in self.endpoint.on_timer(loop.time()):
            self._failed(failed.handle)
        self._flush()

    def _flush(self) -> None:
        for send in self.endpoint.outgoing():
            try:
                self._send(send.datagram, send.peer)
            except OSError as exc:  # an unreachable peer is a timeout later, not an error now
                log.debug("could not send to %s: %s", send.peer, exc)
        self._timer.moved()


def _loop_time() -> float:
    return asyncio.get_running_loop().time()
