"""One CoAP message layer for many emulated devices: a :class:`CoapEndpoint` (sans-IO, RFC 7252 §4) on
a :class:`UdpMux`, with one timer for all retransmissions and the datagrams routed by the identity
(source address and port) each device holds.

A device (a :class:`MuxDevice`: ``coap.CoapLink``) attaches itself and gets an identity; its requests go
through ``request`` with a callback for the answer, the server's requests to it arrive in ``serve``.
Loss, latency and offline windows of a device (``Impairment``) are applied here, to its datagrams in
both directions, so an impaired device needs no relay sockets.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Callable, Protocol

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.coap_message import NON, RST, CoapMessage
from fota_server.protocol.lwm2m.exchanges import (
    CoapEndpoint, Failed, Incoming, Response, Send, TransmissionParams,
)

from .udp_mux import Address, UdpMux

__all__ = ["CoapMux", "MuxDevice", "Impairment", "Peer", "Answer"]

log = logging.getLogger("device_emulator.coap")

Peer = tuple[Address, Address]                         # (the device's identity, the server's address)
Answer = Callable[[CoapMessage | None, str], None]     # (response or None, "" or the failure reason)
MAX_NOTIFICATIONS_KEPT = 65536                         # notifications whose Reset would still be understood


class MuxDevice(Protocol):
    def serve(self, peer: Peer, request: CoapMessage) -> None: ...


class Window(Protocol):
    def active(self, now: float) -> bool: ...


@dataclass
class Impairment:
    """Loss (each direction), added one-way latency and an offline window for one device's datagrams."""

    loss_rate: float = 0.0
    latency_s: float = 0.0
    offline: Window | None = None
    seed: int = 0
    lost: int = 0
    passed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)   # only impaired devices have one

    def passes(self, now: float) -> bool:
        if (self.offline is not None and self.offline.active(now)) or (
                self.loss_rate and self._rng.random() < self.loss_rate):
            self.lost += 1
            return False
        self.passed += 1
        return True


