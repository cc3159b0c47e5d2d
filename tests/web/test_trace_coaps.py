"""The console's protocol trace of a CoAPS device: the CoAP messages inside its DTLS session, decrypted, both
ways (the DTLS transport's hook), and nothing for a session whose device nobody traces."""

from __future__ import annotations

import asyncio

import aiocoap.resource as resource
import pytest
from aiocoap.numbers.codes import Code

from fota_server.adapters.device_trace import DeviceTrace
from fota_server.adapters.dtls import create_coaps_context, endpoint_lookup_for, psk_lookup_for
from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings, add_rd_resources
from fota_server.clock import SystemClock
from fota_server.web.trace_view import record_json
from tests.integration.test_dtls_fixtures import DEVICES, HOST, DtlsPeer, provisioned_db

pytestmark = pytest.mark.integration


def test_a_traced_psk_device_s_coap_is_traced_decrypted_and_another_s_is_not() -> None:
    async def scenario() -> None:
        db = provisioned_db()
        trace = DeviceTrace()
        server = Lwm2mServer(SystemClock(), Lwm2mSettings(read_device_data=False))
        server.listeners.append(trace.on_registration)
        site = resource.Site()
        add_rd_resources(site, server)
        ctx, coaps = await create_coaps_context(site, (HOST, 0), psk_lookup_for(db.credentials), None,
                                                endpoint_lookup_for(db.credentials))
        coaps.trace_to(trace)
        server.attach(ctx)
        trace.watch("dev-1")   # its console page is open; its address is learnt from its Register
        peers = {d: DtlsPeer(DEVICES[d][0], DEVICES[d][1].encode(), coaps.port) for d in ("dev-1", "dev-2")}
        try:
            for device_id, peer in peers.items():
                await (await peer.open()).handshake()
                registered = await peer.request(Code.POST, ("rd",), (f"ep={device_id}", "lt=300", "lwm2m=1.1"),
                                                b"</3/0>,</5/0>")
                assert registered.code == Code.CREATED
            location = tuple((await peers["dev-1"].request(Code.POST, ("rd",), ("ep=dev-1", "lt=300"),
                                                           b"</3/0>,</5/0>")).opt.location_path)
            assert (await peers["dev-1"].request(Code.POST, location)).code == Code.CHANGED   # an Update
            shown = [record_json(r) for r in trace.records("dev-1")]
            coap = [r for r in shown if r["kind"] == "coap"]
            assert [(r["direction"], r["code"]) for r in coap if r.get("path") == "/" + "/".join(location)] == [
                ("in", "POST")]
            assert ("out", "2.04") in [(r["direction"], r["code"]) for r in coap]   # the answer, before encryption
            assert ("out", "2.01") in [(r["direction"], r["code"]) for r in coap]
            assert trace.records("dev-2") == [] and not trace.traced("dev-2")
            assert set(trace.addresses.values()) == {"dev-1"}
        finally:
            for peer in peers.values():
                peer.close()
            await server.stop()
            await ctx.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 60), debug=True)
