"""The delivery method reaches the driver: the campaign's ``deliveryMethod`` in every ``StartAttempt`` (also
after a restart), a device's own method over it, and the downloading reason naming what the driver used.
Both stores (the ``world`` fixture runs on memory and SQLite)."""

from __future__ import annotations

import dataclasses

from fota_server.campaign.drivers import AttemptProgressed, StartAttempt
from fota_server.campaign.reasons import EngineReason as R
from fota_server.protocol.delivery import Delivery
from tests.campaign.simulation import ACCOUNT, World


def test_campaign_method_reaches_each_start_and_a_device_override_wins(world: World) -> None:
    ids = world.add_devices(3)
    assert world.db.devices.set_delivery_method(ACCOUNT, ids[1], "pull-coaps")
    assert world.db.devices.set_delivery_method(ACCOUNT, ids[2], "auto")          # auto: no override
    assert not world.db.devices.set_delivery_method("someone-else", ids[0], "push")
    spec = dataclasses.replace(world.spec(ids), delivery=Delivery.PULL_HTTP)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    assert world.stores.campaigns.get_campaign(campaign.campaign_id).spec.delivery is Delivery.PULL_HTTP
    starts = {c.device_id: c.delivery for c in world.engine.tick(world.clock.now()) if isinstance(c, StartAttempt)}
    assert starts == {ids[0]: Delivery.PULL_HTTP, ids[1]: Delivery.PULL_COAPS, ids[2]: Delivery.PULL_HTTP}
    resumed = {c.device_id: c.delivery for c in world.engine.recover(world.clock.now()) if isinstance(c, StartAttempt)}
    assert resumed == starts


def test_campaigns_default_to_auto(world: World) -> None:
    ids = world.add_devices(1)
    world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    (start,) = [c for c in world.engine.tick(world.clock.now()) if isinstance(c, StartAttempt)]
    assert start.delivery is Delivery.AUTO


def test_downloading_reason_names_the_method_and_keeps_it(world: World) -> None:
    ids = world.add_devices(1)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    (start,) = [c for c in world.engine.tick(world.clock.now()) if isinstance(c, StartAttempt)]
    now = world.clock.now()
    world.engine.on_outcome(AttemptProgressed(start.attempt_id, "LwM2M pull-coaps", via="LwM2M pull-coaps"), now)
    reason = world.stores.rows.get_row(campaign.campaign_id, ids[0]).result_reason
    assert reason == f"{R.DOWNLOADING} (LwM2M pull-coaps)"
    world.engine.on_outcome(AttemptProgressed(start.attempt_id, "LwM2M Execute accepted"), now)  # no via: kept
    assert world.stores.rows.get_row(campaign.campaign_id, ids[0]).result_reason == reason


def test_a_campaign_download_timeout_wins_over_the_account_setting(world: World) -> None:
    ids = world.add_devices(2)
    world.db.accounts.update_settings(ACCOUNT, {"download_timeout_s": 1800})
    timed, _ = world.service.schedule_campaign(ACCOUNT, dataclasses.replace(world.spec(ids[:1]), download_timeout_s=600))
    assert world.stores.campaigns.get_campaign(timed.campaign_id).spec.download_timeout_s == 600
    world.service.schedule_campaign(ACCOUNT, world.spec(ids[1:]))
    starts = {c.device_id: c.download_timeout_s for c in world.engine.tick(world.clock.now())
              if isinstance(c, StartAttempt)}
    assert starts == {ids[0]: 600, ids[1]: 1800}
