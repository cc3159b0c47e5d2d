"""Raw CoAP load for the LwM2M benchmarks (RFC 7252), without a general CoAP stack.

- ``SocketPool``: many non-blocking UDP sockets, each bound to its own loopback address (127.0.x.y:0), read
  through one epoll. Several devices share a socket; to the server a socket is one CoAP endpoint, so message
  ids come from one counter per socket and never repeat on it within 65,536 messages (§4.4).
- ``CoapLoad``: confirmable requests with §4.2 retransmission (ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5,
  MAX_RETRANSMIT 4, the timeout doubling each time), piggybacked and separate responses (§5.2), and every
  request the server sends to a device handed to a ``ReadResponder``.
- ``ReadResponder``: answers the server's GET of /3/0 and /4/0 as a device does, with a piggybacked 2.05 in
  the content format the request's Accept asked for (TLV when it names none, LwM2M Core 1.1 §7.4).
- ``register_request`` / ``update_request`` / ``block2_request``: the datagrams the benchmarks send.
"""

from __future__ import annotations

import heapq
import random
import select
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fota_server.protocol.errors import DecodeError  # noqa: E402
from fota_server.protocol.lwm2m.coap_message import (  # noqa: E402
    ACCEPT, ACK, BLOCK2, CON, CONTENT_FORMAT, LOCATION_PATH, NON, RST, URI_PATH, URI_QUERY, CoapMessage,
    decode_message, encode_message, uint_bytes, uint_value,
)
from fota_server.protocol.lwm2m.content import ContentFormat, encode_values  # noqa: E402
from fota_server.protocol.lwm2m.paths import LwM2MPath  # noqa: E402
from fota_server.protocol.lwm2m.values import Values  # noqa: E402

__all__ = ["ACK_TIMEOUT_S", "ACK_RANDOM_FACTOR", "MAX_RETRANSMIT", "SUCCESS", "TIMEOUT", "CoapLoad", "Outcome",
           "ReadResponder", "SocketPool", "block2_request", "code_text", "location_of", "max_age_of",
           "drain_reads", "keep_window", "next_block", "register_request", "update_request"]

ACK_TIMEOUT_S, ACK_RANDOM_FACTOR, MAX_RETRANSMIT = 2.0, 1.5, 4
SEPARATE_RESPONSE_WAIT_S = 60.0  # after an empty ACK, how long a separate response may take
SUCCESS = frozenset({"2.01", "2.04", "2.05"})  # Register, Update, Block2/read: nothing else is a success
TIMEOUT = "no answer"
_GET, _POST = 1, 2
_MAX_AGE = 14


def code_text(code: int) -> str:
    """``0x41`` -> ``"2.01"``."""
    return f"{code >> 5}.{code & 31:02d}"


def _code(text: str) -> int:
    major, _, minor = text.partition(".")
    return int(major) << 5 | int(minor)


# ---------------------------------------------------------------- the requests devices send

def register_request(endpoint: str, lifetime_s: int = 86400) -> Callable[[int, bytes], bytes]:
    """A Register (LwM2M Core 1.1 §5.3.1) of ``endpoint``, given its message id and token."""
    options = ((URI_PATH, b"rd"), (CONTENT_FORMAT, uint_bytes(int(ContentFormat.LINK_FORMAT))),
               (URI_QUERY, f"ep={endpoint}".encode()), (URI_QUERY, f"lt={lifetime_s}".encode()),
               (URI_QUERY, b"lwm2m=1.1"), (URI_QUERY, b"b=U"))
    payload = b"</1/0>,</3/0>,</4/0>,</5/0>"
    return lambda mid, token: encode_message(CoapMessage(CON, _POST, mid, token, options, payload))


def update_request(location: tuple[bytes, ...]) -> Callable[[int, bytes], bytes]:
    """An Update (§5.3.2) of the registration at ``location`` (the Location-Path of its 2.01), no change."""
    options = tuple((URI_PATH, segment) for segment in location)
    return lambda mid, token: encode_message(CoapMessage(CON, _POST, mid, token, options))


