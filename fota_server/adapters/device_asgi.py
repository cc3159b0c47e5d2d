"""The device requests that come most often, answered in front of Starlette's middleware and router:

    POST /http/v1/devices/{device_id}/checkin     (``fota_http``)
    POST /http/v1/devices/{device_id}/status      (``fota_http``)
    GET  /{tenant}/controller/v1/{controller_id}  (``ddi_http``: the DDI base poll)

``DeviceDispatch(app)`` is an ASGI app around the Starlette app. It matches these with the route patterns of
``fota_http.routes`` and ``ddi_http.routes`` themselves and with the one method (HEAD, and every other
method, path and root path, go on to Starlette, which answers them as before). It reads the Authorization,
Content-Length and Host headers from the scope, reads the body with the same limit, calls the functions the
Starlette endpoints call (``authenticate_device``, ``checkin_answer``, ``status_answer``,
``authenticate_controller``, ``poll_answer``) and sends the 200 with the headers ``Response`` gives it, so the
answers are the same, without a ``Request``, a ``Response``, the router's walk and three middleware layers per
request.

A device's bad input (``PeerError``) is answered by ``peer_error_response``, as the endpoints answer it
(logged once per client and interval, counted). Any other exception goes where Starlette's exception
middleware sends it: the app's handler for its class (a full store: 503 with Retry-After), else a 500 and the
exception raised on to uvicorn, as ``ServerErrorMiddleware`` does.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Awaitable, Callable, Iterable

from starlette._utils import is_async_callable
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from ..api.errors import PayloadTooLarge
from ..protocol.errors import PeerError
from ..protocol.http_fota import manifest
from ..services import Services
from .device_trace import DeviceTrace
from . import ddi_http, fota_http, omadm_http
from .fota_http import (
    authenticate_device, checkin_answer, peer_error_response, recorder_of, scope_base_url,
    status_answer,
)

__all__ = ["DeviceDispatch", "receive_body"]

_Answer = Callable[[Scope, Receive, dict[str, str], dict[bytes, bytes]], Awaitable[bytes]]

_CHECKIN, _STATUS = "/http/v1/devices/{device_id}/checkin", "/http/v1/devices/{device_id}/status"
_DEVICE_PREFIX = "/http/v1/devices/"
_JSON = b"application/json"


def _pattern(routes: Iterable[BaseRoute], path: str, method: str) -> re.Pattern[str]:
    """The compiled pattern of the route for ``path`` that serves ``method``."""
    route = next(r for r in routes if isinstance(r, Route) and r.path == path)
    assert route.methods is not None and method in route.methods, (path, method)
    return route.path_regex


async def receive_body(receive: Receive, declared: str | None, max_bytes: int) -> bytes:
    """``api.bodies.read_body`` on the ASGI channel: the body, or ``PayloadTooLarge`` once it is over
    ``max_bytes`` (declared or received); ``ClientDisconnect`` if the client went away."""
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {max_bytes}")
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):   # the body in one piece
        body: bytes | bytearray = message.get("body", b"")
    else:
        body = bytearray()
        while True:
            if message["type"] == "http.request":
                body += message.get("body", b"")
                if len(body) > max_bytes:
                    break
                if not message.get("more_body", False):
                    return bytes(body)
            elif message["type"] == "http.disconnect":
                raise ClientDisconnect()
            message = await receive()
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is over the limit of {max_bytes} bytes")
    return bytes(body)


class DeviceDispatch:
    """ASGI: the check-in, the status report and the DDI base poll answered here; everything else by ``app``."""

    def __init__(self, app: Starlette, latency: Callable[[tuple[str, str], float], None] | None = None) -> None:
        self.app = app
        self._latency = latency   # metrics: (surface, route template), seconds to the start of the answer
        self._device_routes = {id(r) for r in (*fota_http.routes, *ddi_http.routes, *omadm_http.routes)}
        self.services: Services = app.state.services
        self._checkin = _pattern(fota_http.routes, _CHECKIN, "POST")
        self._status = _pattern(fota_http.routes, _STATUS, "POST")
        self._poll = _pattern(ddi_http.routes, ddi_http.BASE, "GET")
        handlers = app.exception_handlers
        self._exception_handlers = {k: v for k, v in handlers.items() if k not in (500, Exception)}
        self._error_handler = handlers.get(500) or handlers.get(Exception)
        self.answered: Counter[tuple[str, str]] = Counter()   # (checkin|status|poll, status) for the metrics

    def route_for(self, method: str, path: str) -> str | None:
        """Which of the three answers ``method path`` here ("checkin", "status", "poll"), or None: Starlette."""
        if method == "POST" and path.startswith(_DEVICE_PREFIX):
            if self._checkin.match(path):
                return "checkin"
            if self._status.match(path):
                return "status"
        elif method == "GET" and self._poll.match(path):
            return "poll"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        if not scope.get("root_path"):
            method, path = scope["method"], scope["path"]
            answer, route, template = None, "", ""
            if method == "POST" and path.startswith(_DEVICE_PREFIX):
                match = self._checkin.match(path)
                if match is not None:
                    answer, route, template = self._checkin_body, "checkin", _CHECKIN
                else:
                    match = self._status.match(path)
                    if match is not None:
                        answer, route, template = self._status_body, "status", _STATUS
            elif method == "GET":
                match = self._poll.match(path)
                if match is not None:
                    answer, route, template = self._poll_body, "poll", ddi_http.BASE
            if answer is not None and match is not None:
                return await self._answer(scope, receive, send, match.groupdict(), answer, route, template, started)
        if self._latency is None:
            return await self.app(scope, receive, send)
        answered: list[float] = []

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered.append(time.perf_counter())
            await send(message)
        try:
            await self.app(scope, receive, timed)
        finally:
            self._latency(self._labels(scope), (answered[0] if answered else time.perf_counter()) - started)

    def _answered(self, template: str, started: float) -> None:
        """The answer to a check-in, a status report or a poll is ready: its time for the metrics (counted
        with ``answered``, so the two agree at any scrape)."""
        if self._latency is not None:
            self._latency(("device", template), time.perf_counter() - started)

    def _labels(self, scope: Scope) -> tuple[str, str]:
        """(surface, route template) of a request Starlette routed; ("none", "unmatched") for one no route took."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return "none", "unmatched"
        if id(route) in self._device_routes:
            return "device", path
        return ("console" if path.startswith("/ui") else "management"), path

    async def _answer(self, scope: Scope, receive: Receive, send: Send, params: dict[str, str],
                      answer: Callable[[Scope, Receive, dict[str, str], dict[bytes, bytes]], Awaitable[bytes]],
                      route: str, template: str, started: float) -> None:
        device_id = params.get("device_id") or params.get("controller_id", "")
        if device_id in self.services.device_trace.devices:   # the console traces it
            receive, answer = _traced(self.services.device_trace, device_id, scope, receive, answer)
        headers: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:
            if key in (b"authorization", b"host", b"content-length") and key not in headers:   # the first, as
                headers[key] = value                                                           # Headers.get
        try:
            body = await answer(scope, receive, params, headers)
        except PeerError as exc:
            self.answered[(route, str(exc.hint if isinstance(exc.hint, int) and 400 <= exc.hint <= 599 else 400))] += 1
            self._answered(template, started)
            scope["path_params"] = params
            await peer_error_response(self._request(scope, receive), exc)(scope, receive, send)
            return
        except Exception as exc:
            self.answered[(route, "error")] += 1
            self._answered(template, started)
            scope["path_params"] = params
            await self._failed(scope, receive, send, exc)
            return
        self.answered[(route, "200")] += 1   # metrics: one increment
        self._answered(template, started)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body)), (b"content-type", _JSON)]})
        await send({"type": "http.response.body", "body": body})

    async def _checkin_body(self, scope: Scope, receive: Receive, params: dict[str, str],
                            headers: dict[bytes, bytes]) -> bytes:
        services = self.services
        device = authenticate_device(services, params["device_id"], _text(headers.get(b"authorization")),
                                     peer=_peer(scope))
        raw = await _body(receive, headers, manifest.MAX_CHECKIN_BYTES)
        recorder = recorder_of(self.app.state, services.http_driver)
        return await checkin_answer(services, recorder, device, raw, scope_base_url(scope, headers.get(b"host")))

    async def _status_body(self, scope: Scope, receive: Receive, params: dict[str, str],
                           headers: dict[bytes, bytes]) -> bytes:
        services = self.services
        device = authenticate_device(services, params["device_id"], _text(headers.get(b"authorization")),
                                     peer=_peer(scope))
        return status_answer(services, device, await _body(receive, headers, manifest.MAX_REPORT_BYTES))

    async def _poll_body(self, scope: Scope, receive: Receive, params: dict[str, str],
                         headers: dict[bytes, bytes]) -> bytes:
        services = self.services
        tenant, controller_id = params["tenant"], params["controller_id"]
        device = ddi_http.authenticate_controller(services, tenant, controller_id,
                                                  _text(headers.get(b"authorization")), _peer(scope))
        driver = services.http_driver
        base = ddi_http.controller_base(scope_base_url(scope, headers.get(b"host")), tenant, controller_id)
        return await ddi_http.poll_answer(services, recorder_of(self.app.state, driver), device, driver, base)

    def _request(self, scope: Scope, receive: Receive) -> Request:
        scope["app"] = self.app
        return Request(scope, receive)

    async def _failed(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """What ``ExceptionMiddleware`` and then ``ServerErrorMiddleware`` do with ``exc`` (nothing was sent yet):
        the app's handler for its class answers; without one, or if that handler raises, a 500 and raise."""
        request = self._request(scope, receive)
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)
        try:
            handler = self._exception_handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
            handler = handler or next((self._exception_handlers[cls] for cls in type(exc).__mro__
                                       if cls in self._exception_handlers), None)
            if handler is None:
                raise exc
            response = await _call(handler, request, exc)
            if response is not None:
                await response(scope, receive, sender)
            exc.__traceback__ = None
        except Exception as error:
            response = (PlainTextResponse("Internal Server Error", status_code=500) if self._error_handler is None
                        else await _call(self._error_handler, request, error))
            if response is not None and not started:
                await response(scope, receive, sender)
            raise


