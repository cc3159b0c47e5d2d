"""Download tokens through ``fota-server run``: ``/fw`` over HTTP and CoAP refuses a request without a valid
token (401 / 4.01), a valid one downloads and resumes, and an LwM2M device registered over DTLS is handed a
``coaps://`` Package URI bound to it, downloads over its session and is updated.

Tokens for the refusal cases are minted in the test with the server's own key (``<data dir>/download-key``)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import ssl
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import aiocoap
import httpx
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption as AiocoapBlock

from device_emulator.lwm2m.client import ClientConfig, LwM2MClient
from device_emulator.lwm2m.firmware import DeviceFirmware
from device_emulator.lwm2m.messages import (
    DeviceRequest, NotifyObservers, Reboot, SendDeregister, SendRegister, SendUpdate, StartDownload,
)
from fota_server.download_tokens import DownloadTokens, TokenCheck
from fota_server.protocol.image import build_image
from fota_server.protocol.lwm2m.objects import ProtocolSupport
from fota_server.protocol.lwm2m.paths import LwM2MPath
from tests.integration.test_dtls_fixtures import DtlsPeer
from tests.serverproc import ServerProcess, cli, create_account, session_headers

pytestmark = pytest.mark.integration
ACC = "0000123456-00001"
DEVICE = "490154203237518"
MAKE, MODEL = "Acme", "Sensor-1"
PSK_IDENTITY, PSK = "lab-modem-1", b"secretPSK-modem1"


def _tokens(db: Path, ttl_s: int = 3600) -> DownloadTokens:
    """Tokens under the key of the server using ``db`` (created by its first start)."""
    key = (db.parent / f"{db.name}-data" / "download-key").read_bytes()
    return DownloadTokens(key, lambda: datetime.now(timezone.utc), ttl_s)


def session_headers_over(client: httpx.Client, base: str, creds: dict[str, Any]) -> dict[str, str]:
    """``session_headers`` through ``client`` (which trusts the server's certificate)."""
    token = client.post(f"{base}/api/ts/v1/oauth2/token", auth=(creds["client_id"], creds["client_secret"]),
                        data={"grant_type": "client_credentials"}).json()["access_token"]
    session = client.post(f"{base}/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                          json={"username": creds["username"], "password": creds["password"]}).json()["sessionToken"]
    return {"Authorization": f"Bearer {token}", "VZ-M2M-Token": session}


def _add_image(db: Path, protocol: str, version_to: str = "1.1.0", size: int = 40_000) -> bytes:
    image = build_image(MAKE, MODEL, version_to, size)
    path = db.parent / f"{protocol}-{version_to}.bin"
    path.write_bytes(image)
    cli("firmware", "add", str(path), "--name", f"{MAKE}-{MODEL}-{protocol}-{version_to}", "--make", MAKE,
        "--model", MODEL, "--from", "1.0.0", "--to", version_to, "--protocol", protocol, db=db)
    return image


def test_http_download_needs_a_valid_token(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    create_account(db, ACC)
    image = _add_image(db, "HTTP", size=300_000)
    other = _add_image(db, "HTTP", "1.2.0")
    sha, other_sha = hashlib.sha256(image).hexdigest(), hashlib.sha256(other).hexdigest()
    server = server_factory(db)
    tokens = _tokens(db)
    url = f"{server.base_url}/fw/sha256/{sha}"
    with httpx.Client(timeout=30) as client:
        for params in ({}, {"t": ""}, {"t": "not-a-token"}, {"t": tokens.issue(DEVICE, other_sha)},
                       {"t": tokens.issue(DEVICE, sha, expiry=int(time.time()) - 60)}, {"t": "f" * 5000}):
            refused = client.get(url, params=params)
            assert refused.status_code == 401, params
            assert refused.json()["error"] == "unauthorized" and refused.json()["detail"]
        expired = client.get(url, params={"t": tokens.issue(DEVICE, sha, expiry=int(time.time()) - 60)})
        assert "expired" in expired.json()["detail"]

        token = tokens.issue(DEVICE, sha)
        received = bytearray()
        with client.stream("GET", url, params={"t": token}) as response:
            assert response.status_code == 200
            etag = response.headers["etag"]
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) >= 100_000:
                    break  # the connection is cut with the body half read
        rest = client.get(url, params={"t": token}, headers={"Range": f"bytes={len(received)}-", "If-Range": etag})
        assert rest.status_code == 206 and bytes(received) + rest.content == image
    server.stop()

    again = server_factory(db)  # the key outlives a restart: a URL handed out before works after
    with httpx.Client(timeout=30) as client:
        resumed = client.get(f"{again.base_url}/fw/sha256/{sha}", params={"t": token}, headers={"Range": "bytes=10-"})
        assert resumed.status_code == 206 and resumed.content == image[10:]


def test_with_https_a_checkin_hands_out_an_https_url_with_a_token(
        tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACC)
    device = "356938035643802"
    cli("device", "add", device, "--account", ACC, "--protocol", "HTTP", "--make", MAKE, "--model", MODEL,
        "--firmware", "1.0.0", "--license", db=db)
    device_token = json.loads(cli("device", "token", device, "--account", ACC, db=db).stdout)["token"]
    image = _add_image(db, "HTTP")
    server = server_factory(db, "--https")
    trust = ssl.create_default_context(cafile=str(db.parent / f"{db.name}-data" / "tls" / "https-cert.pem"))
    base = f"https://127.0.0.1:{server.ports['http']}"
    with httpx.Client(timeout=30, verify=trust) as client:
        headers = {"Authorization": f"Bearer {device_token}"}
        today, end = date.today().isoformat(), (date.today() + timedelta(days=3)).isoformat()
        campaign = client.post(f"{base}/api/fota/v2/campaigns/{ACC}", headers=session_headers_over(client, base, creds),
                               json={"softwareName": f"{MAKE}-{MODEL}-HTTP-1.1.0", "softwareFrom": "1.0.0",
                                     "softwareTo": "1.1.0", "distributionType": "HTTP", "startDate": today,
                                     "endDate": end, "deviceList": [device]}).json()
        assert "id" in campaign, campaign
        update: dict[str, Any] | None = None
        for _ in range(120):  # the engine offers the update within moments of the campaign's start
            answer = client.post(f"{base}/http/v1/devices/{device}/checkin", headers=headers,
                                 json={"firmwareVersion": "1.0.0", "make": MAKE, "model": MODEL})
            update = answer.json().get("update")
            if update:
                break
            time.sleep(0.25)
        assert update is not None
        url, _, token = update["url"].partition("?t=")
        assert url.startswith(f"{base}/fw/") and _tokens(db).check(token, update["sha256"], device) is TokenCheck.OK
        assert client.get(update["url"]).content == image
        assert client.get(url).status_code == 401


def test_coap_download_needs_a_valid_token(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    create_account(db, ACC)
    sha = hashlib.sha256(_add_image(db, "LWM2M")).hexdigest()
    server = server_factory(db)
    tokens = _tokens(db)
    base = f"coap://127.0.0.1:{server.ports['coap']}/fw/{sha}"

    async def scenario() -> None:
        client = await aiocoap.Context.create_client_context()
        try:
            async def get(uri: str) -> aiocoap.Message:
                message = aiocoap.Message(code=aiocoap.GET, uri=uri)
                message.opt.block2 = AiocoapBlock.BlockwiseTuple(0, 0, 6)
                return await asyncio.wait_for(client.request(message, handle_blockwise=False).response, 30)

            for uri in (base, f"{base}/garbage", f"{base}/{tokens.issue(DEVICE, '0' * 64)}",
                        f"{base}/{tokens.issue(DEVICE, sha, expiry=int(time.time()) - 60)}"):
                assert (await get(uri)).code == Code.UNAUTHORIZED, uri
            ok = await get(f"{base}/{tokens.issue(DEVICE, sha)}?sig=ignored")
            assert ok.code == Code.CONTENT and len(ok.payload) == 1024 and ok.opt.block2.more
        finally:
            await client.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 60), debug=True)


def _dotted(code: aiocoap.Code) -> str:
    return f"{int(code) >> 5}.{int(code) & 31:02d}"


def _code(dotted: str) -> aiocoap.Code:
    major, _, minor = dotted.partition(".")
    return aiocoap.Code(int(major) << 5 | int(minor))


_METHODS = {Code.GET: "GET", Code.PUT: "PUT", Code.POST: "POST", Code.DELETE: "DELETE"}


class DtlsDevice:
    """The emulator's LwM2M client machine on one DTLS-PSK session (the emulator's own link is plain CoAP):
    it registers, answers the server's requests, notifies observers and pulls the Package URI it is given,
    block by block over the same session."""

    def __init__(self, peer: DtlsPeer, client: LwM2MClient, coaps_port: int) -> None:
        self.peer, self.client, self.coaps_port = peer, client, coaps_port
        self.package_uris: list[str] = []
        self.changed = asyncio.Event()
        self._pending: dict[bytes, asyncio.Future[aiocoap.Message]] = {}
        self._observed: dict[tuple[str, ...], tuple[bytes, int | None]] = {}
        self._tokens, self._mids, self._seq = itertools.count(1), itertools.count(0x3000), itertools.count(2)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._t0 = 0.0

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    async def run(self, done: Callable[[], bool], timeout_s: float) -> None:
        self._t0 = asyncio.get_running_loop().time()
        self.client.start(self.now())
        self._spawn(self._read())
        try:
            async with asyncio.timeout(timeout_s):
                while not done():
                    self._flush()
                    deadline = self.client.next_deadline()
                    self.changed.clear()
                    try:  # wait for the device's next message or its machine's next deadline
                        await asyncio.wait_for(self.changed.wait(), 1.0 if deadline is None else
                                               min(1.0, max(0.0, deadline - self.now())))
                    except TimeoutError:
                        pass
                    self.client.on_timer(self.now())
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def request(self, code: aiocoap.Code, path: tuple[str, ...], query: tuple[str, ...] = (),
                      payload: bytes = b"", block: int | None = None) -> aiocoap.Message:
        token = next(self._tokens).to_bytes(3, "big")
        message = aiocoap.Message(code=code, uri_path=path, uri_query=query, payload=payload)
        if payload:
            message.opt.content_format = 40
        if block is not None:
            message.opt.block2 = AiocoapBlock.BlockwiseTuple(block, 0, 6)
        message.mtype, message.mid, message.token = Type.CON, next(self._mids), token
        answer = self._pending[token] = asyncio.get_running_loop().create_future()
        self.peer.send(message)
        return await asyncio.wait_for(answer, 20)

    async def _read(self) -> None:
        while True:
            try:
                message = await self.peer.next_message(timeout_s=1.0)
            except asyncio.QueueEmpty:
                continue
            if message.code.is_response():
                if message.mtype == Type.CON:  # a separate response: acknowledged
                    empty = aiocoap.Message(code=Code.EMPTY)
                    empty.mtype, empty.mid = Type.ACK, message.mid
                    self.peer.send(empty)
                waiting = self._pending.pop(message.token, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(message)
            elif message.code.is_request():
                self._serve(message)
            self.changed.set()

    def _serve(self, request: aiocoap.Message) -> None:
        path, observe = tuple(request.opt.uri_path), request.opt.observe
        answer = self.client.handle(DeviceRequest(
            _METHODS.get(request.code, "?"), path, tuple(request.opt.uri_query), bytes(request.payload),
            request.opt.content_format, request.opt.accept, observe), self.now())
        response = aiocoap.Message(code=_code(answer.code), payload=answer.payload)
        if answer.content_format is not None:
            response.opt.content_format = answer.content_format
        if observe == 0 and answer.code == "2.05":
            self._observed[path] = (request.token, request.opt.accept)
            response.opt.observe = next(self._seq)
        elif observe == 1:
            self._observed.pop(path, None)
        response.mtype, response.mid, response.token = Type.ACK, request.mid, request.token
        self.peer.send(response)

    def _flush(self) -> None:
        for uplink in self.client.to_send():
            if isinstance(uplink, SendRegister):
                self._spawn(self._register(uplink))
            elif isinstance(uplink, SendUpdate):
                self._spawn(self._update(uplink))
            elif isinstance(uplink, SendDeregister):
                self.client.on_deregister_reply("2.02", self.now())
            elif isinstance(uplink, Reboot):
                self._observed.clear()  # the session stays up: a reboot here only forgets observations
            elif isinstance(uplink, NotifyObservers):
                self._notify(uplink.paths)
            elif isinstance(uplink, StartDownload):
                self._spawn(self._download(uplink.uri))

    async def _register(self, uplink: SendRegister) -> None:
        answer = await self.request(Code.POST, ("rd",), uplink.query, uplink.payload)
        self.client.on_register_reply(_dotted(answer.code), tuple(answer.opt.location_path), self.now())
        self.changed.set()

    async def _update(self, uplink: SendUpdate) -> None:
        answer = await self.request(Code.POST, uplink.location, uplink.query, uplink.payload)
        self.client.on_update_reply(_dotted(answer.code), self.now())
        self.changed.set()

    def _notify(self, paths: tuple[LwM2MPath, ...]) -> None:
        for path, (token, accept) in list(self._observed.items()):
            if LwM2MPath.from_segments(list(path)) in paths:
                answer = self.client.handle(DeviceRequest("GET", path, accept=accept), self.now())
                notification = aiocoap.Message(code=_code(answer.code), payload=answer.payload, observe=next(self._seq))
                notification.mtype, notification.mid, notification.token = Type.NON, next(self._mids), token
                if answer.content_format is not None:
                    notification.opt.content_format = answer.content_format
                self.peer.send(notification)

    async def _download(self, uri: str) -> None:
        """Block2 GETs of the Package URI's path and query, over this session (the URI must name it)."""
        self.package_uris.append(uri)
        parts = urlsplit(uri)
        if (parts.scheme, parts.hostname, parts.port) != ("coaps", "127.0.0.1", self.coaps_port):
            self.client.download_failed(self.now(), unsupported_protocol=True)
            return
        path = tuple(parts.path.split("/")[1:])
        query = tuple(parts.query.split("&")) if parts.query else ()
        for num in itertools.count():
            answer = await self.request(Code.GET, path, query, block=num)
            if answer.code != Code.CONTENT:
                self.client.download_failed(self.now())
                break
            if not self.client.download_data(bytes(answer.payload), self.now()):
                break
            if answer.opt.block2 is None or not answer.opt.block2.more:
                self.client.download_finished(self.now())
                break
        self.changed.set()


def test_a_dtls_device_gets_a_coaps_package_uri_bound_to_it(tmp_path: Path,
                                                            server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACC)
    for device_id in (DEVICE, "490154203237519"):
        cli("device", "add", device_id, "--account", ACC, "--protocol", "LWM2M", "--make", MAKE, "--model", MODEL,
            "--firmware", "1.0.0", "--license", db=db)
    cli("device", "psk", DEVICE, "--account", ACC, "--identity", PSK_IDENTITY, "--key", PSK.hex(), db=db)
    sha = hashlib.sha256(_add_image(db, "LWM2M")).hexdigest()
    server = server_factory(db)
    tokens = _tokens(db)
    base, headers = server.base_url, session_headers(server.base_url, creds)
    today, end = date.today().isoformat(), (date.today() + timedelta(days=3)).isoformat()
    campaign = httpx.post(f"{base}/api/fota/v3/campaigns/firmware/{ACC}", headers=headers, json={
        "firmwareName": f"{MAKE}-{MODEL}-LWM2M-1.1.0", "firmwareFrom": "1.0.0", "firmwareTo": "1.1.0",
        "protocol": "LWM2M", "startDate": today, "endDate": end, "deviceList": [DEVICE],
        "autoAssignLicenseFlag": False, "autoAddDevicesFlag": False}, timeout=30).json()
    assert "id" in campaign, campaign
    coaps_port = server.ports["coaps"]
    client = LwM2MClient(ClientConfig(f"urn:imei:{DEVICE}", lifetime_s=300, manufacturer=MAKE, model=MODEL),
                         DeviceFirmware(protocols=(ProtocolSupport.COAP, ProtocolSupport.COAPS)))

    reports = f"{base}/api/fota/v3/reports/{ACC}/campaigns/{campaign['id']}/devices"

    async def confirmed(http: httpx.AsyncClient) -> list[dict[str, Any]]:
        """The campaign's report once the engine has confirmed the update (by the version the device
        registers with after its reboot), or the last one read within a generous bound."""
        report: list[dict[str, Any]] = []
        for _ in range(240):
            report = (await http.get(reports, headers=headers)).json()["deviceList"]
            if report and report[0]["status"] == "UpgradeSuccess":
                break
            await asyncio.sleep(0.5)
        return report

    async def scenario() -> tuple[DtlsDevice, list[dict[str, Any]]]:
        peer = DtlsPeer(PSK_IDENTITY, PSK, coaps_port)
        await (await peer.open()).handshake()
        device = DtlsDevice(peer, client, coaps_port)
        finished = False
        running = asyncio.get_running_loop().create_task(device.run(lambda: finished, 150))
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                report = await confirmed(http)
            fw = ("fw", sha)
            other = await device.request(Code.GET, (*fw, tokens.issue("490154203237519", sha)), block=0)
            assert other.code == Code.UNAUTHORIZED  # a token of another device is refused on this session
            mine = await device.request(Code.GET, (*fw, tokens.issue(DEVICE, sha)), block=0)
            assert mine.code == Code.CONTENT
        finally:
            finished = True
            device.changed.set()
            await running
            peer.close()
        return device, report

    device, report = asyncio.run(asyncio.wait_for(scenario(), 180), debug=True)
    assert [(r["deviceId"], r["status"]) for r in report] == [(DEVICE, "UpgradeSuccess")], json.dumps(report)
    assert client.firmware_version == "1.1.0" and client.firmware.flashes == 1
    (uri,) = device.package_uris
    assert uri.startswith(f"coaps://127.0.0.1:{coaps_port}/fw/{sha}/") and len(uri) <= 255, uri
    token = urlsplit(uri).path.split("/")[3]
    assert tokens.check(token, sha, DEVICE) is TokenCheck.OK