class CoapMux:
    """The CoAP endpoint of a fleet (or of one device): ``open`` it on the loop, ``close`` it at the end."""

    def __init__(self, sockets: int = 4, bind_host: str | None = None,
                 params: TransmissionParams = TransmissionParams()) -> None:
        self.udp = UdpMux(self._datagram, sockets=sockets, bind_host=bind_host, refused=self._refused)
        self.endpoint: CoapEndpoint[Peer] = CoapEndpoint(params, max_open=1 << 22, max_cached=1 << 20)
        self._devices: dict[Address, MuxDevice] = {}
        self._impaired: dict[Address, Impairment] = {}
        self._answers: dict[int, Answer] = {}
        self._tokens: dict[tuple[Peer, bytes], int] = {}   # the requests in flight, by token
        self._in_flight: dict[int, tuple[Peer, bytes]] = {}
        self._queued: list[Send[Peer]] = []
        self._notified: dict[tuple[Peer, int], Callable[[], None]] = {}   # recent notifications, by message id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.undecodable = 0
        self.refused = 0             # requests the network refused (ICMP port unreachable)
        self.unknown = 0             # datagrams for an identity nobody holds

    # ------------------------------------------------------------------ life

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.udp.open()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.udp.close()
        for answer in list(self._answers.values()):
            answer(None, "closed")
        self._answers.clear()

    def now(self) -> float:
        assert self._loop is not None, "open() the mux first"
        return self._loop.time()

    def attach(self, device: MuxDevice, impairment: Impairment | None = None) -> Address:
        identity = self.udp.identity()
        self._devices[identity] = device
        if impairment is not None:
            self._impaired[identity] = impairment
        return identity

    def detach(self, identity: Address) -> None:
        self._devices.pop(identity, None)
        self._impaired.pop(identity, None)
        self.udp.release(identity)

    @property
    def devices(self) -> int:
        return len(self._devices)

    @property
    def retransmissions(self) -> int:
        return self.endpoint.retransmissions

    # ------------------------------------------------------------------ sending

    def request(self, peer: Peer, code: int, options: tuple[tuple[int, bytes], ...], payload: bytes,
                answer: Answer, confirmable: bool = True) -> int:
        handle = self.endpoint.request(peer, code, options, payload, now=self.now(), confirmable=confirmable)
        self._answers[handle] = answer
        self._queued += self.endpoint.outgoing()
        key = (peer, _token(self._queued[-1].datagram))
        self._tokens[key] = handle
        self._in_flight[handle] = key
        self.flush()
        return handle

    def cancel(self, handle: int) -> None:
        self._answers.pop(handle, None)
        self._untrack(handle)
        self.endpoint.forget(handle)

    def _untrack(self, handle: int) -> None:
        key = self._in_flight.pop(handle, None)
        if key is not None:
            self._tokens.pop(key, None)

    def _refused(self, local: Address, remote: Address, datagram: bytes) -> None:
        """The network refused a datagram (nobody listens there): its request fails now, as a timeout would."""
        handle = self._tokens.get(((local, remote), _token(datagram)))
        if handle is not None and handle in self._answers:
            self.refused += 1
            self.endpoint.forget(handle)
            self._answer(handle, None, "refused")

    def respond(self, peer: Peer, request: CoapMessage, code: int, options: tuple[tuple[int, bytes], ...] = (),
                payload: bytes = b"") -> None:
        self.endpoint.respond(peer, request, code, options, payload, now=self.now())
        self.flush()

    def notify(self, peer: Peer, observe_request: CoapMessage, code: int, options: tuple[tuple[int, bytes], ...],
               payload: bytes, on_reset: Callable[[], None]) -> None:
        """A non-confirmable notification (RFC 7641 §4.5) on the token of ``observe_request``: answered the way
        a NON request is (a fresh message id for this peer, the request's token). A Reset in reply to it
        means the observer is gone (§3.6): ``on_reset`` is called."""
        request = CoapMessage(NON, observe_request.code, observe_request.mid, observe_request.token)
        self.endpoint.respond(peer, request, code, options, payload, now=self.now())
        self._queued += self.endpoint.outgoing()
        if self._queued:
            self._notified[(peer, _mid(self._queued[-1].datagram))] = on_reset
            while len(self._notified) > MAX_NOTIFICATIONS_KEPT:
                del self._notified[next(iter(self._notified))]
        self.flush()

    def flush(self) -> None:
        """Send what the endpoint queued and re-arm the retransmission timer."""
        self._queued += self.endpoint.outgoing()
        queued, self._queued = self._queued, []
        for send in queued:
            local, remote = send.peer
            impairment = self._impaired.get(local)
            if impairment is None:
                self.udp.send(local, remote, send.datagram)
            elif impairment.passes(self.now()):
                if impairment.latency_s > 0 and self._loop is not None:
                    self._loop.call_later(impairment.latency_s, self.udp.send, local, remote, send.datagram)
                else:
                    self.udp.send(local, remote, send.datagram)
        deadline = self.endpoint.next_deadline()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at) and self._loop:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        for failed in self.endpoint.on_timer(self.now()):
            self._answer(failed.handle, None, failed.reason)
        self.flush()

    def _answer(self, handle: int, message: CoapMessage | None, reason: str) -> None:
        self._untrack(handle)
        answer = self._answers.pop(handle, None)
        if answer is not None:
            answer(message, reason)

    # ------------------------------------------------------------------ receiving

    def _datagram(self, local: Address, remote: Address, datagram: bytes) -> None:
        if local not in self._devices:
            self.unknown += 1
            return
        impairment = self._impaired.get(local)
        if impairment is not None:
            if not impairment.passes(self.now()):
                return
            if impairment.latency_s > 0 and self._loop is not None:
                self._loop.call_later(impairment.latency_s, self._deliver, (local, remote), datagram)
                return
        self._deliver((local, remote), datagram)

    def _deliver(self, peer: Peer, datagram: bytes) -> None:
        if len(datagram) >= 4 and datagram[0] >> 4 & 3 == RST and self._notified:
            on_reset = self._notified.pop((peer, _mid(datagram)), None)
            if on_reset is not None:
                on_reset()
                return
        try:
            events = self.endpoint.receive(peer, datagram, self.now())
        except DecodeError:
            self.undecodable += 1
            return
        for event in events:
            if isinstance(event, Incoming):
                device = self._devices.get(peer[0])
                if device is not None:
                    device.serve(peer, event.message)
            elif isinstance(event, Response):
                self._answer(event.handle, event.message, "")
            elif isinstance(event, Failed):
                self._answer(event.handle, None, event.reason)
        self.flush()


def _mid(datagram: bytes) -> int:
    return int.from_bytes(datagram[2:4], "big")


def _token(datagram: bytes) -> bytes:
    if len(datagram) < 4:
        return b""
    return bytes(datagram[4:4 + (datagram[0] & 0x0F)])
