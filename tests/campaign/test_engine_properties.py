"""Properties over random campaigns: never outside windows, never over a cell cap, every device final by
the end date, nextAttemptTime never lies, no device with two attempts at once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from fota_server.campaign import CampaignStatus, TimeWindow
from fota_server.campaign.drivers import SimulatedDevice
from fota_server.campaign.policy import parse_windows

from tests.campaign.simulation import ACCOUNT, World, check_invariants

OUTCOMES = ["success", "success", "success", "fail:8", "fail:2", "unreachable", "silent", "wrong-version"]


@st.composite
def windows(draw: st.DrawFn) -> tuple[TimeWindow, ...]:
    pair = st.integers(0, 23).flatmap(lambda start: st.tuples(st.just(start), st.integers(start + 1, 24)))
    pairs = draw(st.lists(pair, max_size=3))
    return parse_windows(pairs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    devices=st.integers(1, 40),
    cells=st.integers(0, 5),
    cap=st.integers(1, 4),
    global_cap=st.integers(1, 50),
    days=st.integers(0, 4),
    start_in=st.integers(0, 2),
    hour=st.integers(0, 23),
    campaign_windows=windows(),
    outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=40),
    delay_min=st.integers(1, 300),
    fail_times=st.integers(0, 3),
)
def test_engine_promises_hold(devices: int, cells: int, cap: int, global_cap: int, days: int, start_in: int,
                              hour: int, campaign_windows: tuple[TimeWindow, ...], outcomes: list[str],
                              delay_min: int, fail_times: int) -> None:
    start = datetime(2026, 1, 30, hour, 17, tzinfo=timezone.utc)   # near a month end
    world = World(start, settings={"cell_cap": cap, "global_cap": global_cap, "attempt_timeout_s": 1800})
    world.service.register_listener(ACCOUNT, "v3", "https://listener.example/")
    ids = world.add_devices(devices, cells=cells)
    for index, device_id in enumerate(ids):
        world.driver.devices[device_id] = SimulatedDevice(
            delay=timedelta(minutes=delay_min), outcome=outcomes[index % len(outcomes)], fail_times=fail_times)
    today = world.clock.now().date()
    spec = world.spec(ids, start_date=today + timedelta(days=start_in),
                      end_date=today + timedelta(days=start_in + days), windows=campaign_windows)
    try:
        campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    except Exception as exc:   # only a window that never opens may refuse the request
        assert type(exc).__name__ == "InvalidDates"
        return
    world.run()
    assert world.service.get_campaign(ACCOUNT, campaign.campaign_id).status == CampaignStatus.ENDED
    check_invariants(world, campaign.campaign_id, cap=min(cap, global_cap))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    devices=st.integers(1, 30),
    cap=st.integers(1, 3),
    abort_after_min=st.integers(0, 600),
    campaign_windows=windows(),
    outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=10),
    v2=st.booleans(),
)
def test_abort_stops_new_attempts_and_every_device_ends(devices: int, cap: int, abort_after_min: int,
                                                        campaign_windows: tuple[TimeWindow, ...], outcomes: list[str],
                                                        v2: bool) -> None:
    from fota_server.campaign.drivers import StartAttempt
    world = World(settings={"cell_cap": cap, "attempt_timeout_s": 1200})
    ids = world.add_devices(devices, cells=2)
    for index, device_id in enumerate(ids):
        world.driver.devices[device_id] = SimulatedDevice(delay=timedelta(minutes=7),
                                                          outcome=outcomes[index % len(outcomes)])
    today = world.clock.now().date()
    extra = ({"download_windows": campaign_windows, "install_windows": (TimeWindow(3, 5),), "api_version": "v2"}
             if v2 else {"windows": campaign_windows})
    try:
        campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids, end_date=today + timedelta(days=3),
                                                                          **extra))
    except Exception as exc:
        assert type(exc).__name__ == "InvalidDates"
        return
    world.run(until=world.clock.now() + timedelta(minutes=abort_after_min))
    aborted_at = world.clock.now()
    status = world.service.get_campaign(ACCOUNT, campaign.campaign_id).status
    if status == CampaignStatus.ENDED:
        return
    world.service.cancel(ACCOUNT, campaign.campaign_id)
    world.run()
    late = [t for t, c in world.driver.submitted if isinstance(c, StartAttempt) and not c.resumed and t > aborted_at]
    assert late == []
    assert all(r.final for r in world.rows(campaign.campaign_id))
    assert world.service.get_campaign(ACCOUNT, campaign.campaign_id).status == CampaignStatus.ABORTED
    assert all(a.ended_at is not None for a in world.stores.rows.attempts(campaign_id=campaign.campaign_id))
