"""Hostile input against the real server process: whatever arrives on the CoAP port, the HTTP device
endpoints, DDI, ``/dm`` or the management API is answered with a 4.xx / 4xx (never 5.xx / 5xx), the
server keeps serving, and its output holds no Traceback. A device that answers the server's own reads
with garbage harms nothing but its own record: other devices register and report as usual.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from pathlib import Path
from typing import Any, Iterator

import aiocoap
import aiocoap.resource
import httpx
import pytest

from device_emulator.links.coap import CoapLink, free_udp_port
from device_emulator.lwm2m.client import ClientConfig, LwM2MClient
from fota_server.protocol.image import build_image
from fota_server.protocol.lwm2m.coap_message import CON, CoapMessage, decode_message, encode_message
from fota_server.protocol.lwm2m.tlv import Tlv, TlvKind, encode_tlv
from fota_server.protocol.omadm.tree import Element
from fota_server.protocol.omadm.wbxml import encode_wbxml
from fota_server.protocol.omadm.xmlcodec import encode_xml
from tests.serverproc import ServerProcess, cli, create_account, session_headers

pytestmark = pytest.mark.integration

ACCOUNT = "0000123456-00001"
DEEP = 100_000

# JSON texts that broke decoders: deep nesting, numbers past float and int limits, NaN, lone surrogates,
# digits that str.isdigit takes and int refuses, UTC dates that overflow, and bytes that are not UTF-8.
HOSTILE_JSON: tuple[bytes, ...] = (
    b"[" * DEEP, b'{"a":' * DEEP, b'{"firmwareVersion": "1", "x": ' + b"[" * DEEP,
    b'{"firmwareVersion": 1e400}', b'{"firmwareVersion": "1", "make": "\\ud800"}',
    b'{"updateId": 1e400, "state": "failure"}', b'{"updateId": NaN, "state": "failure"}',
    b'{"updateId": ' + b"9" * 4000 + b', "state": "failure"}', b'{"updateId": ' + b"9" * 5000 + b"}",
    b'{"updateId": 1, "state": "failure", "code": -1e400, "detail": "\\udfff"}',
    b'{"logs": [{"logTime": "0001-01-01T00:00:00+01:00"}]}', b'{"logs": [{"logTime": "9999-12-31T23:59:59-01:00"}]}',
    b'{"logs": [{"logTime": "\xc2\xb2026-01-01T00:00:00Z"}]}', b'{"logs": [{"logTime": "2026-01-01", "eventLog": "\\ud800"}]}',
    b'{"status": {"execution": "closed", "details": ["\\ud800"], "code": 1e400}}',
    b'{"status": {"execution": "proceeding", "result": {"progress": {"cnt": ' + b"9" * 4000 + b', "of": 1}}}}',
    b'{"mode": "merge", "data": {"\\ud800": "v"}}', b'{"version": "\\ud800"}', b"\xff\xfe\x00", b"\xc0\x80",
    "\ufeff{}".encode("utf-16"), b"",
)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[ServerProcess, dict[str, Any], str]]:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACCOUNT)
    for device_id, protocol in (("http-1", "HTTP"), ("garbage-1", "LWM2M"), ("good-1", "LWM2M")):
        cli("device", "add", device_id, "--account", ACCOUNT, "--protocol", protocol, db=db)
    token = json.loads(cli("device", "token", "http-1", "--account", ACCOUNT, db=db).stdout)["token"]
    server = ServerProcess(db).start()
    try:
        yield server, creds, token
    finally:
        server.kill()
        print("--- server output ---\n" + "".join(server.output))  # shown when a test fails


def _served_normally(server: ServerProcess) -> None:
    health = httpx.get(f"{server.base_url}/health", timeout=30)
    assert health.status_code == 200, health.text
    assert server.proc is not None and server.proc.poll() is None
    assert not any("Traceback" in line for line in server.output), "".join(server.output)


def _refused(answer: httpx.Response, what: object) -> None:
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])


def test_http_device_ddi_and_dm_endpoints_refuse_hostile_bodies(lab: tuple[ServerProcess, dict[str, Any], str]) -> None:
    server, creds, token = lab
    bearer = {"Authorization": f"Bearer {token}"}
    target = {"Authorization": f"TargetToken {token}"}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        headers = session_headers(server.base_url, creds)
        assert client.put(f"/api/fota/v2/logging/{ACCOUNT}/devices/http-1", headers=headers).status_code == 200
        for path in ("checkin", "status", "logs"):
            for body in HOSTILE_JSON:
                _refused(client.post(f"/http/v1/devices/http-1/{path}", content=body, headers=bearer), (path, body[:60]))
        ddi = f"/{ACCOUNT}/controller/v1/http-1"
        for action in ("\u00b2", "1\u00b2", "\u0661", "9" * 40, "-1"):
            for suffix in ("deploymentBase/{}", "deploymentBase/{}/feedback", "cancelAction/{}/feedback",
                           "installedBase/{}"):
                url = f"{ddi}/{suffix.format(action)}"
                answer = client.post(url, json={"status": {"execution": "closed"}}, headers=target) \
                    if "feedback" in suffix else client.get(url, headers=target)
                _refused(answer, url)
        for body in HOSTILE_JSON:
            _refused(client.put(f"{ddi}/configData", content=body, headers=target), ("configData", body[:60]))
            _refused(client.put(f"{ddi}/installedBase", content=body, headers=target), ("installedBase", body[:60]))
        for body, content_type in _dm_bodies():
            _refused(client.post("/dm", content=body, headers={"Content-Type": content_type}), body[:80])
        assert client.post("/http/v1/devices/http-1/checkin", json={"firmwareVersion": "1.0.0"},
                           headers=bearer).status_code == 200
    _served_normally(server)


def _dm_tree(msg_id: str, cmd_id: str, size: str) -> Element:
    header = Element("SyncHdr", (Element("VerDTD", text="1.2"), Element("VerProto", text="DM/1.2"),
                                 Element("SessionID", text="1"), Element("MsgID", text=msg_id),
                                 Element("Target", (Element("LocURI", text="http://server/dm"),)),
                                 Element("Source", (Element("LocURI", text="IMEI:490154203237518"),)),
                                 Element("Meta", (Element("MaxMsgSize", text=size),))))
    alert = Element("Alert", (Element("CmdID", text=cmd_id), Element("Data", text="1201")))
    return Element("SyncML", (header, Element("SyncBody", (alert, Element("Final")))))


def _dm_bodies() -> Iterator[tuple[bytes, str]]:
    xml, wbxml = "application/vnd.syncml.dm+xml", "application/vnd.syncml.dm+wbxml"
    for numbers in (("\u00b2", "1", "1"), ("1", "\u00b2", "1"), ("1", "1", "\u0661"), ("9" * 30, "1", "1"),
                    ("1", "1", "4294967296")):
        tree = _dm_tree(*numbers)
        yield encode_xml(tree), xml
        yield encode_wbxml(tree), wbxml
    yield b"<SyncML>" + b"<SyncBody>" * DEEP, xml
    yield b"\x02\x9f\x53\x6a\x00" + b"\x6d" * DEEP, wbxml
    yield b'<!DOCTYPE x [<!ENTITY a "aaaa">]><SyncML>&a;</SyncML>', xml
    yield b"<SyncML><SyncHdr><MsgID>&#xD800;</MsgID></SyncHdr></SyncML>", xml
    yield b"\x02\x9f\x53\x6a\xff\xff\xff\xff\x0f", wbxml
    yield b"\x03\x00\x00\x6a\x05-//SYNCML//DTD SyncML 1.2//EN\x00\x6d\x01", wbxml
    yield bytes(random.Random(3).randrange(256) for _ in range(300)), xml
    yield "<SyncML>\ud800</SyncML>".encode("utf-8", "surrogatepass"), xml


def _api_bodies() -> Iterator[bytes]:
    template = {"campaignName": "c", "firmwareName": "fw", "firmwareFrom": "1", "firmwareTo": "2",
                "protocol": "LWM2M", "startDate": "2026-01-01", "endDate": "2026-01-02", "deviceList": ["good-1"],
                "campaignTimeWindowList": [{"startTime": 1, "endTime": 2}], "deviceIds": ["good-1"], "url": "x",
                "name": "n", "username": "u", "password": "p"}
    yield from HOSTILE_JSON[:3]
    text = json.dumps(template)
    for old, new in (('"startTime": 1', '"startTime": 1e400'), ('"endTime": 2', '"endTime": -1e400'),
                     ('"startTime": 1', '"startTime": NaN'), ('"startTime": 1', '"startTime": ' + "9" * 4000),
                     ('"2026-01-01"', '"\u00b2026-01-01"'), ('"2026-01-02"', '"9999-12-31T23:59:59-01:00"'),
                     ('"campaignName": "c"', '"campaignName": "\\ud800"'), ('"good-1"', '"\\udc00"'),
                     ('"fw"', '"fw\\ud800"'), ('"deviceList": ["good-1"]', '"deviceList": ' + "[" * DEEP)):
        yield text.replace(old, new).encode("utf-8", "surrogatepass")


def test_management_api_refuses_hostile_json(lab: tuple[ServerProcess, dict[str, Any], str]) -> None:
    server, creds, _ = lab
    image = server.db.parent / "fw.bin"  # a real package, so that a campaign body is read past its name
    image.write_bytes(build_image("Acme", "Widget", "2", 64))
    cli("firmware", "add", str(image), "--name", "fw", "--make", "Acme", "--model", "Widget", "--from", "1",
        "--to", "2", "--protocol", "LWM2M", db=server.db)
    paths = [("POST", f"/api/fota/v3/campaigns/firmware/{ACCOUNT}"), ("POST", f"/api/fota/v2/campaigns/{ACCOUNT}"),
             ("POST", f"/api/fota/v3/devices/{ACCOUNT}"), ("POST", f"/api/fota/v1/callbacks/{ACCOUNT}"),
             ("PUT", f"/api/fota/v3/firmware/{ACCOUNT}/devices"), ("POST", f"/api/fota/v3/licenses/{ACCOUNT}/assign"),
             ("PUT", f"/api/fota/v2/logging/{ACCOUNT}/devices"), ("POST", "/api/m2m/v1/session/login")]
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        headers = session_headers(server.base_url, creds)
        for method, path in paths:
            for body in _api_bodies():
                answer = client.request(method, path, content=body,
                                        headers={**headers, "Content-Type": "application/json"})
                _refused(answer, (method, path, body[:100]))
        for index in ("\u00b2", "1\u00b2", "\u0661", "9" * 30, "-1"):
            for path in (f"/api/fota/v1/devices/{ACCOUNT}/index/{index}", f"/api/fota/v1/licenses/{ACCOUNT}/index/{index}",
                         f"/api/fota/v1/licenses/{ACCOUNT}/cancel/index/{index}",
                         f"/api/fota/v1/reports/{ACCOUNT}/status/Pending/index/{index}"):
                _refused(client.get(path, headers=headers), path)
            _refused(client.get(f"/api/fota/v2/licenses/{ACCOUNT}/cancel", params={"startIndex": index},
                                headers=headers), index)
        assert client.get(f"/api/fota/v3/licenses/{ACCOUNT}", headers=headers).status_code < 500
    _served_normally(server)


# --- CoAP -------------------------------------------------------------------------------------------------

class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.answers.put_nowait(data)


def _request(mid: int, code: int, options: tuple[tuple[int, bytes], ...], payload: bytes = b"") -> bytes:
    return encode_message(CoapMessage(CON, code, mid, struct.pack(">H", mid), options, payload))


def _hostile_requests() -> Iterator[bytes]:
    """CoAP requests that parse (each gets an answer) with garbage options, queries and payloads."""
    rd, cf40 = (11, b"rd"), (12, b"\x28")
    payloads = [b"<", b"</3/0", b'</>;rt="oma.lwm2m";ct=\xc2\xb2', b"</3/65536>,</65535/0>", b"\xff\xfe",
                b"</3/0>;" + b";a" * 100, b"<" + b"/1" * 3000 + b">", b'</3/0>;ver="\\', b",,,"]
    queries = [[b"ep=x&lt=\xc2\xb2"], [b"lt=60"], [b"ep=garbage-1", b"lt=\xc2\xb2"],
               [b"ep=garbage-1", b"lt=99999999999"], [b"ep=garbage-1", b"b=\xd9\xa1"], [b"ep=garbage-1", b"lwm2m=9"],
               [b"ep=garbage-1", b"ep=garbage-1"], [b"ep=garbage-1"] * 20, [b"ep=" + b"a" * 255], [b"=x"]]
    mid = 100
    for payload in payloads:
        mid += 1
        yield _request(mid, 0x02, (rd, cf40, (15, b"ep=garbage-1")), payload)
    for query in queries:
        mid += 1
        yield _request(mid, 0x02, (rd, cf40, *((15, q) for q in query)), b"</3/0>")
    for options in (((11, b"rd"), (11, b"\xc2\xb2")), ((11, b"fw"), (11, b"x" * 64), (23, b"\xff\xff\xff\xff\xff")), ((11, b"fw"), (23, b"\x0f")),
                    ((11, b"3"), (11, b"0")), ((11, b"rd"), (12, b"\xff\xff\xff\xff\xff\xff")),
                    ((11, b"rd"), (12, b"\x00\x2a")), ((11, b"rd"), (27, b"\x0f")), ((11, b"rd"), (60, b"\xff" * 5)),
                    ((11, b"rd"), (15, b"ep=garbage-1"), (27, b"\x08"), (12, b"\x28")), ((11, b"health"), (17, b"\xff" * 9))):
        for code in (0x01, 0x02, 0x03, 0x04):
            mid += 1
            yield _request(mid, code, options, b"</3/0>" if code in (0x02, 0x03) else b"")


def _garbage_datagrams(count: int) -> Iterator[bytes]:
    rng = random.Random(12)
    for _ in range(count):
        yield bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    yield b"\x40\x02\x00\x01" + b"\xd0"  # option header truncated
    yield b"\x48\x02\x00\x02"  # token length past the end
    yield b"\x40\x02\x00\x03\xff"  # payload marker, no payload
    yield b"\x40\x02\x00\x04\xfe\x01\x02"  # option nibble 15
    for options in (((11, b"rd"), (15, b"ep=\xff")), ((11, b"rd"), (11, b"\xff")), ((11, b"fw"), (11, b"\xff"))):
        yield _request(5, 0x02, options, b"</3/0>")  # text options that are not UTF-8: dropped as unparsable


async def _exchange(transport: asyncio.DatagramTransport, raw: _Udp, request: bytes) -> CoapMessage:
    """Send a CON request and return its response (piggy-backed, or separate after an empty ACK),
    retransmitting as a CoAP client does (RFC 7252 §4.2): a burst of garbage may overflow the socket buffer."""
    mid = struct.unpack(">H", request[2:4])[0]
    token = struct.pack(">H", mid)
    for _ in range(8):
        transport.sendto(request)
        try:
            while True:
                message = decode_message(await asyncio.wait_for(raw.answers.get(), 3))
                if message.code != 0 and (message.mid == mid or message.token == token):
                    return message
        except TimeoutError:
            continue
    raise AssertionError(f"no answer to {decode_message(request)}")


async def _coap_scenario(port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, raw = await loop.create_datagram_endpoint(_Udp, remote_addr=("127.0.0.1", port))
    try:
        for datagram in _garbage_datagrams(300):
            transport.sendto(datagram)
        for request in _hostile_requests():
            answer = await _exchange(transport, raw, request)
            assert answer.code >> 5 in (2, 4), (request, answer)  # 2.xx or 4.xx, never 5.xx
    finally:
        transport.close()


def test_coap_port_refuses_malformed_datagrams_and_requests(lab: tuple[ServerProcess, dict[str, Any], str]) -> None:
    server, _, _ = lab
    asyncio.run(asyncio.wait_for(_coap_scenario(server.ports["coap"]), 120), debug=True)
    _served_normally(server)


# --- a device that answers the server's reads with garbage -----------------------------------------------

_GARBAGE_TLV = encode_tlv([
    Tlv(TlvKind.RESOURCE, 0, b"\xff\xfe"),  # Manufacturer: not UTF-8
    Tlv(TlvKind.RESOURCE, 9, b"\x01\x02\x03"),  # Battery Level: an integer of 3 bytes
    Tlv(TlvKind.RESOURCE, 0xFFFF, b"x"),  # an id above the object model's range
]) + b"\xc8\x03"  # and a truncated header


class _Garbage(aiocoap.resource.Resource):  # type: ignore[misc]  # aiocoap has no type hints
    def __init__(self, payload: bytes, content_format: int, asked: asyncio.Event) -> None:
        super().__init__()
        self.payload = payload
        self.content_format = content_format
        self.asked = asked

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        self.asked.set()
        return aiocoap.Message(code=aiocoap.CONTENT, payload=self.payload, content_format=self.content_format)


async def _garbage_device_scenario(server: ServerProcess, db: Path) -> None:
    port = server.ports["coap"]
    asked_3, asked_4 = asyncio.Event(), asyncio.Event()
    site = aiocoap.resource.Site()
    site.add_resource(["3", "0"], _Garbage(_GARBAGE_TLV, 11542, asked_3))
    site.add_resource(["4", "0"], _Garbage(b"[" * 1400, 110, asked_4))  # past Python's recursion limit
    device = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", free_udp_port("127.0.0.1", None)))
    good = CoapLink(LwM2MClient(ClientConfig("good-1", cell=(262, 1, 77, 4242))), f"coap://127.0.0.1:{port}")
    try:
        register = aiocoap.Message(code=aiocoap.POST, uri=f"coap://127.0.0.1:{port}/rd?ep=garbage-1&lt=60&b=U",
                                   payload=b"</3/0>,</4/0>,</5/0>", content_format=40)
        answer = await asyncio.wait_for(device.request(register).response, 20)
        assert answer.code == aiocoap.CREATED
        await asyncio.wait_for(asyncio.gather(asked_3.wait(), asked_4.wait()), 30)

        await good.start()
        assert await good.wait_until(lambda: good.client.location != (), 20)
        for _ in range(300):  # the other device's reads complete and land in its record, as usual
            listing = await asyncio.to_thread(cli, "device", "list", "--account", ACCOUNT, db=db)
            listed = {d["deviceId"]: d for d in json.loads(listing.stdout)}
            if listed["good-1"]["firmwareVersion"] == "1.0.0":
                break
            await asyncio.sleep(0.1)
        assert listed["good-1"]["firmwareVersion"] == "1.0.0" and listed["good-1"]["cell"] == "262-1-77-4242"
        assert (listed["garbage-1"]["make"], listed["garbage-1"]["firmwareVersion"]) == ("", "")
    finally:
        await good.stop(deregister=False)
        await device.shutdown()


def test_garbage_answers_to_the_servers_reads_harm_only_that_device(
        lab: tuple[ServerProcess, dict[str, Any], str]) -> None:
    server, _, _ = lab
    asyncio.run(asyncio.wait_for(_garbage_device_scenario(server, server.db), 120), debug=True)
    _served_normally(server)
