"""The LwM2M registration interface over CoAPS: the /rd resources of ``lwm2m_site`` read the endpoint
the DTLS layer vouches for (``remote.lwm2m_endpoint``). A device registers only as its own endpoint;
the server's Read goes over its session; after a new handshake from a new address a Read reaches it
there before it sends an Update, and its Update is accepted."""

from __future__ import annotations

import asyncio

import aiocoap
import aiocoap.resource as resource
import pytest
from aiocoap.numbers.codes import Code

from fota_server.adapters.dtls import create_coaps_context, endpoint_lookup_for, psk_lookup_for
from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings, add_rd_resources
from fota_server.clock import SystemClock
from fota_server.protocol.lwm2m.paths import LwM2MPath
from tests.integration.test_dtls_fixtures import DEVICES, HOST, DtlsPeer, provisioned_db

pytestmark = pytest.mark.integration


async def model_number(request: aiocoap.Message) -> aiocoap.Message:
    return aiocoap.Message(code=Code.CONTENT, payload=b"Model 7", content_format=0)


def test_register_bound_to_the_identity_and_update_after_rebinding() -> None:
    async def scenario() -> None:
        db = provisioned_db()
        server = Lwm2mServer(SystemClock(), Lwm2mSettings(read_device_data=False))   # the test drives the reads
        site = resource.Site()
        add_rd_resources(site, server)
        ctx, coaps = await create_coaps_context(site, (HOST, 0), psk_lookup_for(db.credentials), None,
                                                endpoint_lookup_for(db.credentials))
        server.attach(ctx)
        identity, key = DEVICES["dev-1"]
        first = DtlsPeer(identity, key.encode(), coaps.port)
        moved = DtlsPeer(identity, key.encode(), coaps.port)
        try:
            await (await first.open()).handshake()
            as_other = await first.request(Code.POST, ("rd",), ("ep=dev-2", "lt=300", "lwm2m=1.1"), b"</3/0>")
            assert as_other.code == Code.FORBIDDEN
            registered = await first.request(Code.POST, ("rd",), ("ep=dev-1", "lt=300", "lwm2m=1.1"),
                                             b"</3/0>,</5/0>")
            assert registered.code == Code.CREATED
            location = tuple(registered.opt.location_path)
            assert location[0] == "rd" and len(location) == 2

            read = asyncio.ensure_future(server.downlink.request("dev-1", "GET", LwM2MPath.parse("/3/0/1")))
            asked = await first.answer_next(model_number)
            assert asked.opt.uri_path == ("3", "0", "1") and (await read).payload == b"Model 7"

            await (await moved.open()).handshake()                 # NAT re-binding: new address, new session
            read = asyncio.ensure_future(server.downlink.request("dev-1", "GET", LwM2MPath.parse("/3/0/2")))
            await moved.answer_next(model_number)                 # before any Update: follows the identity
            assert (await read).code == "2.05"
            updated = await moved.request(Code.POST, location)
            assert updated.code == Code.CHANGED
            assert coaps.remote_for_identity(identity).address[1] == moved.local_port  # type: ignore[union-attr]
        finally:
            first.close(notify=False)
            moved.close()
            await server.stop()
            await ctx.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 60), debug=True)
