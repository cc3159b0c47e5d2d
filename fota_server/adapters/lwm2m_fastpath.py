"""A fast path in front of aiocoap on the LwM2M server's UDP socket: Register, Update, De-register and
firmware Block2 requests are decoded and answered here (piggybacked ACK, with a duplicate cache over
EXCHANGE_LIFETIME, RFC 7252 §4.5); every other datagram goes on to aiocoap unchanged.

The same socket carries the server's own requests to devices: their responses (ACK, RST, separate
responses, Observe notifications) go to the exchange table (``coap_exchanges``), never through aiocoap.

The fast path reads the socket itself, many datagrams per wake-up, and watches its receive queue: while
the queue stays deep (the server is saturated), a new Register is answered at once with 5.03 Service
Unavailable and a Max-Age spread over the backlog (RFC 7252 §5.9.3.4), so a registration storm is spread
out rather than dropped by the kernel and retransmitted.

It wraps aiocoap's ``simplesocketserver`` protocol through the public ``transport.set_protocol`` and the
loop's ``add_reader``; aiocoap 0.4.17, covered by tests/integration/test_lwm2m_fastpath.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections import OrderedDict
from typing import Any, Callable

import aiocoap

from ..peerlog import peer_refused
from ..protocol.errors import DecodeError
from ..protocol.lwm2m.blockwise import BlockOption
from ..protocol.lwm2m.coap_message import (
    ACK, BLOCK2, CON, CONTENT_FORMAT, ETAG, LOCATION_PATH, NON, SIZE2, URI_PATH, URI_QUERY, CoapMessage,
    decode_message, encode_message, uint_bytes, uint_value,
)
from .coap_exchanges import SocketExchanges, peer_key
from .device_trace import DeviceTrace
from .lwm2m_pressure import Pressure
from .lwm2m_blocks import FirmwareBlockResource
from .lwm2m_site import Lwm2mServer, RdAnswer, RdRequest

__all__ = ["FastPath", "created_ack", "install_fast_path"]

log = logging.getLogger("fota_server.lwm2m")

_GET, _POST, _DELETE = 1, 2, 4
_METHOD_NAMES = {_GET: "GET", _POST: "POST", _DELETE: "DELETE"}
_CREATED = 2 << 5 | 1
_MAX_AGE = 14
_UNDERSTOOD = {3, 7, URI_PATH, CONTENT_FORMAT, URI_QUERY, 17, BLOCK2, SIZE2}  # Uri-Host/Port, Accept too
EXCHANGE_LIFETIME_S = 247.0
_SO_RCVBUFFORCE = 33                      # Linux socket option (not named in the socket module)
RECEIVE_BUFFER = 4 << 20                   # bytes asked for the receive queue (the kernel doubles it)
READ_BATCH = 64                            # datagrams read per wake-up


def _code(dotted: str) -> int:
    major, _, minor = dotted.partition(".")
    return int(major) << 5 | int(minor)


class FastPath(asyncio.DatagramProtocol):
    def __init__(self, inner: Any, transport: Any, server: Lwm2mServer, firmware: FirmwareBlockResource | None,
                 max_cached: int = 100_000, monotonic: Callable[[], float] = time.monotonic,
                 sock: socket.socket | None = None) -> None:
        self._inner = inner
        self._transport = transport
        self._server = server
        self._firmware = firmware
        self._max_cached = max_cached
        self._monotonic = monotonic
        self._recent: OrderedDict[tuple[Any, int], tuple[float, bytes]] = OrderedDict()
        self._mid = random.randrange(0x10000)
        self.exchanges = SocketExchanges(self.send, scheduler=server.scheduler)
        self.pressure = Pressure(sock, monotonic, max_wait_s=max(2, server.settings.busy_max_age_s))
        self._sock = sock
        self.answered = 0
        self.passed_on = 0
        self.traced: dict[Any, str] = {}   # the console trace's addresses (``trace_to``); empty: nothing traced
        self._trace: DeviceTrace | None = None

    def trace_to(self, trace: DeviceTrace) -> None:
        """Give the datagrams from and to the addresses ``trace`` follows to it (one dict test per datagram)."""
        self._trace, self.traced = trace, trace.addresses

    @property
    def port(self) -> int:
        """The UDP port the socket is bound to."""
        return int(self._transport.get_extra_info("socket").getsockname()[1])

    def send(self, data: bytes, addr: Any) -> None:
        """Send straight from the socket; what the kernel cannot take now is queued by the transport."""
        if addr in self.traced and self._trace is not None:
            self._trace.coap(addr, data, "out")
        if self._sock is not None:
            try:
                self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:  # e.g. a destination that cannot be reached: the device retries
                log.debug("could not send to %s: %s", addr, exc)
                return
        self._transport.sendto(data, addr)

    def drain(self) -> None:
        """Read up to READ_BATCH datagrams; a full batch means more wait, so the queue's depth is looked at."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(READ_BATCH):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                self.pressure.calm()
                return
            except OSError as exc:
                self.error_received(exc)
                return
            self.datagram_received(data, addr)
        self.pressure.sample()

    # asyncio protocol: everything not ours goes to aiocoap's protocol
    def datagram_received(self, data: bytes, addr: Any) -> None:
        if addr in self.traced and self._trace is not None:
            self._trace.coap(addr, data, "in")
        if len(data) >= 4 and (data[0] & 0x20 or data[1] >= 64) and self.exchanges.owns(addr, data):
            self.exchanges.receive(addr, data)  # ACK, Reset or response to one of the server's own requests
            return
        try:
            answer = self._answer(data, addr)
        except DecodeError:
            answer = None
        if answer is None:
            self.passed_on += 1
            try:
                self._inner.datagram_received(data, addr)
            except ValueError as exc:  # aiocoap lets UnicodeDecodeError out of an option it cannot decode
                peer_refused(log, str(addr[0]), "CoAP unparsable", "dropping an unparsable CoAP datagram from %s: %s",
                             _hostinfo(addr), exc)
            return
        self.answered += 1
        if data[1] == _POST and answer[1] == _CREATED:  # a Register: answered once its registration is saved
            self._server.after_saved(lambda saved: self._send_held(data, addr, answer, saved))
            return
        self.send(answer, addr)

    def _send_held(self, data: bytes, addr: Any, answer: bytes, saved: bool) -> None:
        if not saved:  # not committed: 5.03 with Max-Age, and a retransmission is handled afresh
            self._recent.pop((addr, int.from_bytes(data[2:4], "big")), None)
            answer = encode_message(self._reply(decode_message(data), "5.03", ((_MAX_AGE, uint_bytes(5)),)))
        self.send(answer, addr)

    def error_received(self, exc: Exception) -> None:
        self._inner.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.exchanges.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._inner.connection_lost(exc)

    def _answer(self, data: bytes, addr: Any) -> bytes | None:
        if len(data) < 4 or data[0] >> 4 & 3 not in (CON, NON) or data[1] not in (_GET, _POST, _DELETE):
            return None
        key = (addr, int.from_bytes(data[2:4], "big"))
        cached = self._recent.get(key)
        if cached is not None and cached[0] > self._monotonic() and data[0] >> 4 & 3 == CON:
            return cached[1]  # a retransmission gets the very same answer, and nothing happens twice
        request = decode_message(data)
        if any(number not in _UNDERSTOOD for number, _ in request.options):
            return None
        try:
            path = [v.decode("utf-8") for v in request.values(URI_PATH)]
        except UnicodeDecodeError:
            return None
        response = self._respond(request, path, addr)
        if response is None:
            return None
        encoded = response if isinstance(response, bytes) else encode_message(response)
        if request.mtype == CON:
            self._remember(key, encoded)
        return encoded

    def _remember(self, key: tuple[Any, int], encoded: bytes) -> None:
        now = self._monotonic()
        self._recent[key] = (now + EXCHANGE_LIFETIME_S, encoded)
        self._recent.move_to_end(key)
        while self._recent and (len(self._recent) > self._max_cached or next(iter(self._recent.values()))[0] <= now):
            self._recent.popitem(last=False)

    def _reply(self, request: CoapMessage, code: str, options: tuple[tuple[int, bytes], ...] = (),
               payload: bytes = b"") -> CoapMessage:
        if request.mtype == CON:
            return CoapMessage(ACK, _code(code), request.mid, request.token, options, payload)
        self._mid = (self._mid + 1) & 0xFFFF
        return CoapMessage(NON, _code(code), self._mid, request.token, options, payload)

    def _respond(self, request: CoapMessage, path: list[str], addr: Any) -> CoapMessage | bytes | None:
        if path[:1] == ["rd"] and len(path) <= 2:
            if len(path) == 1 and request.code == _POST and self.pressure.put_off():
                self._server.rd_results[("register", "5.03")] += 1
                return self._reply(request, "5.03", ((_MAX_AGE, uint_bytes(self.pressure.defer())),))
            answer = self._registration(request, path, addr)
            if len(path) == 1 and answer.code == "2.01":
                self.pressure.taken()
            if answer.max_age is not None:
                return self._reply(request, answer.code, ((_MAX_AGE, uint_bytes(answer.max_age)),))
            if answer.code == "2.01" and request.mtype == CON:
                created = created_ack(request.mid, request.token, answer.location)
                if created is not None:
                    return created
            return self._reply(request, answer.code, tuple((LOCATION_PATH, p.encode()) for p in answer.location))
        if path[:1] == ["fw"] and len(path) in (2, 3) and request.code == _GET and self._firmware is not None:
            return self._block(self._firmware, request, path[1:], addr)
        return None

    def _registration(self, request: CoapMessage, path: list[str], addr: Any) -> RdAnswer:
        address = _hostinfo(addr)
        try:
            query = [v.decode("utf-8") for v in request.values(URI_QUERY)]
        except UnicodeDecodeError:
            self._server.count_refusal(address, "registration request",
                                       DecodeError("a query option is not UTF-8", hint="4.00"))
            return RdAnswer("4.00")
        return self._server.handle_rd(RdRequest(
            _METHOD_NAMES.get(request.code, str(request.code)), path[1] if len(path) == 2 else None, query,
            request.payload, uint_value(request.first(CONTENT_FORMAT)), request.mtype == CON, address, None,
            peer_key(addr)))  # the downlink sends to it through the exchange table on this socket

    def _block(self, firmware: FirmwareBlockResource, request: CoapMessage, rest: list[str], addr: Any) -> CoapMessage:
        refusal = firmware.refusal(rest, None, _hostinfo(addr))  # plain CoAP: no session vouches for a device
        if refusal is not None:
            return self._reply(request, refusal)
        raw = uint_value(request.first(BLOCK2))
        wanted = BlockOption.from_int(raw) if raw is not None else None
        block = firmware.block_for(rest[0], *((wanted.num, wanted.szx) if wanted is not None else (0, 6)))
        if isinstance(block, str):
            return self._reply(request, block)
        options = [(ETAG, block.etag), (CONTENT_FORMAT, uint_bytes(42)), (SIZE2, uint_bytes(block.size2))]
        if wanted is not None or block.more:
            options.append((BLOCK2, uint_bytes(BlockOption(block.num, block.more, block.szx).to_int())))
        return self._reply(request, "2.05", tuple(sorted(options)), block.payload)


