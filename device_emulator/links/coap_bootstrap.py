"""The real CoAP link of an emulated device's bootstrap phase (LwM2M Core 1.1 §6.1.3, client-initiated
bootstrap): from one UDP socket (a :class:`CoapMux` of its own) it sends the Bootstrap-Request and serves
the bootstrap server's Discover/Delete/Write/Finish from :class:`BootstrapClient`, until Finish or
``timeout_s``."""

from __future__ import annotations

import asyncio

from device_emulator.lwm2m.bootstrap import BootstrapClient, BootstrapOutcome
from device_emulator.lwm2m.messages import DeviceRequest
from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.coap_message import CONTENT_FORMAT, URI_PATH, URI_QUERY, CoapMessage, uint_bytes

from .coap_wire import ACCEPT, POST, code_number, dotted, resolve, uint_option
from .coap_mux import CoapMux, Peer

__all__ = ["BootstrapFailed", "run_bootstrap"]

_METHOD_NAMES = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}


class BootstrapFailed(Exception):
    """The bootstrap server refused the request or did not finish; ``code`` is its answer or ``timeout``."""

    def __init__(self, code: str) -> None:
        super().__init__(f"bootstrap failed: {code}")
        self.code = code


class _Bootstrapping:
    """Serves the bootstrap server's requests from the client machine until it has an outcome."""

    def __init__(self, client: BootstrapClient, mux: CoapMux) -> None:
        self.client, self.mux = client, mux
        self.finished = asyncio.Event()

    def serve(self, peer: Peer, request: CoapMessage) -> None:
        try:
            answer = self.client.handle(DeviceRequest(
                _METHOD_NAMES.get(request.code, "?"), tuple(v.decode() for v in request.values(URI_PATH)),
                tuple(v.decode() for v in request.values(URI_QUERY)), request.payload,
                uint_option(request, CONTENT_FORMAT), uint_option(request, ACCEPT)))
        except (UnicodeDecodeError, DecodeError):
            self.mux.respond(peer, request, code_number("4.00"))
            return
        options = () if answer.content_format is None else ((CONTENT_FORMAT, uint_bytes(answer.content_format)),)
        self.mux.respond(peer, request, code_number(answer.code), options, answer.payload)
        if self.client.outcome is not None:
            self.finished.set()


async def run_bootstrap(client: BootstrapClient, bootstrap_uri: str, bind_host: str = "127.0.0.1",
                        timeout_s: float = 60.0) -> BootstrapOutcome:
    """Bootstrap-Request to ``bootstrap_uri`` (``coap://host:port``), then serve the server until Finish."""
    server, _, _ = resolve(bootstrap_uri.rstrip("/"), default_port=5683)
    mux = CoapMux(bind_host=bind_host)
    mux.open()
    device = _Bootstrapping(client, mux)
    identity = mux.attach(device)
    try:
        answered: asyncio.Future[CoapMessage | None] = asyncio.get_running_loop().create_future()

        def done(message: CoapMessage | None, _reason: str) -> None:
            if not answered.done():
                answered.set_result(message)

        options = ((URI_PATH, b"bs"), *((URI_QUERY, q.encode()) for q in client.request_query()))
        mux.request((identity, server), POST, options, b"", done)
        try:
            async with asyncio.timeout(timeout_s):
                response = await answered
        except TimeoutError:
            raise BootstrapFailed("timeout") from None
        if response is None:
            raise BootstrapFailed("timeout")
        if dotted(response.code) != "2.04":
            raise BootstrapFailed(dotted(response.code))
        try:
            async with asyncio.timeout(timeout_s):
                await device.finished.wait()
        except TimeoutError:
            raise BootstrapFailed("timeout") from None
    finally:
        mux.detach(identity)
        mux.close()
    assert client.outcome is not None
    return client.outcome
