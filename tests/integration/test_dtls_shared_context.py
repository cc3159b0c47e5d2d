"""The CoAPS listener added to the server context that already serves plain CoAP over UDP, as the
application wires it: both ports serve the same site, and a request addressed to a DTLS remote
leaves over its DTLS session, not over UDP."""

from __future__ import annotations

import asyncio

import aiocoap
import aiocoap.resource as resource
import pytest
from aiocoap.numbers.codes import Code

from fota_server.adapters.dtls import add_coaps_transport, endpoint_lookup_for, psk_lookup_for
from tests.integration.test_dtls_fixtures import DEVICES, HOST, DtlsPeer, RegisterResource, WhoResource, provisioned_db

pytestmark = pytest.mark.integration


def test_one_context_serves_coap_and_coaps_and_sends_over_the_right_one() -> None:
    async def scenario() -> None:
        db = provisioned_db()
        rd = RegisterResource(db)
        site = resource.Site()
        site.add_resource(["who"], WhoResource())
        site.add_resource(["rd"], rd)
        ctx = await aiocoap.Context.create_server_context(site, bind=(HOST, 0), transports=["udp6"])
        client_ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
        peer: DtlsPeer | None = None
        try:
            coaps = await add_coaps_transport(ctx, (HOST, 0), psk_lookup_for(db.credentials),
                                              endpoint_lookup=endpoint_lookup_for(db.credentials))
            udp_port = ctx.request_interfaces[0].token_interface.message_interface.transport \
                .get_extra_info("socket").getsockname()[1]
            assert coaps.port not in (0, udp_port)

            plain = await client_ctx.request(aiocoap.Message(
                code=Code.POST, uri=f"coap://{HOST}:{udp_port}/who", payload=b"udp")).response
            assert (plain.code, plain.payload) == (Code.CREATED, b"echo:udp")

            identity, key = DEVICES["dev-1"]
            peer = await DtlsPeer(identity, key.encode(), coaps.port).open()
            await peer.handshake()
            registered = await peer.request(Code.POST, ("rd",), ("ep=dev-1",))
            assert registered.code == Code.CREATED

            read = aiocoap.Message(code=Code.GET, uri_path=("3", "0", "0"))
            read.remote = rd.registered["dev-1"]
            pending = asyncio.ensure_future(ctx.request(read).response)

            async def manufacturer(request: aiocoap.Message) -> aiocoap.Message:
                return aiocoap.Message(code=Code.CONTENT, payload=b"Acme")

            asked = await peer.answer_next(manufacturer)
            response = await pending
            assert asked.opt.uri_path == ("3", "0", "0") and response.payload == b"Acme"
        finally:
            if peer is not None:
                peer.close()
            await client_ctx.shutdown()
            await ctx.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 60), debug=True)
