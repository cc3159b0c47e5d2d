"""A v2 campaign with download and install windows to 50 emulated HTTP devices over real HTTP on loopback.

The server runs on a fake clock that the test moves across the windows; the devices run on their own
(sped-up) clocks. The engine, the HTTP driver and the SQLite stores are the real ones.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest

from device_emulator.http.machine import HttpDeviceMachine, HttpDeviceState, Installed
from device_emulator.links.http import HttpLink
from fota_server.adapters.http_driver import HttpFotaSettings
from fota_server.campaign import CampaignSpec, DeviceStatus, InstallPackage, StartAttempt, TimeWindow
from fota_server.campaign.drivers import DriverCommand
from fota_server.campaign import CampaignService
from fota_server.store.campaigns_sqlite import SqliteCampaignStores
from tests.integration.test_http_fixtures import Lab, make_lab

pytestmark = pytest.mark.integration
DEVICES = 50


class Pump:
    """The runner's job, in the test: engine commands to the HTTP driver, device outcomes back to the engine."""

    def __init__(self, lab: Lab, campaigns: CampaignService) -> None:
        self.lab = lab
        self.campaigns = campaigns
        self.sent: list[tuple[datetime, DriverCommand]] = []

    def _dispatch(self, commands: list[DriverCommand]) -> None:
        for command in commands:
            self.sent.append((self.lab.clock.now(), command))
            self.lab.driver.submit(command, self.lab.clock.now())

    def once(self) -> None:
        campaigns, now = self.campaigns, self.lab.clock.now()
        for outcome in self.lab.driver.collect(now):
            self._dispatch(campaigns.engine.on_outcome(outcome, now))
        self._dispatch(campaigns.take_commands())
        self._dispatch(campaigns.engine.tick(now))

    async def until(self, done: Callable[[], bool], timeout_s: float = 60) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        while loop.time() < give_up:
            self.once()
            if done():
                return
            await asyncio.sleep(0.02)
        offers = self.lab.services.db.execute("SELECT state, install_allowed, COUNT(*) FROM http_offers GROUP BY 1, 2")
        raise AssertionError(f"the campaign did not reach the expected state in time; offers: "
                             f"{[tuple(r) for r in offers]}; commands: {len(self.sent)}")


def _lab(tmp_path: Path) -> tuple[Lab, CampaignService]:
    lab = make_lab(tmp_path, settings=HttpFotaSettings(checkin_interval_s=60, busy_interval_s=10),
                   campaign_lookup_of=lambda services: SqliteCampaignStores(services.db).campaigns.get_campaign,
                   start=datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc))
    lab.services.db.accounts.update_settings("acme", {"pilot_cap": 1000, "cell_cap": 1000})
    db, stores = lab.services.db, SqliteCampaignStores(lab.services.db, timedelta(days=3))
    service = CampaignService(campaigns=stores.campaigns, rows=stores.rows, callbacks=stores.callbacks,
                              devices=db.devices, licenses=db.licenses, packages=db.packages, accounts=db.accounts,
                              clock=lab.clock)
    return lab, service


async def _fleet(lab: Lab, tokens: dict[str, str], pump: Pump, campaign_id: str) -> list[HttpDeviceMachine]:
    key = lab.services.firmware.public_key_pem().encode()
    machines = {d: HttpDeviceMachine(HttpDeviceState("1.0.0", make="Acme", model="M1"), key, interval_s=60,
                                     install_s=2, reboot_s=2, seed=i) for i, d in enumerate(tokens)}
    installed_at: list[datetime] = []
    links = [HttpLink(lab.url, d, t, speed=100) for d, t in tokens.items()]

    def on_event(event: object) -> None:
        if isinstance(event, Installed):
            installed_at.append(lab.clock.now())

    def rows(status: DeviceStatus) -> int:
        found = pump.campaigns.campaign_devices("acme", campaign_id).rows
        return sum(1 for row in found if row.status == status)

    tasks = [asyncio.create_task(link.run(machines[link.device_id],
                                          lambda m: m.state.firmware_version == "1.1.0" and m.settled,
                                          on_event)) for link in links]
    try:
        await pump.until(lambda: min(m.checkins for m in machines.values()) >= 2, 30)
        assert not [c for _, c in pump.sent if isinstance(c, StartAttempt)], "no attempt before the download window"
        lab.clock.set(datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc))
        await pump.until(lambda: rows(DeviceStatus.DOWNLOADED) == DEVICES)
        assert installed_at == [] and all(m.state.firmware_version == "1.0.0" for m in machines.values())
        lab.clock.set(datetime(2026, 3, 3, 2, 0, tzinfo=timezone.utc))
        await pump.until(lambda: rows(DeviceStatus.SUCCESS) == DEVICES)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in links:
            await link.aclose()
    assert len(installed_at) == DEVICES and min(installed_at) >= datetime(2026, 3, 3, 2, tzinfo=timezone.utc)
    return list(machines.values())


def test_v2_campaign_to_50_http_devices_honours_download_and_install_windows(tmp_path: Path) -> None:
    lab, service = _lab(tmp_path)
    try:
        package, _ = lab.add_image(payload=100_000)
        tokens = {f"http-{i:03d}": lab.add_device(f"http-{i:03d}") for i in range(DEVICES)}
        lab.services.db.licenses.assign("acme", list(tokens), lab.clock.now())
        spec = CampaignSpec(
            api_version="v2", kind="firmware", protocol="HTTP", package_id=package.package_id, make="Acme",
            model="M1", firmware_from="1.0.0", firmware_to="1.1.0", start_date=date(2026, 3, 2),
            end_date=date(2026, 3, 5), device_ids=tuple(tokens), name="fifty",
            download_windows=(TimeWindow(9, 12),), install_windows=(TimeWindow(2, 3),))
        campaign, results = service.schedule_campaign("acme", spec)
        assert all(r.status != "RequestFailed" for r in results), results
        pump = Pump(lab, service)
        machines = asyncio.run(_fleet(lab, tokens, pump, campaign.campaign_id))
        assert all(m.state.firmware_version == "1.1.0" for m in machines)
        installs = [at for at, c in pump.sent if isinstance(c, InstallPackage)]
        assert len(installs) == DEVICES and min(installs) >= datetime(2026, 3, 3, 2, tzinfo=timezone.utc)
        device = lab.services.db.devices.find_device("http-007")
        assert device is not None and device.firmware_version == "1.1.0"
        assert len(lab.driver.http_devices.list_checkins("http-007")) >= 4
    finally:
        lab.server.stop()
        lab.services.db.close()
