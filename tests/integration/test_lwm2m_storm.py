"""A registration storm against the real server: 4,000 known devices send their Register at once, as after a
cell outage. The server answers what it can, asks the rest to come back with 5.03 and Max-Age, and reads
each device once; judged by what the devices saw."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fota_server.protocol.lwm2m.coap_message import (
    ACK, CON, CONTENT_FORMAT, LOCATION_PATH, URI_PATH, URI_QUERY, CoapMessage, decode_message, encode_message,
    uint_bytes, uint_value,
)
from fota_server.protocol.lwm2m.paths import LwM2MPath
from fota_server.protocol.lwm2m.senml import encode_senml_json
from tests.serverproc import ServerProcess, cli, create_account
from tests.waiting import apoll

pytestmark = pytest.mark.integration

DEVICES = 4000
ACC = "storm"
MAX_AGE = 14
POST, CREATED, CONTENT, UNAVAILABLE = 2, 0x41, 0x45, 0xA3
OBJECTS = b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</4/0>,</5/0>'


def _imei(n: int) -> str:
    return f"3569{n:011d}"


@dataclass
class _Device:
    imei: str
    mid: int = 0
    sent_at: float = 0.0
    tries: int = 0
    registered: bool = False
    failed: bool = False
    deferrals: list[int] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)


class _Socket(asyncio.DatagramProtocol):
    """One device's socket."""

    def __init__(self, device: _Device) -> None:
        self.devices = [device]
        self.by_mid: dict[int, _Device] = {}
        self.next_mid = random.randrange(0x10000)
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def register(self, device: _Device, now: float) -> None:
        self.next_mid = (self.next_mid + 1) & 0xFFFF
        device.mid, device.sent_at, device.tries = self.next_mid, now, 0
        self.by_mid[device.mid] = device
        self._send_register(device)

    def _send_register(self, device: _Device) -> None:
        options = ((URI_PATH, b"rd"), (CONTENT_FORMAT, uint_bytes(40)), (URI_QUERY, f"ep=urn:imei:{device.imei}".encode()),
                   (URI_QUERY, b"lt=3600"), (URI_QUERY, b"lwm2m=1.1"))
        self.transport.sendto(encode_message(CoapMessage(CON, POST, device.mid, device.mid.to_bytes(2, "big"),
                                                         options, OBJECTS)))

    def retransmit_due(self, now: float) -> None:
        """RFC 7252 §4.2 back-off (2 s doubling, four retransmissions), then the Register has failed."""
        for device in list(self.by_mid.values()):
            if now - device.sent_at >= 2.0 * (2 ** device.tries):
                if device.tries == 4:
                    device.failed = True
                    del self.by_mid[device.mid]
                    continue
                device.tries += 1
                device.sent_at = now
                self._send_register(device)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        message = decode_message(data)
        if message.mtype == ACK:
            device = self.by_mid.pop(message.mid, None)
            if device is None:
                return
            if message.code == CREATED:
                assert message.values(LOCATION_PATH)[0] == b"rd"
                device.registered = True
            elif message.code == UNAVAILABLE:
                device.deferrals.append(uint_value(message.first(MAX_AGE)) or 60)
            else:
                device.failed = True
            return
        if message.mtype == CON and message.code == 1:  # the server reads /3/0 or /4/0
            path = "/" + "/".join(v.decode() for v in message.values(URI_PATH))
            self.devices[0].reads.append(path)
            values = {LwM2MPath(3, 0, 3): "1.0.7"} if path == "/3/0" else {LwM2MPath(4, 0, 0): 0}
            payload = encode_senml_json(LwM2MPath.parse(path), values)  # type: ignore[arg-type]
            self.transport.sendto(encode_message(CoapMessage(ACK, CONTENT, message.mid, message.token,
                                                             ((CONTENT_FORMAT, uint_bytes(110)),), payload)))


async def _storm(port: int) -> list[_Device]:
    loop = asyncio.get_running_loop()
    devices = [_Device(_imei(n)) for n in range(DEVICES)]
    sockets: list[_Socket] = []
    for device in devices:
        _, sock = await loop.create_datagram_endpoint(lambda d=device: _Socket(d), remote_addr=("127.0.0.1", port))
        sockets.append(sock)
    come_back: list[tuple[float, _Device, _Socket]] = []
    for sock in sockets:
        for device in sock.devices:
            sock.register(device, loop.time())   # the storm: every device at once
    handled: dict[str, int] = {}

    def step() -> bool:
        now = loop.time()
        for sock in sockets:
            sock.retransmit_due(now)
            for device in sock.devices:
                if len(device.deferrals) > handled.get(device.imei, 0):
                    handled[device.imei] = len(device.deferrals)
                    come_back.append((now + device.deferrals[-1], device, sock))
        for entry in [e for e in come_back if e[0] <= now]:
            come_back.remove(entry)
            entry[2].register(entry[1], now)   # back after Max-Age, with a new message id
        return all(d.registered or d.failed for d in devices)

    try:
        await apoll(lambda: step(), lambda done: done, 180, "every device registered or given up", 0.05)
        await apoll(lambda: sum(len(d.reads) for d in devices), lambda n: n >= 2 * DEVICES, 120,
                   "the server read every device", 0.1)
    finally:
        for sock in sockets:
            sock.transport.close()
    return devices


def test_a_registration_storm_is_spread_out_not_dropped(tmp_path: Path) -> None:
    db = tmp_path / "fota.db"
    create_account(db, ACC, licenses=DEVICES)
    manifest = tmp_path / "fleet.json"
    manifest.write_text(json.dumps({"format": "fota-fleet-manifest/1", "account": ACC, "devices": [
        {"deviceId": _imei(n), "protocol": "LWM2M", "imei": _imei(n), "make": "Storm", "model": "S-1",
         "firmwareVersion": "1.0.0", "license": True, "credentials": {"lwm2mEndpoint": f"urn:imei:{_imei(n)}"}}
        for n in range(DEVICES)]}))
    assert json.loads(cli("device", "import", str(manifest), db=db).stdout)["errors"] == []
    server = ServerProcess(db, env={"FOTA_LWM2M_BUSY_MAX_AGE_S": "4", "FOTA_LWM2M_DEVICE_READS_PER_S": "2000"}).start()
    try:
        devices = asyncio.run(_storm(server.ports["coap"]))
    finally:
        assert server.stop() == 0
    assert [d.imei for d in devices if d.failed] == []          # no Register failed, none was refused
    assert all(d.registered for d in devices)
    deferred = [age for d in devices for age in d.deferrals]
    assert deferred, "the storm never saturated the server"     # thousands at once: some were asked to wait
    assert all(2 <= age <= 4 for age in deferred)               # within the configured Max-Age
    assert [d.imei for d in devices if sorted(d.reads) != ["/3/0", "/4/0"]] == []  # each read once, not more
    assert not any("Traceback" in line for line in server.output)
