"""Package 0 through the SMS gateway hook, DM over HTTPS, and credential provisioning through the API."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from device_emulator.links.omadm import SessionFailed
from fota_server.adapters.omadm_notify import HttpHookNotifier, TriggerDispatcher, UdpNotifier
from fota_server.campaign.drivers import AttemptProgressed
from fota_server.protocol.omadm.digests import server_password
from fota_server.protocol.omadm.notification import UiMode, session_id_text, verify_notification

from .test_omadm_fixtures import IMEI, app_of, make_lab, serving, start

pytestmark = pytest.mark.integration


def gateway(received: list[dict[str, Any]], status: int = 202) -> Starlette:
    async def sms(request: Request) -> Response:
        received.append(await request.json())
        return JSONResponse({"queued": True}, status)

    return Starlette(routes=[Route("/sms", sms, methods=["POST"])])


def test_sms_gateway_hook_carries_a_verifiable_package0(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    received: list[dict[str, Any]] = []

    async def scenario() -> list[str]:
        async with serving(app_of(lab)) as url, serving(gateway(received)) as sms_url:
            link = lab.link(url, lab.device())
            try:
                await link.session()  # hands the server the nonce the digest must use
            finally:
                await link.aclose()
            async with httpx.AsyncClient() as client:
                lab.omadm.dispatcher.notifiers[:] = [HttpHookNotifier(sms_url + "/sms", client)]
                lab.omadm.driver.submit(start(lab), lab.clock.now())
                return await lab.omadm.dispatcher.dispatch()

    assert asyncio.run(scenario()) == [IMEI]
    (hook,) = received
    assert (hook["deviceId"], hook["msisdn"], hook["contentType"]) == (
        IMEI, "15550000000", "application/vnd.syncml.notification")
    payload = base64.b64decode(hook["payload"])
    nonce = lab.omadm.client_nonces[IMEI]
    notification = verify_notification(payload, server_password("secret-0-long-enough"), nonce)
    assert notification.server_id == "fota-server" and notification.ui_mode is UiMode.BACKGROUND
    job = lab.omadm.driver.job_of(IMEI)
    assert job is not None and session_id_text(job.session_ids[-1]) == session_id_text(notification.session_id)
    pdu = base64.b64decode(hook["wapPushPdu"])
    assert pdu[1] == 0x06 and pdu[3:6] == bytes([0xC4, 0xAF, 0x87]) and pdu.endswith(payload)


def test_failing_channels_fall_through_and_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lab = make_lab(tmp_path)
    received: list[dict[str, Any]] = []

    async def scenario() -> list[str]:
        async with serving(gateway(received, status=503)) as sms_url, httpx.AsyncClient() as client:
            dispatcher: TriggerDispatcher = lab.omadm.dispatcher
            dispatcher.notifiers[:] = [UdpNotifier(lambda device: None), HttpHookNotifier(sms_url + "/sms", client)]
            lab.omadm.driver.submit(start(lab), lab.clock.now())
            return await dispatcher.dispatch()

    assert asyncio.run(scenario()) == []
    assert len(received) == 1
    assert "no UDP trigger address" in caplog.text and "answered 503" in caplog.text


def test_dm_session_and_fumo_over_https(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def scenario() -> int | None:
        tls = {"ssl_keyfile": str(key_file), "ssl_certfile": str(cert_file)}
        async with serving(app_of(lab), tls) as url:
            assert url.startswith("https://")
            lab.omadm.driver.submit(start(lab), lab.clock.now())
            link = lab.link(url, lab.device(), verify=context)
            untrusted = lab.link(url, lab.device())
            try:
                with pytest.raises(SessionFailed):
                    await untrusted.session()
                return await link.update_cycle()
            finally:
                await link.aclose()
                await untrusted.aclose()

    assert asyncio.run(scenario()) == 200
    assert lab.omadm.driver.collect(lab.clock.now())[0] == AttemptProgressed("attempt-1", "downloading")


def test_credentials_provisioned_through_the_api(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)

    async def scenario() -> tuple[int, dict[str, Any], httpx.Response]:
        async with serving(app_of(lab)) as url, httpx.AsyncClient() as client:
            path = f"{url}/api/fota/omadm/v1/acme/devices/{IMEI}/credentials"
            refused = await client.put(path, json={"username": "new-user"})
            answer = await client.put(path, json={"username": "new-user"}, headers=lab.api_headers())
            body = answer.json()
            link = lab.link(url, lab.device(), username="new-user", password=body["secret"])
            try:
                await link.session()
            finally:
                await link.aclose()
            other = await client.put(f"{url}/api/fota/omadm/v1/acme/devices/unknown/credentials",
                                     json={"username": "x", "secret": "y"}, headers=lab.api_headers())
            return refused.status_code, body, other

    refused, body, other = asyncio.run(scenario())
    assert refused == 401
    assert body["username"] == "new-user" and len(body["secret"]) >= 22
    assert (other.status_code, other.json()["errorCode"]) == (400, "DeviceNotFound")
    credential = lab.services.db.credentials.get_credential(IMEI, "omadm")
    assert credential is not None and credential.identity == "new-user"
    stored = lab.services.db.devices.find_device(IMEI)
    assert stored is not None and stored.last_seen_at is not None


def test_trigger_address_must_be_the_devices_own_ip(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)

    async def scenario() -> None:
        async with serving(app_of(lab)) as url:
            link = lab.link(url, lab.device())
            link.device.tree["./DevInfo/Ext/TriggerAddr"] = "192.0.2.7:2948"  # somebody else's host
            try:
                await link.session()
            finally:
                await link.aclose()

    asyncio.run(scenario())
    assert IMEI not in lab.omadm.trigger_addresses
