"""A v3 LwM2M campaign through the real engine to 50 emulated devices in five cells, over real UDP on
loopback: no attempt before the time window opens, and never more than the cell cap updating per cell.

The server runs on a fake clock the test moves into the window; devices and CoAP run in real time (with a
lifetime of a day, so that the jump of the server's clock does not expire their registrations).
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import aiocoap
import aiocoap.resource as resource
import pytest

from device_emulator.links.coap import CoapLink, _bound_port, free_udp_port
from device_emulator.lwm2m.client import ClientConfig, LwM2MClient
from device_emulator.lwm2m.firmware import DeviceFirmware
from fota_server.adapters.blobs import FileBlobStore
from fota_server.adapters.lwm2m_driver import Lwm2mDriver, Lwm2mDriverSettings
from fota_server.adapters.lwm2m_site import add_lwm2m_resources
from fota_server.app import build_services
from fota_server.campaign import CampaignService, CampaignSpec, DeviceStatus, TimeWindow
from fota_server.campaign.drivers import (
    AttemptCancelled, DeviceUnreachable, DriverCommand, StartAttempt, UpdateFailed, UpdateSucceeded,
)
from fota_server.clock import FakeClock
from fota_server.config import Config
from fota_server.protocol.image import build_image
from fota_server.protocol.lwm2m.firmware_messages import FirmwareTimeouts
from fota_server.records import Device
from fota_server.store.campaigns_sqlite import SqliteCampaignStores

pytestmark = pytest.mark.integration

DEVICES = 50
CELLS = 5
CELL_CAP = 3
START = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
MAKE, MODEL = "FOTA Emulator", "EMU-LWM2M"


def _imei(i: int) -> str:
    return f"35693803564{i:04d}"


async def _scenario(tmp_path: Path) -> None:
    clock = FakeClock(START)
    services = build_services(Config(db_path=str(tmp_path / "fota.db"), coap_enabled=False), clock=clock)
    services.auth.create_account("acme")
    services.db.accounts.update_settings("acme", {"pilot_cap": 1000, "cell_cap": CELL_CAP})
    image = build_image(MAKE, MODEL, "2.0.0", 20_000)
    package = services.firmware.add(io.BytesIO(image), name="emu-2.0.0", make=MAKE, model=MODEL,
                                    version_from="1.0.0", version_to="2.0.0", protocol="LWM2M")
    for i in range(DEVICES):
        services.db.devices.add_device(Device(_imei(i), "acme", "LWM2M", imei=_imei(i), make=MAKE, model=MODEL,
                                              firmware_version="1.0.0", created_at=clock.now()))
    services.db.licenses.assign("acme", [_imei(i) for i in range(DEVICES)], clock.now())

    site = resource.Site()
    server = add_lwm2m_resources(site, services)
    context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", free_udp_port("127.0.0.1", None)),
                                                          transports=["udp6"])
    server.attach(context)
    port = _bound_port(context)
    woken = asyncio.Event()
    driver = Lwm2mDriver(server, services.db.packages, FileBlobStore(services.config.resolved_data_dir / "blobs"),
                         Lwm2mDriverSettings(coap_base=f"coap://127.0.0.1:{port}", timeouts=FirmwareTimeouts(
                             poll_interval_s=0.5, command_s=20, download_s=40, update_s=40)),
                         on_outcome=woken.set, tokens=services.download_tokens)
    stores = SqliteCampaignStores(services.db)
    campaigns = CampaignService(campaigns=stores.campaigns, rows=stores.rows, callbacks=stores.callbacks,
                                devices=services.db.devices, licenses=services.db.licenses,
                                packages=services.db.packages, accounts=services.db.accounts, clock=clock)
    links = [CoapLink(LwM2MClient(ClientConfig(f"urn:imei:{_imei(i)}", lifetime_s=86400, manufacturer=MAKE,
                                               model=MODEL, cell=(310, 410, 20 + i % CELLS, 1000 + i % CELLS)),
                                  DeviceFirmware(flash_bytes=1 << 20)), f"coap://127.0.0.1:{port}")
             for i in range(DEVICES)]
    try:
        await _run(services, server, driver, campaigns, links, clock, woken, package.package_id)
    finally:
        await driver.stop()
        for link in links:
            await link.stop(deregister=False)
        await server.stop()
        await context.shutdown()
        services.db.close()


async def _run(services, server, driver, campaigns, links, clock, woken, package_id) -> None:  # type: ignore[no-untyped-def]
    for link in links:
        await link.start()
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 60
    while sum(1 for i in range(DEVICES) if services.db.devices.find_device(_imei(i)).serving_cell) < DEVICES:
        assert loop.time() < give_up, "devices did not register and report their cells"
        await links[0].wait_until(lambda: False, 0.2)  # wake on any change of the first device, bounded
    cell_of = {_imei(i): services.db.devices.find_device(_imei(i)).serving_cell for i in range(DEVICES)}
    assert len(set(cell_of.values())) == CELLS

    spec = CampaignSpec(api_version="v3", kind="firmware", protocol="LWM2M", package_id=package_id, make=MAKE,
                        model=MODEL, firmware_from="1.0.0", firmware_to="2.0.0", start_date=date(2026, 3, 2),
                        end_date=date(2026, 3, 4), device_ids=tuple(cell_of), name="fifty-lwm2m",
                        windows=(TimeWindow(10, 12),))
    campaign, results = campaigns.schedule_campaign("acme", spec)
    assert all(r.status != "RequestFailed" for r in results), results

    started: list[DriverCommand] = []
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    attempt_cell: dict[str, str] = {}

    def dispatch(commands: list[DriverCommand]) -> None:
        for command in commands:
            if isinstance(command, StartAttempt):
                started.append(command)
                attempt_cell[command.attempt_id] = cell_of[command.device_id]
                running[cell_of[command.device_id]] += 1
                peak[cell_of[command.device_id]] = max(peak[cell_of[command.device_id]],
                                                       running[cell_of[command.device_id]])
            driver.submit(command, clock.now())

    def pump() -> None:
        now = clock.now()
        for outcome in driver.collect(now):
            if isinstance(outcome, (UpdateSucceeded, UpdateFailed, DeviceUnreachable, AttemptCancelled)):
                running[attempt_cell[outcome.attempt_id]] -= 1
            dispatch(campaigns.engine.on_outcome(outcome, now))
        dispatch(campaigns.take_commands())
        dispatch(campaigns.engine.tick(now))

    pump()
    assert started == [], "no attempt before the window opens at 10:00"
    clock.set(datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc))

    def finished() -> int:
        rows = campaigns.campaign_devices("acme", campaign.campaign_id).rows
        return sum(1 for row in rows if row.status in (DeviceStatus.SUCCESS, DeviceStatus.FAILED))

    give_up = loop.time() + 80
    while finished() < DEVICES:
        if loop.time() >= give_up:
            rows = campaigns.campaign_devices("acme", campaign.campaign_id).rows
            states = Counter((r.status.value, r.result_reason) for r in rows)
            raise AssertionError(f"only {finished()} of {DEVICES} devices finished: {states}, running {running}")
        woken.clear()
        pump()
        try:
            await asyncio.wait_for(woken.wait(), 1.0)
        except TimeoutError:
            pass
    rows = campaigns.campaign_devices("acme", campaign.campaign_id).rows
    assert [r.status for r in rows].count(DeviceStatus.SUCCESS) == DEVICES
    assert max(peak.values()) == CELL_CAP and all(p <= CELL_CAP for p in peak.values())
    assert len(started) == DEVICES
    assert all(link.client.firmware_version == "2.0.0" for link in links)
    assert services.db.devices.find_device(_imei(7)).firmware_version == "2.0.0"


def test_v3_campaign_to_50_lwm2m_devices_in_five_cells(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 110), debug=True)