def block2_request(path: tuple[str, ...], num: int, szx: int = 6) -> Callable[[int, bytes], bytes]:
    """A GET of block ``num`` of ``path`` (RFC 7959 §2.2; 1024-byte blocks by default)."""
    options = tuple((URI_PATH, p.encode()) for p in path) + ((BLOCK2, uint_bytes(num << 4 | szx)),)
    return lambda mid, token: encode_message(CoapMessage(CON, _GET, mid, token, options))


def location_of(reply: bytes) -> tuple[bytes, ...]:
    """The Location-Path segments of a 2.01."""
    return tuple(decode_message(reply).values(LOCATION_PATH))


def max_age_of(reply: bytes, default_s: int = 60) -> int:
    """The Max-Age of an answer (RFC 7252 §5.10.5: 60 s when it carries none)."""
    value = uint_value(decode_message(reply).first(_MAX_AGE))
    return default_s if value is None else value


def next_block(reply: bytes) -> int:
    """The block to ask for after ``reply``: the next one, or 0 after the last."""
    value = uint_value(decode_message(reply).first(BLOCK2))
    return 0 if value is None or not value & 0x08 else (value >> 4) + 1


# ---------------------------------------------------------------- the server's reads, answered

def _device_values() -> dict[str, tuple[LwM2MPath, Values]]:
    p = LwM2MPath
    return {
        "3/0": (p(3, 0), {p(3, 0, 0): "BenchMake", p(3, 0, 1): "BenchModel", p(3, 0, 2): "SN-1",
                          p(3, 0, 3): "1.0.0"}),
        "4/0": (p(4, 0), {p(4, 0, 0): 6, p(4, 0, 8): 20301, p(4, 0, 9): 1, p(4, 0, 10): 310, p(4, 0, 12): 77}),
    }


@dataclass
class ReadResponder:
    """A device's side of the server's reads: 2.05 for /3/0 and /4/0, 4.04 for any other path, 4.06 for a
    format it does not speak, 4.05 for anything but GET. Answers are encoded once per (path, format)."""

    answered: Counter[str] = field(default_factory=Counter)   # 2.05 sent, by path
    refused: Counter[str] = field(default_factory=Counter)    # other answers, by code
    _objects: dict[str, tuple[LwM2MPath, Values]] = field(default_factory=_device_values)
    _cache: dict[tuple[str, int | None], tuple[int, bytes]] = field(default_factory=dict)

    def answer(self, data: bytes, non_mid: int = 0) -> bytes | None:
        """The ACK answering a CON request datagram from the server (a NON with ``non_mid`` answering a NON);
        None for one it cannot decode."""
        try:
            request = decode_message(data)
        except DecodeError:
            return None
        try:
            path = "/".join(v.decode() for v in request.values(URI_PATH))
            accept = uint_value(request.first(ACCEPT))
        except (UnicodeDecodeError, DecodeError):
            path, accept = "", None
        code, fmt, payload = self._content(request.code, path, accept)
        mtype, mid = (ACK, request.mid) if request.mtype == CON else (NON, non_mid)
        options = ((CONTENT_FORMAT, uint_bytes(fmt)),) if code == "2.05" else ()
        if code == "2.05":
            self.answered[path] += 1
        else:
            self.refused[code] += 1
        return encode_message(CoapMessage(mtype, _code(code), mid, request.token, options, payload))

    def _content(self, method: int, path: str, accept: int | None) -> tuple[str, int, bytes]:
        if method != _GET:
            return "4.05", 0, b""
        if path not in self._objects:
            return "4.04", 0, b""
        cached = self._cache.get((path, accept))
        if cached is None:
            fmt = int(ContentFormat.TLV) if accept is None else accept
            base, values = self._objects[path]
            try:
                cached = (fmt, encode_values(fmt, base, values))
            except (ValueError, DecodeError):
                return "4.06", 0, b""
            self._cache[(path, accept)] = cached
        return "2.05", cached[0], cached[1]

    @property
    def total(self) -> int:
        return sum(self.answered.values())


# ---------------------------------------------------------------- sockets

