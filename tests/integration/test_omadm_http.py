"""OMA-DM over real HTTP on loopback: uvicorn on port 0 serving /dm and /fw, emulated devices with httpx,
Package 0 over UDP. Full sessions in XML and WBXML, FUMO results, authentication, hostile payloads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from device_emulator.links.omadm import SessionFailed
from device_emulator.omadm import DmClientSession, Fault
from fota_server.adapters.omadm_http import OmadmSettings, build_omadm
from fota_server.campaign.drivers import AttemptProgressed, UpdateFailed, UpdateSucceeded
from fota_server.campaign.reasons import FUMO_REASONS, lookup
from fota_server.protocol.omadm.digests import AUTH_BASIC, AUTH_MAC
from fota_server.protocol.omadm.session import ServerSessionConfig
from fota_server.protocol.omadm.syncml import Encoding, decode_message

from .test_omadm_fixtures import IMEI, START, app_of, make_lab, serving, start

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("encoding", list(Encoding))
def test_full_session_records_inventory(tmp_path: Path, encoding: Encoding) -> None:
    lab = make_lab(tmp_path)

    async def scenario() -> None:
        async with serving(app_of(lab)) as url:
            link = lab.link(url, lab.device(sw_version="7.1"), encoding=encoding)
            try:
                session = await link.session()
                second = await link.session()
            finally:
                await link.aclose()
        assert session.state.value == second.state.value == "ended"

    asyncio.run(scenario())
    stored = lab.services.db.devices.find_device(IMEI)
    assert stored is not None
    assert (stored.make, stored.model, stored.firmware_version, stored.software_version) == (
        "Acme", "Tracker-1", "1.0.0", "7.1")
    assert stored.last_seen_at == START and not lab.omadm.sessions


@pytest.mark.parametrize("encoding", list(Encoding))
def test_package0_fumo_success_over_udp_and_http(tmp_path: Path, encoding: Encoding) -> None:
    lab = make_lab(tmp_path)

    async def scenario() -> list[object]:
        async with serving(app_of(lab)) as url:
            link = lab.link(url, lab.device(), encoding=encoding)
            try:
                await link.listen()
                await link.session()  # announces the trigger address and hands the server its SRVCRED nonce
                lab.omadm.driver.submit(start(lab), lab.clock.now())
                assert await lab.omadm.dispatcher.dispatch() == [IMEI]
                await link.settle()
            finally:
                await link.aclose()
        return lab.omadm.driver.collect(lab.clock.now())

    outcomes = asyncio.run(scenario())
    assert outcomes == [AttemptProgressed("attempt-1", "downloading"), AttemptProgressed("attempt-1", "installed"),
                        UpdateSucceeded("attempt-1", "2.0.0")]
    stored = lab.services.db.devices.find_device(IMEI)
    assert stored is not None and stored.firmware_version == "2.0.0"


FAULTS = [f for f in Fault if f is not Fault.NONE]


def test_every_fumo_result_code_reaches_the_engine_with_its_reason(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, devices=len(FAULTS))

    async def one(url: str, n: int, fault: Fault) -> None:
        link = lab.link(url, lab.device(n, fault), n)
        try:
            await link.session()
            lab.omadm.driver.submit(start(lab, n, f"attempt-{n}"), lab.clock.now())
            await link.update_cycle()
        finally:
            await link.aclose()

    async def scenario() -> None:
        async with serving(app_of(lab)) as url:
            await asyncio.gather(*(one(url, n, fault) for n, fault in enumerate(FAULTS)))

    asyncio.run(scenario())
    failures = {o.attempt_id: o.code for o in lab.omadm.driver.collect(lab.clock.now()) if isinstance(o, UpdateFailed)}
    for n, fault in enumerate(FAULTS):
        assert failures[f"attempt-{n}"] == str(fault.value)
        assert lookup("OMADM", failures[f"attempt-{n}"])[0] == FUMO_REASONS[fault.value][0]


@pytest.mark.parametrize("auth", [AUTH_BASIC, AUTH_MAC])
def test_basic_and_hmac_over_http(tmp_path: Path, auth: str) -> None:
    lab = make_lab(tmp_path)
    lab.omadm = build_omadm(lab.services, OmadmSettings(session=ServerSessionConfig(allow_basic=True)))

    async def scenario() -> None:
        async with serving(app_of(lab)) as url:
            link = lab.link(url, lab.device(), auth=auth)
            try:
                await link.session()
                await link.session()
            finally:
                await link.aclose()

    asyncio.run(scenario())
    stored = lab.services.db.devices.find_device(IMEI)
    assert stored is not None and stored.last_seen_at == START


def test_bad_credentials_and_replayed_nonces_are_refused(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    posted: list[tuple[bytes, str]] = []

    async def scenario() -> None:
        async with serving(app_of(lab)) as url:
            bad = lab.link(url, lab.device(), password="not-the-secret")
            with pytest.raises(SessionFailed):
                await bad.session()
            await bad.aclose()
            good = lab.link(url, lab.device())
            await good.session()
            # an eavesdropper captures the first message of the device's next session
            replay = DmClientSession(good.config, good.device, "77", good.nonce).to_send()
            assert replay is not None
            await good.session()  # rotates the nonce: the captured message is now stale
            await good.aclose()
            async with httpx.AsyncClient() as client:
                response = await client.post(url + "/dm", content=replay.body,
                                             headers={"Content-Type": "application/vnd.syncml.dm+xml"})
                posted.append((response.content, response.headers["content-type"]))

    asyncio.run(scenario())
    reply, content_type = posted[0]
    message, _ = decode_message(reply)
    header_status = message.commands[0]
    assert (header_status.cmd, header_status.data) == ("SyncHdr", "401")
    assert header_status.chal is not None and header_status.chal.meta.next_nonce
    assert content_type == "application/vnd.syncml.dm+xml"
    assert not any(c.name in ("Get", "Replace", "Exec") for c in message.commands)


XXE = (b'<?xml version="1.0"?><!DOCTYPE SyncML [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
       b"<SyncML><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID>"
       b"<Source><LocURI>IMEI:" + IMEI.encode() + b"</LocURI></Source></SyncHdr><SyncBody><Replace><CmdID>1</CmdID>"
       b"<Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Data>&xxe;</Data></Item></Replace><Final/>"
       b"</SyncBody></SyncML>")
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE SyncML [<!ENTITY a "aaaaaaaaaa">'
          + b"".join(b'<!ENTITY %c "%s">' % (ord("b") + i, (b"&%c;" % (ord("a") + i)) * 10) for i in range(8))
          + b"]><SyncML><SyncHdr><MsgID>1</MsgID></SyncHdr><SyncBody><Alert><CmdID>1</CmdID><Data>&i;</Data>"
          b"</Alert></SyncBody></SyncML>")


@pytest.mark.parametrize("body, content_type, status", [
    (XXE, "application/vnd.syncml.dm+xml", 400),
    (LAUGHS, "application/vnd.syncml+xml", 400),
    (b"\x02\xa4\x01\x6a\x00\x6d" + b"\x54" * 50, "application/vnd.syncml.dm+wbxml", 413),
    (b"<SyncML/>", "text/xml", 415),
    (b"<" + b"a" * 70_000, "application/vnd.syncml.dm+xml", 413),
    (b"garbage", "application/vnd.syncml.dm+xml", 415),
])
def test_hostile_payloads_are_refused_with_no_effect(tmp_path: Path, body: bytes, content_type: str,
                                                     status: int) -> None:
    lab = make_lab(tmp_path)
    before = lab.services.db.devices.find_device(IMEI)

    async def scenario() -> httpx.Response:
        async with serving(app_of(lab)) as url:
            async with httpx.AsyncClient() as client:
                response = await client.post(url + "/dm", content=body, headers={"Content-Type": content_type})
                health = await client.post(url + "/dm", content=b"<SyncML/>",
                                           headers={"Content-Type": "application/vnd.syncml.dm+xml"})
                assert health.status_code == 400  # still serving
                return response

    response = asyncio.run(scenario())
    assert response.status_code == status
    assert lab.services.db.devices.find_device(IMEI) == before
    assert not lab.omadm.sessions