def created_ack(mid: int, token: bytes, location: tuple[str, ...]) -> bytes | None:
    """The piggybacked 2.01 Created that answers a Register, with its Location-Path (RFC 7252 §3.1, §5.10.7),
    byte for byte what ``encode_message`` makes, written directly; None for a segment of 269 bytes or more."""
    out = bytearray((0x60 | len(token), _CREATED))
    out += mid.to_bytes(2, "big")
    out += token
    delta = LOCATION_PATH << 4
    for segment in location:
        value = segment.encode()
        size = len(value)
        if size < 13:
            out.append(delta | size)
        elif size < 269:
            out.append(delta | 13)
            out.append(size - 13)
        else:
            return None
        out += value
        delta = 0
    return bytes(out)


def _hostinfo(addr: Any) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def install_fast_path(context: aiocoap.Context, server: Lwm2mServer,
                      firmware: FirmwareBlockResource | None) -> FastPath:
    """Put the fast path in front of the context's ``simplesocketserver`` socket."""
    for interface in context.request_interfaces:
        message_interface = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        pool = getattr(message_interface, "_pool", None)
        transport = getattr(pool, "_transport", None)
        if transport is not None and hasattr(transport, "set_protocol"):
            sock = _own_reading(transport)
            fast = FastPath(pool, transport, server, firmware, sock=sock)
            transport.set_protocol(fast)
            if sock is not None:
                fd = transport.get_extra_info("socket").fileno()
                asyncio.get_running_loop()._add_reader(fd, fast.drain)  # type: ignore[attr-defined]
            server.downlink.attach_exchanges(fast.exchanges)
            server.follow_load(lambda: fast.pressure.saturated)
            return fast
    raise RuntimeError("the context has no simplesocketserver transport to put the fast path in front of")


def _own_reading(transport: Any) -> socket.socket | None:
    """Take the reading of the transport's socket over from asyncio (which reads one datagram per wake-up)
    and give the socket a deep receive queue. Reading goes through a duplicate of the descriptor (closed with
    the transport); None where the loop does not allow this (then reading stays asyncio's)."""
    shared = transport.get_extra_info("socket")
    loop = asyncio.get_running_loop()
    if shared is None or not hasattr(loop, "_remove_reader") or not hasattr(loop, "_add_reader"):
        return None
    sock: socket.socket = shared.dup()
    sock.setblocking(False)
    for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
            break
        except OSError:
            continue
    loop._remove_reader(shared.fileno())
    return sock
