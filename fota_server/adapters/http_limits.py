"""Limits of the HTTP listener: a header-read timeout and a cap on concurrent connections, for uvicorn.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but sets no timer on a connection
that has not yet sent a complete request head: a client that connects and sends nothing, or a few bytes a
minute (slowloris), holds a connection for ever. ``head_timeout_protocol(timeout_s)`` is uvicorn's h11
protocol with one timer more: from the moment a connection waits for a request head (it opened, or the first
bytes of the next request on a kept-alive connection arrived) the whole head must arrive within
``timeout_s``, or the connection is closed. The request body and the response are not timed here.

``uvicorn_limits(config)`` gives the keyword arguments for ``uvicorn.Config``: this protocol, and
``limit_concurrency`` such that up to ``max_http_connections`` connections are served and a request on any
connection beyond them is answered 503 (uvicorn counts the connection making the request among them). It
also routes uvicorn's line per refused request ("Invalid HTTP request received.", "Exceeded concurrency
limit.") through the peer log, so that a flood of them writes one line a minute each, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypedDict

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import Config
from ..peerlog import PEER_LOG, peer_refused

__all__ = ["HeadTimeoutH11Protocol", "head_timeout_protocol", "uvicorn_limits", "UvicornLimits",
           "UvicornPeerLogFilter"]

log = logging.getLogger("fota_server.http")
_PER_REQUEST = frozenset({"Invalid HTTP request received.", "Exceeded concurrency limit.",
                          "Unsupported upgrade request."})


class UvicornPeerLogFilter(logging.Filter):
    """Takes uvicorn's per-request refusal lines out of its log and counts them in the peer log instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in _PER_REQUEST:
            return True
        PEER_LOG.refused(log, "-", f"uvicorn: {record.msg}", "%s", record.msg, level=record.levelno)
        return False


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol; a connection that does not send its request head within ``head_timeout_s``
    is closed.

    A request only moves the deadline (``_head_deadline``); the connection's one timer, when it fires, closes
    the connection if the deadline has passed, sleeps on if a later request moved it, and ends if no head is
    awaited. So a kept-alive connection makes one timer per ``head_timeout_s``, not one per request."""

    head_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_timer_at = 0.0
        self._head_deadline: float | None = None   # None: no request head awaited

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
        self._head_deadline = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._head_deadline = self.loop.time() + self.head_timeout_s
        if self._head_timer is None:
            self._start_head_timer(self._head_deadline)

    def _start_head_timer(self, at: float) -> None:
        self._head_timer_at = at
        self._head_timer = self.loop.call_at(at, self._head_timer_fired)

    def _settle_head_timer(self) -> None:
        """A head has arrived (the peer is sending a body, or is done): no deadline until the next request."""
        if self.conn.their_state is not h11.IDLE:
            self._head_deadline = None

    def _head_timer_fired(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None:
            return
        if deadline > self._head_timer_at:   # a later request moved the deadline on
            self._start_head_timer(deadline)
            return
        self._head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        host = self.client[0] if self.client else "?"
        peer_refused(log, host, "HTTP request head timeout", "HTTP connection from %s closed: no complete request "
                     "head within %.0f s", host, self.head_timeout_s)
        self.transport.close()


def head_timeout_protocol(timeout_s: float) -> type[HeadTimeoutH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this header-read timeout."""
    class Protocol(HeadTimeoutH11Protocol):
        head_timeout_s = float(timeout_s)
    return Protocol


class UvicornLimits(TypedDict):
    http: type[asyncio.Protocol]
    limit_concurrency: int | None


def uvicorn_limits(config: Config) -> UvicornLimits:
    """``uvicorn.Config`` keyword arguments for ``max_http_connections`` and ``http_header_timeout_s``
    (0 turns either off)."""
    protocol: type[asyncio.Protocol] = (head_timeout_protocol(config.http_header_timeout_s)
                                        if config.http_header_timeout_s > 0 else H11Protocol)
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, UvicornPeerLogFilter) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(UvicornPeerLogFilter())
    cap = config.max_http_connections
    return {"http": protocol, "limit_concurrency": cap + 1 if cap > 0 else None}
