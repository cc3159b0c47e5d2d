"""The fast path on the server's socket: registrations and firmware blocks answered before aiocoap, with
duplicate detection; answers to the server's own requests go to its exchange table, and everything else
(other resources) still reaches aiocoap."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiocoap
import pytest

from device_emulator.links.coap import CoapLink, free_udp_port
from device_emulator.lwm2m.client import ClientConfig, LwM2MClient
from fota_server.adapters.blobs import FileBlobStore
from fota_server.adapters.coap_site import build_site
from fota_server.adapters.lwm2m_blocks import FirmwareBlockResource
from fota_server.adapters.lwm2m_update_session import UpdateSession
from fota_server.adapters.lwm2m_fastpath import install_fast_path
from fota_server.adapters.lwm2m_root import LeanContext, Lwm2mRoot
from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings
from fota_server.clock import SystemClock
from fota_server.download_tokens import DownloadTokens
from fota_server.protocol.image import build_image
from fota_server.protocol.lwm2m import firmware_messages as fm
from fota_server.protocol.lwm2m.coap_message import ACK, CON, CoapMessage, decode_message, encode_message
from fota_server.protocol.lwm2m.firmware import FirmwareUpdate
from fota_server.protocol.lwm2m.paths import LwM2MPath as P

pytestmark = pytest.mark.integration
IMAGE = build_image("FOTA Emulator", "EMU-LWM2M", "2.0.0", 25_000)


class _Raw(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.answers.put_nowait(data)


async def _scenario(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    sha, _, _ = blobs.put(io.BytesIO(IMAGE), 1 << 20)
    server = Lwm2mServer(SystemClock(), Lwm2mSettings(read_device_data=False))
    tokens = DownloadTokens(b"k" * 32, SystemClock().now, 3600)
    firmware = FirmwareBlockResource(blobs, tokens)
    root = Lwm2mRoot(server, firmware, build_site(lambda: {"status": "ok"}))
    context = await LeanContext.create_server_context(root, bind=("127.0.0.1", free_udp_port("127.0.0.1", None)),
                                                      transports=["simplesocketserver"])
    server.attach(context)
    fast = install_fast_path(context, server, firmware)
    port = fast.port
    loop = asyncio.get_running_loop()
    transport, raw = await loop.create_datagram_endpoint(_Raw, remote_addr=("127.0.0.1", port))
    link = CoapLink(LwM2MClient(ClientConfig("urn:imei:1")), f"coap://127.0.0.1:{port}")
    try:
        register = encode_message(CoapMessage(CON, 0x02, 4242, b"\x07", ((11, b"rd"), (12, b"\x28"),
                                                                          (15, b"ep=raw-1"), (15, b"lt=60")),
                                              b"</3/0>,</5/0>"))
        transport.sendto(register)
        first = await asyncio.wait_for(raw.answers.get(), 5)
        transport.sendto(register)  # a retransmission: same answer, no second registration
        second = await asyncio.wait_for(raw.answers.get(), 5)
        assert first == second
        answer = decode_message(first)
        assert (answer.mtype, answer.code, answer.mid, answer.token) == (ACK, 0x41, 4242, b"\x07")
        assert answer.values(8)[0] == b"rd" and len(server.book) == 1
        garbled = encode_message(CoapMessage(CON, 0x02, 4243, b"", ((11, b"rd"), (15, b"lt=60")), b"</3/0>"))
        transport.sendto(garbled)
        assert decode_message(await asyncio.wait_for(raw.answers.get(), 5)).code == 0x80  # 4.00
        for mid, path in enumerate(((b"fw", sha.encode()), (b"fw", sha.encode(), b"forged"))):
            transport.sendto(encode_message(CoapMessage(CON, 0x01, 4300 + mid, b"", tuple((11, p) for p in path))))
            assert decode_message(await asyncio.wait_for(raw.answers.get(), 5)).code == 0x81  # 4.01: no valid token

        await link.start()
        assert await link.wait_until(lambda: link.client.location != (), 10)
        reply = await server.downlink.request("urn:imei:1", "GET", P(3, 0, 3), timeout_s=10)
        assert (reply.code, reply.payload) == ("2.05", b"1.0.0")  # answered through the exchange table
        assert server.downlink.links["urn:imei:1"].remote[0] == "127.0.0.1"  # its socket address, no aiocoap remote
        assert fast.exchanges.endpoint.open_exchanges == 0

        uri = f"coap://127.0.0.1:{port}/fw/{sha}/{tokens.issue('1', sha)}"
        machine = FirmwareUpdate(fm.FirmwareJob("2.0.0", len(IMAGE), (uri,)),
                                 fm.FirmwareTimeouts(poll_interval_s=0.5, command_s=10, download_s=20, update_s=20))
        session = UpdateSession(server, "urn:imei:1", machine, lambda: IMAGE)
        server.listeners.append(lambda event: session.registered())
        events: list[fm.FirmwareEvent] = []
        await asyncio.wait_for(session.run(events.append), 40)
        assert events[-1] == fm.UpdateSucceeded("2.0.0")
        assert firmware.blocks_served >= len(IMAGE) // 1024

        client = await aiocoap.Context.create_client_context()
        health = await client.request(aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{port}/health")).response
        assert health.code == aiocoap.CONTENT
        await client.shutdown()
        assert fast.answered >= 5 and fast.passed_on == 1  # only the /health request went to aiocoap
    finally:
        transport.close()
        await link.stop(deregister=False)
        await server.stop()
        await context.shutdown()


def test_fast_path_registrations_blocks_and_fallback(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 60), debug=True)


async def _endpoint_scenario(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from fota_server.adapters.lwm2m_root import lwm2m_endpoint
    from fota_server.app import build_services
    from fota_server.config import Config
    from fota_server.records import Device
    from fota_server.store.registrations_sqlite import SqliteRegistrationStore

    services = build_services(Config(db_path=str(tmp_path / "fota.db")))
    services.auth.create_account("acme")
    services.db.devices.add_device(Device("490154203237518", "acme", "LWM2M", created_at=datetime.now(timezone.utc)))
    endpoint = lwm2m_endpoint(services, build_site(lambda: {"status": "ok"}))
    reported = asyncio.Event()
    endpoint.server.report_listeners.append(lambda ep, report: reported.set())
    port = await endpoint.start("127.0.0.1", free_udp_port("127.0.0.1", None))
    link = CoapLink(LwM2MClient(ClientConfig("urn:imei:490154203237518", cell=(262, 1, 77, 4242))),
                    f"coap://127.0.0.1:{port}")
    try:
        await link.start()
        assert await link.wait_until(lambda: link.client.location != (), 10)
        await asyncio.wait_for(reported.wait(), 10)
        device = services.db.devices.find_device("490154203237518")
        assert device is not None and device.serving_cell == "262-1-77-4242" and device.firmware_version == "1.0.0"
    finally:
        await link.stop(deregister=False)
        await endpoint.stop()
    assert [r.endpoint for r in SqliteRegistrationStore(services.db).load_all()] == ["urn:imei:490154203237518"]
    services.db.close()


def test_endpoint_built_from_the_services(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_endpoint_scenario(tmp_path), 60), debug=True)