class SocketPool:
    """``count`` UDP sockets bound to 127.0.x.y:0 (x, y from ``first``), non-blocking, under one epoll."""

    def __init__(self, count: int, first: int = 0, rcvbuf: int = 1 << 20) -> None:
        self.sockets: list[socket.socket] = []
        self._by_fd: dict[int, int] = {}
        self._epoll = select.epoll()
        self._mids = [random.randrange(0x10000) for _ in range(count)]
        for index in range(count):
            n = first + index
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((f"127.0.{1 + n // 254 % 254}.{1 + n % 254}", 0))
            sock.setblocking(False)
            self.sockets.append(sock)
            self._by_fd[sock.fileno()] = index
            self._epoll.register(sock.fileno(), select.EPOLLIN)

    def __len__(self) -> int:
        return len(self.sockets)

    def next_mid(self, index: int) -> int:
        self._mids[index] = mid = (self._mids[index] + 1) & 0xFFFF
        return mid

    def ready(self, timeout_s: float) -> list[int]:
        """Indexes of the sockets with datagrams waiting (waits at most ``timeout_s``)."""
        return [self._by_fd[fd] for fd, _ in self._epoll.poll(max(timeout_s, 0.0))]

    def close(self) -> None:
        self._epoll.close()
        for sock in self.sockets:
            sock.close()


# ---------------------------------------------------------------- confirmable requests

@dataclass(slots=True)
class Outcome:
    device: int
    code: str               # "2.01", "5.03", ..., or TIMEOUT after the last retransmission
    reply: bytes            # the answer datagram (empty for TIMEOUT)
    latency_s: float        # first transmission to answer


@dataclass(slots=True)
class _Exchange:
    device: int
    sock: int
    mid: int
    token: bytes
    datagram: bytes
    first_sent_at: float
    timeout_s: float
    due_at: float
    tries: int = 0
    acked: bool = False     # an empty ACK came: a separate response follows (§5.2.2)
    done: bool = False


