"""A 30-day campaign of 10,000 devices over 200 cells with a nightly window and 10% failing devices."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fota_server.campaign import CampaignStatus, DeviceStatus, TimeWindow
from fota_server.campaign.drivers import SimulatedDevice

from tests.campaign.simulation import ACCOUNT, World, check_invariants


@pytest.mark.slow(13)
def test_thirty_day_campaign_of_ten_thousand_devices() -> None:
    world = World()
    world.service.register_listener(ACCOUNT, "v3", "https://listener.example/fota")
    ids = world.add_devices(10_000, cells=200)
    world.driver.jitter = 1.0
    for index, device_id in enumerate(ids):
        outcome = "fail:8" if index % 10 == 3 else "success"
        world.driver.devices[device_id] = SimulatedDevice(delay=timedelta(minutes=10), outcome=outcome)
    world.driver.keep_log = True
    today = world.clock.now().date()
    spec = world.spec(ids, end_date=today + timedelta(days=29), windows=(TimeWindow(22, 24), TimeWindow(0, 6)))
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    world.run()
    rows = world.rows(campaign.campaign_id)
    by_status: dict[DeviceStatus, int] = {}
    for row in rows:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    assert by_status == {DeviceStatus.SUCCESS: 9_000, DeviceStatus.FAILED: 1_000}
    assert {r.result_reason for r in rows if r.status == DeviceStatus.FAILED} == {"LwM2M update result 8: firmware update failed"}
    done = world.service.get_campaign(ACCOUNT, campaign.campaign_id)
    assert done.status == CampaignStatus.ENDED
    check_invariants(world, campaign.campaign_id, cap=8)  # its speed is measured by tools/bench_engine.py
