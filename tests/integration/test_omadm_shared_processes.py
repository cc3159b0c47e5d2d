"""Two ``fota-server run`` processes (``--node a``, ``--node b``) on one PostgreSQL database: an emulated OMA-DM
device that talks only to b is updated by a campaign created through a's API. Whichever process leads the engine
sends the Package 0, signed with the nonce the device gave b and sent to the address it announced to b; b's DM
session runs the job a's engine may have started; the device flashes once and runs the target version (its own
record), and the campaign report, read from a, says so. Process a is let lead the engine first, so that the
job is a's (its StartAttempt, its Package 0 schedule) and every DM exchange b's."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import httpx
import pytest

from device_emulator.links.omadm import OmadmLink
from firmware_samples import SAMPLES_DIR
from fota_server.protocol.omadm.digests import server_password
from fota_server.protocol.omadm.notification import session_id_text, verify_notification
from tests.serverproc import ServerProcess, cli, create_account, session_headers
from tests.waiting import apoll, poll

from .test_end_to_end import ACC
from .test_omadm_restart import IMEI, SECRET, USER, Device, _schedule, _Triggers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _prepare(url: str) -> dict[str, Any]:
    creds = create_account(url, ACC)
    cli("firmware", "add", str(SAMPLES_DIR / "acme-phone-3-3.1.0.bin"), "--name", "phone-3.1.0", "--make", "Acme",
        "--model", "Phone-3", "--from", "3.0.0", "--to", "3.1.0", "--protocol", "OMADM", db=url)
    cli("device", "add", IMEI, "--account", ACC, "--protocol", "OMADM", "--make", "Acme", "--model", "Phone-3",
        "--firmware", "3.0.0", "--license", db=url)
    cli("device", "omadm", IMEI, "--account", ACC, "--user", USER, "--secret", SECRET, db=url)
    return creds


def test_a_device_on_process_b_is_updated_by_a_campaign_created_on_process_a(
        postgres_url: str, server_factory: Callable[..., ServerProcess]) -> None:
    creds = _prepare(postgres_url)
    a = server_factory(postgres_url, "--node", "a")
    poll(lambda: a.output, lambda lines: any("'a' leads the campaign engine" in line for line in lines), 60,
         "process a to lead the campaign engine")  # so that the job is a's and the session b's
    b = server_factory(postgres_url, "--node", "b")
    assert a.base_url != b.base_url
    device = Device()

    def report() -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"{a.base_url}{report_path}", headers=session_headers(a.base_url, creds),
                                          timeout=30).json()
        return found

    async def scenario() -> None:
        nonlocal report_path
        loop = asyncio.get_running_loop()
        transport, triggers = await loop.create_datagram_endpoint(_Triggers, local_addr=("127.0.0.1", 0))
        try:
            host, port = transport.get_extra_info("sockname")[:2]
            device.dm.tree["./DevInfo/Ext/TriggerAddr"] = f"{host}:{port}"
            async with httpx.AsyncClient(timeout=30) as client:
                await device.session(client, b.base_url, "1")  # b learns the nonces and the Package 0 address
                report_path = await asyncio.to_thread(_schedule, a.base_url, creds)
                package0 = await asyncio.wait_for(triggers.received.get(), 90)
                notification = verify_notification(package0, server_password(SECRET), device.server_nonce)
                await device.session(client, b.base_url, session_id_text(notification.session_id),
                                     server_initiated=True)
                assert device.dm.job is not None
                link = OmadmLink(device.dm, device.config, f"{b.base_url}/dm")
                try:
                    assert await link.run_job() == 200  # download from b, flash, reboot
                finally:
                    await link.aclose()
                await device.session(client, b.base_url, "3")  # the 1226; b reads FwV
            await apoll(lambda: report()["deviceList"][0]["status"], lambda s: s == "UpgradeSuccess",
                        timeout_s=90, what="the campaign report on a")
        finally:
            transport.close()

    report_path = ""
    asyncio.run(scenario())
    assert (device.dm.flashes, device.dm.firmware_version) == (1, "3.1.0")
    assert device.dm.versions == ["3.0.0", "3.1.0"]
    assert device.header_statuses and set(device.header_statuses) <= {"200", "212"}, device.header_statuses
    assert not any("'b' leads the campaign engine" in line for line in b.output)  # a led throughout
