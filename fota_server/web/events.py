"""The console's live counts: ``GET /ui/api/events`` is a ``text/event-stream`` of the account's fleet counts
(``counts`` events, sent when they change, looked at every ``interval_s``), a comment every ``KEEPALIVE_S``.

Streams are bounded (``per_account`` and ``total``; beyond them 429 ``TooManyStreams``), end when the client
goes away, and all end at once when the hub closes (the server stops), so that stopping never waits on an
open page.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import DomainError
from ..services import Services
from .fleet import FleetCounts, wait_or_closed
from .refused import RefusedDevices

__all__ = ["ConsoleHub", "events", "TooManyStreams"]

KEEPALIVE_S = 15.0


class TooManyStreams(DomainError):
    """Too many console event streams are open (429 is not in the error table: 400 with this code)."""

    error_code = "TooManyStreams"


class ConsoleHub:
    def __init__(self, refused: RefusedDevices, per_account: int = 8, total: int = 128,
                 interval_s: float = 2.0) -> None:
        self.per_account, self.total, self.interval_s = per_account, total, interval_s
        self.refused = refused   # devices of no account refused lately (``refused.py``)
        self.counts = FleetCounts()
        self.closing = asyncio.Event()
        self._open: dict[str, int] = {}

    def open_streams(self, account: str | None = None) -> int:
        return self._open.get(account, 0) if account is not None else sum(self._open.values())

    def take(self, account: str) -> None:
        if self._open.get(account, 0) >= self.per_account or self.open_streams() >= self.total:
            raise TooManyStreams(f"at most {self.per_account} live console pages per account "
                                 f"({self.total} in all) may be open; close one")
        self._open[account] = self._open.get(account, 0) + 1

    def give_back(self, account: str) -> None:
        left = self._open.get(account, 1) - 1
        if left > 0:
            self._open[account] = left
        else:
            self._open.pop(account, None)

    def close(self) -> None:
        """End every stream (the server stops)."""
        self.closing.set()


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class CountsStream(Response):
    media_type = "text/event-stream"

    def __init__(self, hub: ConsoleHub, services: Services, account: str) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self._hub, self._services, self._account = hub, services, account

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = asyncio.ensure_future(self._stream(send))
        listen = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({stream, listen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._hub.give_back(self._account)
            for task in (stream, listen):
                task.cancel()
            await asyncio.gather(stream, listen, return_exceptions=True)

    async def _stream(self, send: Send) -> None:
        hub = self._hub
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        last: dict[str, Any] | None = None
        quiet = 0.0
        while not hub.closing.is_set():
            counts = hub.counts.of(self._services, self._account)
            if last is None or {k: v for k, v in counts.items() if k != "at"} != {
                    k: v for k, v in last.items() if k != "at"}:
                last, quiet = counts, 0.0
                await send({"type": "http.response.body", "body": _sse("counts", counts), "more_body": True})
            elif quiet >= KEEPALIVE_S:
                quiet = 0.0
                await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
            if await wait_or_closed(hub.closing, hub.interval_s):
                break
            quiet += hub.interval_s
        await send({"type": "http.response.body", "body": _sse("end", {}), "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def events(request: Request, services: Services, account: str) -> Response:
    hub: ConsoleHub = request.app.state.console
    hub.take(account)
    return CountsStream(hub, services, account)
