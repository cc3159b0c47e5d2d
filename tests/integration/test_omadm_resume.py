"""Exactly once over OMA-DM against ``fota-server run``, killed with SIGKILL at the ambiguous moment: the
reply carrying the FUMO Exec reached the device, the device's 202 never reached the server. After the
restart (same ports) the resumed attempt reads the device first, finds its FUMO job under way and follows
it: the device gets no second Exec, installs once, and the campaign report says what the device says."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from device_emulator.links.omadm import OmadmLink
from device_emulator.omadm import DmClientSession, OmadmDevice
from device_emulator.omadm.device import DeviceProfile
from fota_server.protocol.omadm.notification import session_id_text, verify_notification
from fota_server.protocol.omadm.digests import server_password
from tests.serverproc import ServerProcess, session_headers

from .test_omadm_restart import CONTENT_TYPE, IMEI, SECRET, Device, _prepare, _schedule, _stored, _Triggers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class CountingDevice(OmadmDevice):
    """The emulated device, counting every Exec it was sent and every image it flashed."""

    exec_calls: int = 0
    installs: int = 0

    def accept_exec(self, path: str, correlator: str) -> int:
        self.exec_calls += 1
        return super().accept_exec(path, correlator)

    def finish_download(self, image: bytes | None, download_error: int | None = None) -> int:
        code = super().finish_download(image, download_error)
        self.installs += code == 200
        return code


async def _until_exec_delivered(device: Device, client: httpx.AsyncClient, url: str, session_id: str) -> None:
    """A server-initiated session that stops as soon as the device took the Exec: its 202 is never sent."""
    session = DmClientSession(device.config, device.dm, session_id, device.nonce, True,
                              server_nonce=device.server_nonce)
    while device.dm.job is None:
        outgoing = session.to_send()
        assert outgoing is not None and not session.finished, session.failure
        response = await client.post(f"{url}/dm", content=outgoing.body, headers={"Content-Type": CONTENT_TYPE})
        assert response.status_code == 200, response.text
        session.receive(response.content)
    device.nonce = session.nonce
    if session.server_nonce is not None:  # the nonce it gave the server: the next Package 0 is signed with it
        device.server_nonce = session.server_nonce


async def _report_status(client: httpx.AsyncClient, base_url: str, creds: dict[str, Any], report: str,
                         wanted: str, within_s: float) -> dict[str, Any]:
    headers = session_headers(base_url, creds)
    give_up = time.monotonic() + within_s
    while True:
        response = await client.get(f"{base_url}{report}", headers=headers)
        assert response.status_code == 200, response.text
        (row,) = [d for d in response.json()["deviceList"] if d["deviceId"] == IMEI]
        if row["status"] == wanted or time.monotonic() > give_up:
            return dict(row)
        await asyncio.sleep(0.2)  # polling a condition with a deadline, not synchronising on time


@pytest.mark.slow(27)
def test_exec_delivered_then_sigkill_installs_once(tmp_path: Path,
                                                    server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    creds = _prepare(db)
    device = Device()
    device.dm = CountingDevice(DeviceProfile(f"IMEI:{IMEI}", man="Acme", mod="Phone-3", fw_version="3.0.0"))

    async def scenario() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        transport, triggers = await loop.create_datagram_endpoint(_Triggers, local_addr=("127.0.0.1", 0))
        try:
            host, port = transport.get_extra_info("sockname")[:2]
            device.dm.tree["./DevInfo/Ext/TriggerAddr"] = f"{host}:{port}"
            first = server_factory(db)
            async with httpx.AsyncClient(timeout=30) as client:
                await device.session(client, first.base_url, "1")  # nonces both ways
                report = _schedule(first.base_url, creds)
                package0 = await asyncio.wait_for(triggers.received.get(), 60)
                notification = verify_notification(package0, server_password(SECRET), device.server_nonce)
                await _until_exec_delivered(device, client, first.base_url, session_id_text(notification.session_id))
                assert _stored(db, "SELECT state FROM omadm_jobs") == [("exec_issued",)]  # committed before sent
                first.kill()

                second = server_factory(db, "--http-port", str(first.ports["http"]))
                package0 = await asyncio.wait_for(triggers.received.get(), 60)  # the resumed job asks again
                notification = verify_notification(package0, server_password(SECRET), device.server_nonce)
                await device.session(client, second.base_url, session_id_text(notification.session_id),
                                     server_initiated=True)  # FwV and State 30 read: followed, no Exec
                assert _stored(db, "SELECT state FROM omadm_jobs") == [("accepted",)]
                link = OmadmLink(device.dm, device.config, f"{second.base_url}/dm")
                try:
                    assert await link.run_job() == 200  # download from the restarted server, flash, reboot
                finally:
                    await link.aclose()
                await device.session(client, second.base_url, "9")  # the 1226, then FwV
                return await _report_status(client, second.base_url, creds, report, "UpgradeSuccess", 60)
        finally:
            transport.close()

    row = asyncio.run(scenario())
    dm = device.dm
    assert isinstance(dm, CountingDevice)
    assert (dm.exec_calls, dm.installs, dm.firmware_version) == (1, 1, "3.1.0")
    assert row["status"] == "UpgradeSuccess", row
    assert _stored(db, "SELECT attempt_id FROM omadm_jobs") == []
