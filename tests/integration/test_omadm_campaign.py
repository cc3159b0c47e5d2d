"""A v1 campaign to 30 emulated OMA-DM devices over real HTTP on loopback: the campaign engine drives the
OMA-DM driver; Package 0 goes out over UDP; the devices run FUMO against /dm and download from /fw."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from device_emulator.omadm import Fault
from fota_server.adapters.omadm_driver import OmadmDriver
from fota_server.adapters.runner import start_engine
from fota_server.campaign import CampaignEngine, CampaignService, CampaignSpec
from fota_server.campaign.drivers import AttemptOutcome, DriverCommand, UpdateSucceeded
from fota_server.clock import FakeClock, SystemClock
from fota_server.campaign.model import DeviceStatus
from fota_server.campaign.reasons import FUMO_REASONS, EngineReason
from fota_server.store.campaigns_sqlite import SqliteCampaignStores

from fota_server.adapters.omadm_http import build_omadm

from .test_omadm_fixtures import IMEI, Lab, app_of, make_lab, serving

pytestmark = pytest.mark.integration

DEVICES = 30
# Permanent FUMO failures (not retried), so that every device ends within the test.
FAULTS = {3: Fault.USER_CANCELLED, 8: Fault.PACKAGE_MISMATCH, 13: Fault.VALIDATION_FAILED,
          21: Fault.NOT_ACCEPTABLE, 27: Fault.BAD_URL}


class CampaignRig:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        db = lab.services.db
        self.stores = SqliteCampaignStores(db)
        self.engine = CampaignEngine(self.stores.campaigns, self.stores.rows, db.devices, db.accounts)
        self.service = CampaignService(
            campaigns=self.stores.campaigns, rows=self.stores.rows, callbacks=self.stores.callbacks,
            devices=db.devices, licenses=db.licenses, packages=db.packages, accounts=db.accounts,
            clock=lab.clock, engine=self.engine)

    def submit(self, commands: list[DriverCommand]) -> None:
        for command in commands:
            self.lab.omadm.driver.submit(command, self.lab.clock.now())

    def spec(self) -> CampaignSpec:
        return campaign_spec(self.lab)


def campaign_spec(lab: Lab) -> CampaignSpec:
    today = lab.clock.now().date()
    return CampaignSpec(
        api_version="v1", kind="firmware", protocol="OMA-DM", package_id=lab.package_id, make="Acme",
        model="Tracker-1", firmware_from="1.0.0", firmware_to="2.0.0", start_date=today,
        end_date=today + timedelta(days=2), device_ids=tuple(str(int(IMEI) + n) for n in range(DEVICES)),
        name="omadm-v1", auto_assign_license=True)


def test_v1_campaign_to_30_omadm_devices(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, devices=DEVICES)
    rig = CampaignRig(lab)

    async def scenario(url: str) -> str:
        links = [lab.link(url, lab.device(n, FAULTS.get(n, Fault.NONE)), n) for n in range(DEVICES)]
        expected = [0] * DEVICES
        try:
            for link in links:
                await link.listen()
            await asyncio.gather(*(link.session() for link in links))  # each device checks in once
            campaign, results = rig.service.schedule_campaign("acme", rig.spec())
            assert all(r.status == DeviceStatus.PENDING.value for r in results), results
            for _ in range(40):
                rig.submit(rig.service.take_commands() + rig.engine.tick(lab.clock.now()))
                for device_id in await lab.omadm.dispatcher.dispatch():
                    expected[int(device_id) - int(IMEI)] += 1
                await asyncio.gather(*(link.settle(count) for link, count in zip(links, expected) if count))
                for outcome in lab.omadm.driver.collect(lab.clock.now()):
                    rig.submit(rig.engine.on_outcome(outcome, lab.clock.now()))
                rows = rig.stores.rows.list_rows(campaign.campaign_id, limit=1000)
                if all(r.final for r in rows):
                    break
                assert isinstance(lab.clock, FakeClock)
                lab.clock.advance(timedelta(minutes=1))
            return campaign.campaign_id
        finally:
            await asyncio.gather(*(link.aclose() for link in links))

    async def run() -> str:
        async with serving(app_of(lab)) as url:
            return await scenario(url)

    campaign_id = asyncio.run(run())
    rows = {r.device_id: r for r in rig.stores.rows.list_rows(campaign_id, limit=1000)}
    assert len(rows) == DEVICES
    for n in range(DEVICES):
        row = rows[str(int(IMEI) + n)]
        if n in FAULTS:
            assert row.status == DeviceStatus.FAILED, (n, row)
            assert row.result_reason == FUMO_REASONS[FAULTS[n].value][0]
        else:
            assert (row.status, row.result_reason) == (DeviceStatus.SUCCESS, EngineReason.SUCCESS), (n, row)
            stored = lab.services.db.devices.find_device(str(int(IMEI) + n))
            assert stored is not None and stored.firmware_version == "2.0.0"
    attempts = rig.stores.rows.attempts(campaign_id=campaign_id, limit=1000)
    assert len(attempts) == DEVICES and all(a.ended_at is not None for a in attempts)


class WatchedDriver(OmadmDriver):
    """The OMA-DM driver, noting what the engine runner acknowledges (recorded by the engine)."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab.services.db.packages, tokens=lab.services.download_tokens)
        self.collected: list[AttemptOutcome] = []
        self.changed = asyncio.Event()

    def collect_numbered(self, now: datetime) -> list[tuple[int, AttemptOutcome]]:
        out = super().collect_numbered(now)
        self._pending = dict(out)
        return out

    def acknowledge(self, outcome_ids: list[int]) -> None:
        super().acknowledge(outcome_ids)
        taken = [self._pending[i] for i in outcome_ids if i in getattr(self, "_pending", {})]
        if taken:
            self.collected += taken
            self.changed.set()


def test_v1_campaign_through_the_engine_runner(tmp_path: Path) -> None:
    """The real runner loop on the system clock: outcomes wake it, Package 0s go out as the driver asks."""
    lab = make_lab(tmp_path, devices=DEVICES, clock=SystemClock())
    driver = WatchedDriver(lab)
    lab.omadm = build_omadm(lab.services, driver=driver)

    async def scenario(url: str) -> str:
        handle = await start_engine(lab.services, {"OMADM": driver})
        driver.on_outcome = handle.wake
        dispatcher = asyncio.create_task(lab.omadm.run_dispatcher(poll_s=0.5))
        links = [lab.link(url, lab.device(n), n) for n in range(DEVICES)]
        try:
            for link in links:
                await link.listen()
            await asyncio.gather(*(link.session() for link in links))
            campaign, _ = lab.services.campaigns.schedule_campaign("acme", campaign_spec(lab))
            await asyncio.gather(*(link.settle(1) for link in links))
            while sum(isinstance(o, UpdateSucceeded) for o in driver.collected) < DEVICES:
                driver.changed.clear()
                await asyncio.wait_for(driver.changed.wait(), 30)
            return campaign.campaign_id
        finally:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
            await handle.stop()
            await asyncio.gather(*(link.aclose() for link in links))

    async def run() -> str:
        async with serving(app_of(lab)) as url:
            return await scenario(url)

    campaign_id = asyncio.run(run())
    rows = lab.services.campaigns.campaign_devices("acme", campaign_id, limit=1000).rows
    assert len(rows) == DEVICES
    assert all((r.status, r.result_reason) == (DeviceStatus.SUCCESS, EngineReason.SUCCESS) for r in rows)
