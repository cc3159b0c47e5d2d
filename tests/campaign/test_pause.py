"""An operator's pause (``CampaignService.pause``): no new attempt starts, running ones finish and are recorded,
``resume`` continues; only a started, running campaign can be paused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fota_server.campaign import CampaignStatus, DeviceStatus
from fota_server.campaign.drivers import StartAttempt
from fota_server.campaign.errors import InvalidTransition
from fota_server.campaign.reasons import EngineReason as R

from tests.campaign.simulation import ACCOUNT, World


def _starts(world: World) -> list[str]:
    return [c.device_id for _t, c in world.driver.submitted if isinstance(c, StartAttempt)]


def test_pause_lets_running_attempts_finish_and_starts_no_new_one(make_world: Any) -> None:
    world = make_world(settings={"cell_cap": 2})
    ids = world.add_devices(6)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    world.step()
    running = sorted(_starts(world))
    assert len(running) == 2
    paused = world.service.pause(ACCOUNT, campaign.campaign_id)
    assert paused.status == CampaignStatus.FAILED and paused.reason == R.PAUSED_BY_OPERATOR
    world.run(until=world.clock.now() + timedelta(hours=12))
    assert sorted(_starts(world)) == running            # nothing new while paused
    rows = {r.device_id: r for r in world.rows(campaign.campaign_id)}
    assert {d for d, r in rows.items() if r.status == DeviceStatus.SUCCESS} == set(running)   # they finished
    waiting = [r for d, r in rows.items() if d not in running]
    assert {r.status for r in waiting} == {DeviceStatus.QUEUED}   # waiting for a slot the pause does not give
    resumed = world.service.resume(ACCOUNT, campaign.campaign_id)
    assert resumed.status == CampaignStatus.SCHEDULED and resumed.reason == ""
    world.run()
    assert world.service.get_campaign(ACCOUNT, campaign.campaign_id).status == CampaignStatus.ENDED
    assert {r.status for r in world.rows(campaign.campaign_id)} == {DeviceStatus.SUCCESS}
    assert sorted(_starts(world)) == sorted(ids)        # each device started exactly once


def test_only_a_running_campaign_can_be_paused(world: World) -> None:
    ids = world.add_devices(2)
    today = world.clock.now().date()
    later, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids[:1], start_date=today + timedelta(days=1),
                                                                   end_date=today + timedelta(days=3)))
    with pytest.raises(InvalidTransition):
        world.service.pause(ACCOUNT, later.campaign_id)   # not started: change its dates or cancel it instead
    running, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids[1:]))
    world.step()
    world.service.pause(ACCOUNT, running.campaign_id)
    with pytest.raises(InvalidTransition):
        world.service.pause(ACCOUNT, running.campaign_id)   # already paused
    world.service.cancel(ACCOUNT, running.campaign_id)
    with pytest.raises(InvalidTransition):
        world.service.resume(ACCOUNT, running.campaign_id)


def test_devices_that_come_due_while_paused_wait_with_the_operators_reason(world: World) -> None:
    ids = world.add_devices(3)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    world.service.pause(ACCOUNT, campaign.campaign_id)   # before the engine's first tick
    world.run(until=world.clock.now() + timedelta(hours=6))
    assert _starts(world) == []
    rows = world.rows(campaign.campaign_id)
    assert [(r.status, r.queue, r.result_reason) for r in rows] == [
        (DeviceStatus.QUEUED, "paused", R.PAUSED_BY_OPERATOR)] * 3
    world.service.resume(ACCOUNT, campaign.campaign_id)
    world.run()
    assert {r.status for r in world.rows(campaign.campaign_id)} == {DeviceStatus.SUCCESS}
