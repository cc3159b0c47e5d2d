from __future__ import annotations


from fota_server.campaign import CampaignStatus, DeviceStatus

from tests.campaign.simulation import World


def test_campaign_dated_today_updates_every_device(world: World) -> None:
    ids = world.add_devices(5)
    campaign, results = world.service.schedule_campaign("0000123456-00001", world.spec(ids))
    assert campaign.status == CampaignStatus.SCHEDULED
    assert [r.status for r in results] == ["UpgradePending"] * 5
    world.run()
    rows = world.rows(campaign.campaign_id)
    assert {r.status for r in rows} == {DeviceStatus.SUCCESS}
    assert world.service.get_campaign("0000123456-00001", campaign.campaign_id).status == CampaignStatus.ENDED
    assert all(world.db.devices.find_device(d).firmware_version == "2.0" for d in ids)
