"""Production-shaped wiring in one event loop: uvicorn with the HTTP FOTA routes, the engine runner with the
HTTP driver (woken by device outcomes), and emulated devices over loopback; real clock, no windows."""

from __future__ import annotations

import asyncio
import io
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn

from device_emulator.http.machine import HttpDeviceMachine, HttpDeviceState
from device_emulator.links.http import HttpLink
from fota_server.adapters import fota_http
from fota_server.adapters.http_driver import HttpFotaSettings
from fota_server.adapters.runner import start_engine
from fota_server.app import build_services
from fota_server.campaign import CampaignSpec, DeviceStatus
from fota_server.config import Config
from fota_server.protocol.image import build_image
from fota_server.records import Device
from fota_server.store.campaigns_sqlite import SqliteCampaignStores
from tests.integration.test_http_fixtures import build_app

pytestmark = pytest.mark.integration
DEVICES = 5


async def _scenario(tmp_path: Path) -> list[DeviceStatus]:
    services = build_services(Config(db_path=str(tmp_path / "fota.db"), coap_enabled=False))
    services.auth.create_account("acme")
    services.db.accounts.update_settings("acme", {"pilot_cap": 1000})
    lab_devices = [f"h{i}" for i in range(DEVICES)]
    package = services.firmware.add(io.BytesIO(build_image("Acme", "M1", "2.0", 50_000)), name="fw2", make="Acme",
                                    model="M1", version_from="1.0", version_to="2.0", protocol="HTTP")
    tokens: dict[str, str] = {}
    for device_id in lab_devices:
        services.db.devices.add_device(Device(device_id, "acme", "HTTP", make="Acme", model="M1",
                                              firmware_version="1.0", created_at=services.clock.now()))
        tokens[device_id] = fota_http.issue_http_token(services, device_id)
    services.db.licenses.assign("acme", lab_devices, services.clock.now())
    driver = fota_http.build_http_driver(services, HttpFotaSettings(checkin_interval_s=10, busy_interval_s=10),
                                         SqliteCampaignStores(services.db).campaigns.get_campaign)
    services.http_driver = driver
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_app(services, fota_http.routes), log_level="warning",
                                           lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    handle = await start_engine(services, {"HTTP": driver})
    driver.on_outcome = handle.wake
    today = services.clock.now().date()
    campaign, _ = handle.service.schedule_campaign("acme", CampaignSpec(
        api_version="v2", kind="firmware", protocol="HTTP", package_id=package.package_id, make="Acme", model="M1",
        firmware_from="1.0", firmware_to="2.0", start_date=today, end_date=today + timedelta(days=1),
        device_ids=tuple(lab_devices), name="runner"))
    key = services.firmware.public_key_pem().encode()
    links = [HttpLink(f"http://127.0.0.1:{sock.getsockname()[1]}", d, t, speed=20) for d, t in tokens.items()]
    machines = [HttpDeviceMachine(HttpDeviceState("1.0", make="Acme", model="M1"), key, interval_s=10,
                                  install_s=1, reboot_s=1, seed=i) for i in range(DEVICES)]
    try:
        await asyncio.wait_for(asyncio.gather(*(
            link.run(m, lambda m: m.state.firmware_version == "2.0" and m.settled)
            for link, m in zip(links, machines))), 60)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 30
        while loop.time() < give_up:
            rows = handle.service.campaign_devices("acme", campaign.campaign_id).rows
            if all(r.status == DeviceStatus.SUCCESS for r in rows):
                break
            await asyncio.sleep(0.05)
        return [r.status for r in rows]
    finally:
        for link in links:
            await link.aclose()
        await handle.stop()
        server.should_exit = True
        await serving
        services.db.close()


def test_runner_drives_http_devices_through_the_driver(tmp_path: Path) -> None:
    statuses = asyncio.run(_scenario(tmp_path))
    assert statuses == [DeviceStatus.SUCCESS] * DEVICES