async def _call(handler: Callable[..., object], request: Request, exc: Exception) -> Response | None:
    result = await handler(request, exc) if is_async_callable(handler) else await run_in_threadpool(
        handler, request, exc)
    return result if isinstance(result, Response) else None


def _traced(trace: DeviceTrace, device_id: str, scope: Scope, receive: Receive, answer: _Answer
            ) -> tuple[Receive, _Answer]:
    """``receive`` and ``answer`` that also give the request's body and the answer to the device's trace."""
    chunks: list[bytes] = []

    async def recording() -> Message:
        message = await receive()
        chunks.append(message.get("body", b""))
        return message

    async def answering(scope: Scope, receive: Receive, params: dict[str, str], headers: dict[bytes, bytes]
                        ) -> bytes:
        try:
            body = await answer(scope, receive, params, headers)
        except PeerError as exc:
            trace.http(device_id, scope["method"], scope["path"], exc.hint if isinstance(exc.hint, int) else 400,
                       b"".join(chunks), str(exc).encode(),
                       _peer(scope))
            raise
        trace.http(device_id, scope["method"], scope["path"], 200, b"".join(chunks), body, _peer(scope))
        return body
    return recording, answering


def _text(value: bytes | None) -> str:
    return value.decode("latin-1") if value is not None else ""


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


async def _body(receive: Receive, headers: dict[bytes, bytes], max_bytes: int) -> bytes:
    declared = headers.get(b"content-length")
    try:
        return await receive_body(receive, declared.decode("latin-1") if declared is not None else None, max_bytes)
    except PayloadTooLarge as exc:
        raise PeerError(exc.message, hint=413) from None
