"""The CoAP firmware resource (Block2 with ETag and Size2) and the ``Lwm2mRoot`` dispatch, over loopback UDP."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import aiocoap
import pytest
from aiocoap.optiontypes import BlockOption

from device_emulator.links.coap import _bound_port, free_udp_port
from fota_server.adapters.blobs import FileBlobStore
from fota_server.adapters.coap_site import build_site
from fota_server.adapters.lwm2m_blocks import FirmwareBlockResource
from fota_server.adapters.lwm2m_root import Lwm2mRoot
from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings
from fota_server.clock import SystemClock
from fota_server.download_tokens import DownloadTokens

pytestmark = pytest.mark.integration

IMAGE = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes


async def _scenario(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    sha, _, _ = blobs.put(io.BytesIO(IMAGE), 1 << 20)
    server = Lwm2mServer(SystemClock(), Lwm2mSettings(read_device_data=False))
    tokens = DownloadTokens(b"k" * 32, SystemClock().now, 3600)
    root = Lwm2mRoot(server, FirmwareBlockResource(blobs, tokens), build_site(lambda: {"status": "ok"}))
    context = await aiocoap.Context.create_server_context(root, bind=("127.0.0.1", free_udp_port("127.0.0.1", None)),
                                                          transports=["udp6"])
    client = await aiocoap.Context.create_client_context()
    base = f"coap://127.0.0.1:{_bound_port(context)}"

    async def get(path: str, block: tuple[int, int] | None = None) -> aiocoap.Message:
        message = aiocoap.Message(code=aiocoap.GET, uri=base + path)
        if block is not None:
            message.opt.block2 = BlockOption.BlockwiseTuple(block[0], 0, block[1])
        return await client.request(message, handle_blockwise=False).response

    fw = f"/fw/{sha}/{tokens.issue('dev-1', sha)}"
    try:
        first = await get(fw, (0, 6))
        assert first.code == aiocoap.CONTENT and first.payload == IMAGE[:1024]
        assert first.opt.etag == hashlib.sha256(IMAGE).digest()[:8] and first.opt.size2 == len(IMAGE)
        assert first.opt.block2.more and first.opt.block2.size_exponent == 6
        later = await get(fw, (9, 4))  # out of order, smaller blocks
        assert later.payload == IMAGE[9 * 256:10 * 256] and later.opt.size2 == len(IMAGE)
        assert later.opt.etag == first.opt.etag
        last = await get(fw, (10, 6))
        assert last.payload == IMAGE[10240:] and not last.opt.block2.more
        assert (await get(fw, (11, 6))).code == aiocoap.BAD_OPTION
        assert (await get(f"/fw/{'0' * 64}/{tokens.issue('dev-1', '0' * 64)}")).code == aiocoap.NOT_FOUND
        assert (await get(f"/fw/not-a-hash/{tokens.issue('dev-1', 'not-a-hash')}")).code == aiocoap.NOT_FOUND
        for refused in (f"/fw/{sha}", f"/fw/{sha}/garbage", f"/fw/{sha}/{tokens.issue('dev-1', '0' * 64)}",
                        f"/fw/{'0' * 64}", "/fw"):
            assert (await get(refused, (0, 6))).code == aiocoap.UNAUTHORIZED, refused
        whole = await client.request(aiocoap.Message(code=aiocoap.GET, uri=f"{base}{fw}")).response
        assert whole.payload == IMAGE
        assert (await get("/health")).code == aiocoap.CONTENT  # everything else goes to the usual site

        register = aiocoap.Message(code=aiocoap.POST, uri=f"{base}/rd?ep=dev-1&lt=60", payload=b"</3/0>",
                                   content_format=40)
        created = await client.request(register).response
        assert created.code == aiocoap.CREATED and created.opt.location_path[0] == "rd"
        update = aiocoap.Message(code=aiocoap.POST, uri=f"{base}/rd/{created.opt.location_path[1]}")
        assert (await client.request(update).response).code == aiocoap.CHANGED
        unknown = aiocoap.Message(code=aiocoap.POST, uri=f"{base}/rd/nope")
        assert (await client.request(unknown).response).code == aiocoap.NOT_FOUND
        bad = aiocoap.Message(code=aiocoap.POST, uri=f"{base}/rd?lt=60", payload=b"</3/0>", content_format=40)
        assert (await client.request(bad).response).code == aiocoap.BAD_REQUEST
        old = aiocoap.Message(code=aiocoap.POST, uri=f"{base}/rd?ep=d&lwm2m=9.9", payload=b"", content_format=40)
        assert (await client.request(old).response).code == aiocoap.PRECONDITION_FAILED
        delete = aiocoap.Message(code=aiocoap.DELETE, uri=f"{base}/rd/{created.opt.location_path[1]}")
        assert (await client.request(delete).response).code == aiocoap.DELETED
        assert server.refused["registration request"] == 2
    finally:
        await client.shutdown()
        await server.stop()
        await context.shutdown()


def test_firmware_blocks_and_root_dispatch(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 30), debug=True)
