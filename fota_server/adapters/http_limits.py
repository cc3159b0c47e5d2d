"""Limits of the HTTP listener: a header-read timeout, a cap on the request head's size and a cap on concurrent
connections, for uvicorn.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but sets no timer on a connection
that has not yet sent a complete request head: a client that connects and sends nothing, or a few bytes a
minute (slowloris), holds a connection for ever. The protocols here are uvicorn's with one timer more: from the
moment a connection waits for a request head (it opened, or the first bytes of the next request on a
kept-alive connection arrived) the whole head must arrive within ``head_timeout_s``, or the connection is
closed. The request body and the response are not timed here.

``HeadLimitsHttpToolsProtocol`` is uvicorn's httptools (llhttp) protocol, the one ``fota-server run`` uses:
its parser is several times faster than h11. llhttp itself puts no bound on a request head, so this protocol
answers 400 to a head over ``MAX_HEAD_BYTES`` (16 KiB, h11's bound): a complete head is measured when it
ends, an unfinished one by the bytes received since it began. ``HeadTimeoutH11Protocol`` is the same timer
on uvicorn's h11 protocol (h11 bounds the head itself), used when httptools cannot be imported.

``uvicorn_limits(config)`` gives the keyword arguments for ``uvicorn.Config``: the protocol, and
``limit_concurrency`` such that up to ``max_http_connections`` connections are served and a request on any
connection beyond them is answered 503 (uvicorn counts the connection making the request among them). It
also routes uvicorn's line per refused request ("Invalid HTTP request received.", "Exceeded concurrency
limit.") through the peer log, so that a flood of them writes one line a minute each, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable, TypedDict

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is a dependency; a platform without its wheel falls back to h11
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

from ..config import Config
from ..peerlog import PEER_LOG, peer_refused

__all__ = ["HeadTimeoutH11Protocol", "HeadLimitsHttpToolsProtocol", "CorkedTransport", "head_timeout_protocol", "uvicorn_limits",
           "UvicornLimits", "UvicornPeerLogFilter", "MAX_HEAD_BYTES"]

log = logging.getLogger("fota_server.http")
MAX_HEAD_BYTES = 16 * 1024   # h11's bound on an incomplete event, applied to the httptools protocol
_INVALID = "Invalid HTTP request received."
_PER_REQUEST = frozenset({_INVALID, "Exceeded concurrency limit.", "Unsupported upgrade request."})


class UvicornPeerLogFilter(logging.Filter):
    """Takes uvicorn's per-request refusal lines out of its log and counts them in the peer log instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in _PER_REQUEST:
            return True
        PEER_LOG.refused(log, "-", f"uvicorn: {record.msg}", "%s", record.msg, level=record.levelno)
        return False


class _HeadDeadline:
    """The head timer shared by both protocols. A request only moves the deadline (``_head_deadline``); the
    connection's one timer, when it fires, closes the connection if the deadline has passed, sleeps on if a
    later request moved it, and ends if no head is awaited. So a kept-alive connection makes one timer per
    ``head_timeout_s``, not one per request."""

    head_timeout_s: float = 10.0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None

    def _init_head_deadline(self) -> None:
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_timer_at = 0.0
        self._head_deadline: float | None = None   # None: no request head awaited

    def _arm_head_timer(self) -> None:
        if self.head_timeout_s <= 0:
            return
        self._head_deadline = self.loop.time() + self.head_timeout_s
        if self._head_timer is None:
            self._start_head_timer(self._head_deadline)

    def _cancel_head_timer(self) -> None:
        self._head_deadline = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _start_head_timer(self, at: float) -> None:
        self._head_timer_at = at
        self._head_timer = self.loop.call_at(at, self._head_timer_fired)

    def _head_arrived(self) -> bool:
        """Whether the awaited head has arrived after all (the timer fired in the same turn)."""
        return False

    def _head_timer_fired(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None:
            return
        if deadline > self._head_timer_at:   # a later request moved the deadline on
            self._start_head_timer(deadline)
            return
        self._head_deadline = None
        if self.transport.is_closing() or self._head_arrived():
            return
        host = self.client[0] if self.client else "?"
        peer_refused(log, host, "HTTP request head timeout", "HTTP connection from %s closed: no complete request "
                     "head within %.0f s", host, self.head_timeout_s)
        self.transport.close()


class HeadTimeoutH11Protocol(_HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol; a connection that does not send its request head within ``head_timeout_s``
    is closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_head_deadline()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()      # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        self._settle_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._settle_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _settle_head_timer(self) -> None:
        """A head has arrived (the peer is sending a body, or is done): no deadline until the next request."""
        if self.conn.their_state is not h11.IDLE:
            self._head_deadline = None

    def _head_arrived(self) -> bool:
        return self.conn.their_state is not h11.IDLE


class CorkedTransport(asyncio.Transport):
    """A transport whose writes made in one turn of the event loop leave together, in one ``write`` at the end of
    the turn: a response's head and its body (uvicorn writes them apart) in one send and one TCP segment instead
    of two. ``close``, ``write_eof`` and ``abort`` see the writes before them; everything else is the transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport, self._loop = transport, loop
        self._pending: list[bytes | bytearray | memoryview] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending:
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending or ())

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


if HttpToolsProtocol is not None:
    class HeadLimitsHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with the head timer (``head_timeout_s``, 0: none) and a bound of
        ``max_head_bytes`` on a request head (400 beyond, as for any request the parser refuses)."""

        max_head_bytes: int = MAX_HEAD_BYTES

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._init_head_deadline()
            self._reading_head = True    # from the connection or the next request's first byte to its head's end
            self._head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CorkedTransport(transport, self.loop))
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._reading_head:   # counted only while a head is unfinished: a body is not a head
                self._head_bytes += len(data)
                if self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
                    self._refuse_head()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._reading_head, self._head_bytes = True, 0
            if self._head_deadline is None:
                self._arm_head_timer()   # the first bytes of the next request on a kept-alive connection

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._head_deadline = None
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.max_head_bytes:
                raise ValueError(f"request head of {size} bytes")   # the parser's error: 400, as uvicorn answers it
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _head_arrived(self) -> bool:
            return not self._reading_head

        def _refuse_head(self) -> None:
            self.logger.warning(_INVALID)
            self.send_400_response(_INVALID)
else:  # pragma: no cover - only where httptools is missing
    HeadLimitsHttpToolsProtocol = None  # type: ignore[assignment,misc]


def head_timeout_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this header-read timeout (0: none): httptools
    with the head bound, or h11 where httptools is missing."""
    if HeadLimitsHttpToolsProtocol is not None:
        class Protocol(HeadLimitsHttpToolsProtocol):
            head_timeout_s = float(timeout_s)
        return Protocol
    if timeout_s <= 0:
        return H11Protocol

    class H11(HeadTimeoutH11Protocol):
        head_timeout_s = float(timeout_s)
    return H11


class UvicornLimits(TypedDict):
    http: type[asyncio.Protocol]
    limit_concurrency: int | None


def uvicorn_limits(config: Config) -> UvicornLimits:
    """``uvicorn.Config`` keyword arguments for ``max_http_connections`` and ``http_header_timeout_s``
    (0 turns either off)."""
    protocol = head_timeout_protocol(config.http_header_timeout_s)
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, UvicornPeerLogFilter) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(UvicornPeerLogFilter())
    cap = config.max_http_connections
    return {"http": protocol, "limit_concurrency": cap + 1 if cap > 0 else None}
