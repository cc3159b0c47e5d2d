"""A sans-IO CoAP message layer (RFC 7252 §4, §5.3) for one UDP socket that talks to many peers: the
server's downlink to its devices and the emulator's devices share it.

``CoapEndpoint`` keeps every open exchange in tables keyed by (peer, message id) and (peer, token), so the
cost of a datagram does not grow with the number of exchanges open. It numbers and retransmits
confirmable requests (ACK_TIMEOUT × a random factor, doubled up to MAX_RETRANSMIT times), matches
piggybacked and separate responses and Observe notifications, acknowledges confirmable responses,
rejects the ones it does not expect, and answers a duplicated request from its answer cache for
EXCHANGE_LIFETIME. It holds no sockets and no clock: the caller passes ``now`` (monotonic seconds),
sends what ``outgoing()`` hands back and calls ``on_timer`` at ``next_deadline()``.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Hashable, TypeVar

from ..errors import DecodeError
from .coap_message import ACK, CON, NON, RST, CoapMessage, decode_message, encode_message

__all__ = ["TransmissionParams", "CoapEndpoint", "Send", "Response", "Failed", "Incoming", "Event",
           "ExchangeTableFull", "is_request_code", "is_response_code"]

P = TypeVar("P", bound=Hashable)


@dataclass(frozen=True)
class TransmissionParams:
    """RFC 7252 §4.8 defaults; ``response_timeout_s`` bounds the wait for a separate response (or the answer to
    a NON request) after which the exchange fails."""

    ack_timeout_s: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    exchange_lifetime_s: float = 247.0
    response_timeout_s: float = 300.0
    token_length: int = 4


@dataclass(frozen=True, slots=True)
class Send(Generic[P]):
    peer: P
    datagram: bytes


@dataclass(frozen=True, slots=True)
class Response(Generic[P]):
    """A response to request ``handle``: piggybacked, separate, or (for a kept request) an Observe notification."""

    handle: int
    peer: P
    message: CoapMessage


@dataclass(frozen=True, slots=True)
class Failed:
    handle: int
    reason: str                     # "timeout" (no ACK after the retransmissions, or no response) or "reset"


@dataclass(frozen=True, slots=True)
class Incoming(Generic[P]):
    """A new request from ``peer``, to be answered with ``respond`` (duplicates are answered from the cache)."""

    peer: P
    message: CoapMessage


Event = Response[P] | Failed | Incoming[P]


class ExchangeTableFull(Exception):
    """As many exchanges are open as the endpoint was allowed to hold."""


def is_request_code(code: int) -> bool:
    return 1 <= code < 32


def is_response_code(code: int) -> bool:
    return 64 <= code < 192


class _Open(Generic[P]):
    __slots__ = ("handle", "peer", "mid", "token", "datagram", "sent", "timeout_s", "awaiting_ack", "keep")

    def __init__(self, handle: int, peer: P, mid: int, token: bytes, datagram: bytes, keep: bool,
                 confirmable: bool, timeout_s: float) -> None:
        self.handle, self.peer, self.mid, self.token = handle, peer, mid, token
        self.datagram, self.keep, self.awaiting_ack = datagram, keep, confirmable
        self.sent, self.timeout_s = 0, timeout_s


_RETRANSMIT, _GIVE_UP = 0, 1


class CoapEndpoint(Generic[P]):
    def __init__(self, params: TransmissionParams = TransmissionParams(), rng: random.Random | None = None,
                 max_open: int = 100_000, max_cached: int = 100_000) -> None:
        self.params = params
        self._rng = rng or random.SystemRandom()
        self._max_open = max_open
        self._max_cached = max_cached
        self._open: dict[int, _Open[P]] = {}
        self._by_mid: dict[tuple[P, int], _Open[P]] = {}
        self._by_token: dict[tuple[P, bytes], _Open[P]] = {}
        self._timers: list[tuple[float, int, int, int]] = []        # (when, seq, handle, kind)
        self._seq = 0
        self._next_handle = 1
        self._mids: OrderedDict[P, int] = OrderedDict()              # next message id per recently seen peer
        self._answers: OrderedDict[tuple[P, int], tuple[float, bytes | None]] = OrderedDict()
        self._out: list[Send[P]] = []
        self.retransmissions = 0

    # ------------------------------------------------------------------ sending requests

    def request(self, peer: P, code: int, options: tuple[tuple[int, bytes], ...] = (), payload: bytes = b"", *,
                now: float, confirmable: bool = True, keep: bool = False) -> int:
        """Queue a request to ``peer`` and return its handle. ``keep`` keeps the token after the first response
        so Observe notifications reach the caller until ``forget``."""
        if len(self._open) >= self._max_open:
            raise ExchangeTableFull(f"{len(self._open)} exchanges are open")
        token = self._token(peer)
        mid = self._mid(peer, now)
        datagram = encode_message(CoapMessage(CON if confirmable else NON, code, mid, token, options, payload))
        handle = self._next_handle
        self._next_handle += 1
        timeout_s = self.params.ack_timeout_s * (1 + self._rng.random() * (self.params.ack_random_factor - 1))
        entry = _Open(handle, peer, mid, token, datagram, keep, confirmable, timeout_s)
        self._open[handle] = entry
        self._by_token[(peer, token)] = entry
        if confirmable:
            self._by_mid[(peer, mid)] = entry
            self._arm(now + timeout_s, handle, _RETRANSMIT)
        else:
            self._arm(now + self.params.response_timeout_s, handle, _GIVE_UP)
        self._out.append(Send(peer, datagram))
        return handle

    def forget(self, handle: int) -> None:
        """Stop an exchange (a caller that no longer waits, or an observation it cancels): its later responses
        are rejected, which tells an observing device to stop notifying."""
        entry = self._open.pop(handle, None)
        if entry is not None:
            self._by_token.pop((entry.peer, entry.token), None)
            if entry.awaiting_ack:
                self._by_mid.pop((entry.peer, entry.mid), None)

    @property
    def open_exchanges(self) -> int:
        return len(self._open)

    def _token(self, peer: P) -> bytes:
        while True:
            token = self._rng.randbytes(self.params.token_length)
            if (peer, token) not in self._by_token:
                return token

    def _mid(self, peer: P, now: float) -> int:
        """Message ids count up per peer from a random start, so one peer never sees an id again within
        EXCHANGE_LIFETIME; a peer not sent anything for that long starts afresh."""
        mid = self._mids.pop(peer, None)
        if mid is None:
            mid = self._rng.randrange(0x10000)
        self._mids[peer] = (mid + 1) & 0xFFFF
        while len(self._mids) > self._max_cached:
            self._mids.popitem(last=False)
        return mid

    # ------------------------------------------------------------------ receiving

    def receive(self, peer: P, datagram: bytes, now: float) -> list[Event[P]]:
        """Everything ``datagram`` from ``peer`` means; raises DecodeError for a datagram that is not CoAP."""
        message = decode_message(datagram)
        if message.mtype == ACK or message.mtype == RST:
            return self._acknowledged(peer, message, now)
        if is_response_code(message.code):
            return self._separate(peer, message, now)
        if message.code == 0:  # an empty CON is a ping, answered with RST (§4.3)
            if message.mtype == CON:
                self._out.append(Send(peer, encode_message(CoapMessage(RST, 0, message.mid))))
            return []
        if not is_request_code(message.code):
            raise DecodeError(f"CoAP code {message.code >> 5}.{message.code & 31:02d} is reserved", hint="4.00")
        key = (peer, message.mid)
        cached = self._answers.get(key)
        if cached is not None and cached[0] > now:
            if cached[1] is not None and message.mtype == CON:
                self._out.append(Send(peer, cached[1]))
            return []  # a duplicate: answered again (or still being answered), never handled twice
        self._cache(key, None, now)
        return [Incoming(peer, message)]

    def owns(self, peer: P, datagram: bytes) -> bool:
        """Whether ``datagram`` answers one of this endpoint's exchanges (so a shared socket can route it)."""
        if len(datagram) < 4:
            return False
        mtype, code = datagram[0] >> 4 & 3, datagram[1]
        if mtype == ACK or mtype == RST:
            return (peer, int.from_bytes(datagram[2:4], "big")) in self._by_mid
        if is_response_code(code):
            tkl = datagram[0] & 0x0F
            return tkl <= 8 and (peer, bytes(datagram[4:4 + tkl])) in self._by_token
        return False

    def _acknowledged(self, peer: P, message: CoapMessage, now: float) -> list[Event[P]]:
        entry = self._by_mid.pop((peer, message.mid), None)
        if entry is None:
            return []  # a late or duplicated ACK
        entry.awaiting_ack = False
        if message.mtype == RST:
            self.forget(entry.handle)
            return [Failed(entry.handle, "reset")]
        if message.code == 0 or message.token != entry.token:  # an empty ACK: the response follows separately
            self._arm(now + self.params.response_timeout_s, entry.handle, _GIVE_UP)
            return []
        if not entry.keep:
            self.forget(entry.handle)
        return [Response(entry.handle, peer, message)]

    def _separate(self, peer: P, message: CoapMessage, now: float) -> list[Event[P]]:
        key = (peer, message.mid)
        if message.mtype == CON:
            cached = self._answers.get(key)
            if cached is not None and cached[0] > now and cached[1] is not None:
                self._out.append(Send(peer, cached[1]))
                return []  # a retransmitted separate response or notification: acknowledged again, once reported
        entry = self._by_token.get((peer, message.token))
        if entry is None:
            if message.mtype == CON:  # nobody waits for it (a cancelled observation): reject it (§5.3.2)
                self._out.append(Send(peer, encode_message(CoapMessage(RST, 0, message.mid))))
            return []
        if message.mtype == CON:
            ack = encode_message(CoapMessage(ACK, 0, message.mid))
            self._out.append(Send(peer, ack))
            self._cache(key, ack, now)
        if entry.awaiting_ack:  # the response came before the ACK did (its ACK was lost)
            self._by_mid.pop((peer, entry.mid), None)
            entry.awaiting_ack = False
        if not entry.keep:
            self.forget(entry.handle)
        return [Response(entry.handle, peer, message)]

    # ------------------------------------------------------------------ answering requests

    def respond(self, peer: P, request: CoapMessage, code: int, options: tuple[tuple[int, bytes], ...] = (),
                payload: bytes = b"", *, now: float) -> None:
        """Answer ``request`` (piggybacked on the ACK of a CON, a NON for a NON) and keep the answer for its
        duplicates."""
        if request.mtype == CON:
            answer = CoapMessage(ACK, code, request.mid, request.token, options, payload)
        else:
            answer = CoapMessage(NON, code, self._mid(peer, now), request.token, options, payload)
        datagram = encode_message(answer)
        self._cache((peer, request.mid), datagram, now)
        self._out.append(Send(peer, datagram))

    def _cache(self, key: tuple[P, int], datagram: bytes | None, now: float) -> None:
        self._answers[key] = (now + self.params.exchange_lifetime_s, datagram)
        self._answers.move_to_end(key)
        while self._answers and (len(self._answers) > self._max_cached
                                 or next(iter(self._answers.values()))[0] <= now):
            self._answers.popitem(last=False)

    # ------------------------------------------------------------------ time

    def _arm(self, when: float, handle: int, kind: int) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, handle, kind))

    def next_deadline(self) -> float | None:
        timers = self._timers
        while timers and timers[0][2] not in self._open:
            heapq.heappop(timers)  # the exchange ended meanwhile
        return timers[0][0] if timers else None

    def on_timer(self, now: float) -> list[Failed]:
        """Retransmit what is due and fail what has run out of tries or time."""
        failed: list[Failed] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, handle, kind = heapq.heappop(timers)
            entry = self._open.get(handle)
            if entry is None:
                continue
            if kind == _RETRANSMIT:
                if not entry.awaiting_ack:
                    continue
                if entry.sent < self.params.max_retransmit:
                    entry.sent += 1
                    self.retransmissions += 1
                    entry.timeout_s *= 2
                    self._out.append(Send(entry.peer, entry.datagram))
                    self._arm(now + entry.timeout_s, handle, _RETRANSMIT)
                    continue
            elif entry.awaiting_ack:
                continue  # still retransmitting: a give-up timer from an earlier phase does not apply
            self.forget(handle)
            failed.append(Failed(handle, "timeout"))
        return failed

    def outgoing(self) -> list[Send[P]]:
        """Take the datagrams to send, in order."""
        out, self._out = self._out, []
        return out