class CoapLoad:
    """CON requests from many devices over a ``SocketPool`` to one server, with RFC 7252 retransmission.

    ``request`` sends; ``pump`` reads answers, answers the server's requests, retransmits when due, and returns
    the requests that finished (answered, or not after MAX_RETRANSMIT retransmissions)."""

    def __init__(self, server: tuple[str, int], pool: SocketPool, reads: ReadResponder | None = None,
                 seed: int = 1) -> None:
        self.server = server
        self.pool = pool
        self.reads = reads or ReadResponder()
        self._rng = random.Random(seed)
        self._by_mid: dict[tuple[int, int], _Exchange] = {}
        self._by_token: dict[bytes, _Exchange] = {}
        self._timers: list[tuple[float, int, _Exchange]] = []
        self._serial = 0
        self._pushes = 0
        self.sent = 0             # first transmissions
        self.retransmits = 0
        self.codes: Counter[str] = Counter()
        self.stray = 0            # answers to no open exchange (late duplicates)
        self.server_requests = 0  # requests the server sent to the devices
        self.last_server_request_at = 0.0

    @property
    def in_flight(self) -> int:
        return len(self._by_token)

    def request(self, device: int, sock: int, build: Callable[[int, bytes], bytes], now: float) -> None:
        """Send a CON request of ``device`` from socket ``sock``; ``build(mid, token)`` makes the datagram."""
        self._serial += 1
        mid, token = self.pool.next_mid(sock), self._serial.to_bytes(4, "big")
        timeout = ACK_TIMEOUT_S * self._rng.uniform(1.0, ACK_RANDOM_FACTOR)
        exchange = _Exchange(device, sock, mid, token, build(mid, token), now, timeout, now + timeout)
        self._by_mid[(sock, mid)] = exchange
        self._by_token[token] = exchange
        self._push(exchange)
        self._send(sock, exchange.datagram)
        self.sent += 1

    def _send(self, sock: int, datagram: bytes) -> None:
        try:
            self.pool.sockets[sock].sendto(datagram, self.server)
        except (BlockingIOError, ConnectionRefusedError):
            pass  # a full send buffer drops it, like the network would; retransmission covers it

    def pump(self, until: float) -> list[Outcome]:
        """Work until some requests finish or the monotonic instant ``until``; those that finished."""
        out: list[Outcome] = []
        while True:
            now = time.monotonic()
            self._fire(now, out)
            if now >= until or out:
                return out
            wait = until - now if not self._timers else min(until, self._timers[0][0]) - now
            for index in self.pool.ready(wait):
                self._drain(index, time.monotonic(), out)

    def _drain(self, index: int, now: float, out: list[Outcome]) -> None:
        sock = self.pool.sockets[index]
        while True:
            try:
                data = sock.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if len(data) >= 4:
                self._receive(index, data, now, out)

    def _receive(self, index: int, data: bytes, now: float, out: list[Outcome]) -> None:
        mtype, code = data[0] >> 4 & 3, data[1]
        if mtype == ACK or mtype == RST:
            exchange = self._by_mid.pop((index, int.from_bytes(data[2:4], "big")), None)
            if exchange is None or exchange.done:
                self.stray += 1
            elif mtype == RST:
                self._finish(exchange, "reset", data, now, out)
            elif code == 0:
                exchange.acked = True
                exchange.due_at = now + SEPARATE_RESPONSE_WAIT_S
                self._push(exchange)
            else:
                self._finish(exchange, code_text(code), data, now, out)
            return
        if code >= 64:  # a separate response (§5.2.2), matched by token
            token = data[4:4 + (data[0] & 0x0F)]
            exchange = self._by_token.get(token)
            if mtype == CON:
                self._send(index, bytes([0x60, 0]) + data[2:4])
            if exchange is not None and exchange.sock == index:
                self._by_mid.pop((index, exchange.mid), None)
                self._finish(exchange, code_text(code), data, now, out)
            else:
                self.stray += 1
            return
        if not code:  # a CoAP ping (§4.3): a reset
            if mtype == CON:
                self._send(index, bytes([0x70, 0]) + data[2:4])
            return
        self.server_requests += 1  # a request from the server to a device: reads after Register, most of all
        self.last_server_request_at = now
        answer = self.reads.answer(data, self.pool.next_mid(index) if mtype == NON else 0)
        if answer is not None:
            self._send(index, answer)

    def _push(self, exchange: _Exchange) -> None:
        self._pushes += 1
        heapq.heappush(self._timers, (exchange.due_at, self._pushes, exchange))

    def _finish(self, exchange: _Exchange, code: str, data: bytes, now: float, out: list[Outcome]) -> None:
        exchange.done = True
        self._by_token.pop(exchange.token, None)
        self.codes[code] += 1
        out.append(Outcome(exchange.device, code, data, now - exchange.first_sent_at))

    def _fire(self, now: float, out: list[Outcome]) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            due_at, _, exchange = heapq.heappop(timers)
            if exchange.done or due_at != exchange.due_at:
                continue
            if exchange.acked or exchange.tries >= MAX_RETRANSMIT:
                self._by_mid.pop((exchange.sock, exchange.mid), None)
                self._finish(exchange, TIMEOUT, b"", now, out)
                continue
            exchange.tries += 1
            exchange.timeout_s *= 2
            exchange.due_at = now + exchange.timeout_s
            self._push(exchange)
            self._send(exchange.sock, exchange.datagram)
            self.retransmits += 1


def keep_window(load: CoapLoad, window: int, seconds: float,
                issue: Callable[[int, Outcome | None], tuple[int, Callable[[int, bytes], bytes]] | None]) -> float:
    """Keep ``window`` requests in flight for at most ``seconds``; the seconds it ran.

    Slot ``k`` sends ``issue(k, None)`` first and ``issue(k, outcome)`` after each answer: a (socket, build)
    pair, or None to retire the slot. It ends when time is up or every slot is retired and answered; requests
    still open then are left unanswered (and uncounted)."""
    started = time.monotonic()
    end_at = started + seconds
    for slot in range(window):
        nxt = issue(slot, None)
        if nxt is not None:
            load.request(slot, nxt[0], nxt[1], started)
    now = started
    while now < end_at and load.in_flight:
        for outcome in load.pump(min(end_at, now + 0.05)):
            nxt = issue(outcome.device, outcome)
            if nxt is not None:
                load.request(outcome.device, nxt[0], nxt[1], time.monotonic())
        now = time.monotonic()
    return now - started


def drain_reads(load: CoapLoad, quiet_s: float = 2.0, limit_s: float = 300.0) -> None:
    """Answer the server's requests until none has come for ``quiet_s`` (at most ``limit_s``)."""
    started = time.monotonic()
    while True:
        now = time.monotonic()
        if now - max(load.last_server_request_at, started) >= quiet_s or now - started >= limit_s:
            return
        load.pump(now + 0.1)
