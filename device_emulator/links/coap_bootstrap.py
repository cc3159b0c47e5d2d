"""The real CoAP link of an emulated device's bootstrap phase (LwM2M Core 1.1 §6.1.3, client-initiated
bootstrap): from one UDP socket it sends the Bootstrap-Request and serves the bootstrap server's
Discover/Delete/Write/Finish from :class:`BootstrapClient`, until Finish or ``timeout_s``."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import aiocoap
import aiocoap.resource as resource

from device_emulator.links.coap import free_udp_port
from device_emulator.lwm2m.bootstrap import BootstrapClient, BootstrapOutcome
from device_emulator.lwm2m.messages import DeviceRequest, DeviceResponse

__all__ = ["BootstrapFailed", "run_bootstrap"]

_METHOD_NAMES = {aiocoap.GET: "GET", aiocoap.PUT: "PUT", aiocoap.POST: "POST", aiocoap.DELETE: "DELETE"}


class BootstrapFailed(Exception):
    """The bootstrap server refused the request or did not finish; ``code`` is its answer or ``timeout``."""

    def __init__(self, code: str) -> None:
        super().__init__(f"bootstrap failed: {code}")
        self.code = code


class _BootstrapRoot(resource.Resource):  # type: ignore[misc]
    def __init__(self, client: BootstrapClient, finished: asyncio.Event) -> None:
        super().__init__()
        self._client = client
        self._finished = finished

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        answer = self._client.handle(DeviceRequest(
            _METHOD_NAMES.get(request.code, "?"), tuple(request.opt.uri_path), tuple(request.opt.uri_query),
            bytes(request.payload), request.opt.content_format, request.opt.accept))
        if self._client.outcome is not None:
            self._finished.set()
        return _message(answer)


def _message(answer: DeviceResponse) -> aiocoap.Message:
    major, _, minor = answer.code.partition(".")
    message = aiocoap.Message(code=aiocoap.Code(int(major) << 5 | int(minor)), payload=answer.payload)
    if answer.content_format is not None:
        message.opt.content_format = answer.content_format
    return message


async def run_bootstrap(client: BootstrapClient, bootstrap_uri: str, bind_host: str = "127.0.0.1",
                        timeout_s: float = 60.0) -> BootstrapOutcome:
    """Bootstrap-Request to ``bootstrap_uri`` (``coap://host:port``), then serve the server until Finish."""
    finished = asyncio.Event()
    port = free_udp_port(bind_host, avoid=urlsplit(bootstrap_uri).port)
    context = await aiocoap.Context.create_server_context(
        _BootstrapRoot(client, finished), bind=(bind_host, port), transports=["udp6"])
    try:
        message = aiocoap.Message(code=aiocoap.POST, uri=bootstrap_uri.rstrip("/") + "/bs")
        message.opt.uri_query = client.request_query()
        try:
            response: Any = await asyncio.wait_for(context.request(message).response, timeout_s)
        except (TimeoutError, aiocoap.error.Error, OSError) as exc:
            raise BootstrapFailed("timeout") from exc
        code = f"{int(response.code) >> 5}.{int(response.code) & 31:02d}"
        if code != "2.04":
            raise BootstrapFailed(code)
        try:
            await asyncio.wait_for(finished.wait(), timeout_s)
        except TimeoutError:
            raise BootstrapFailed("timeout") from None
    finally:
        await context.shutdown()
    assert client.outcome is not None
    return client.outcome
