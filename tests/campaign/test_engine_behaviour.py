from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from fota_server.campaign import CampaignStatus, DeviceStatus, ErrorThreshold, TimeWindow
from fota_server.campaign.drivers import (
    AttemptProgressed, DeviceUnreachable, InstallPackage, PackageDownloaded, SimulatedDevice,
    StartAttempt, UpdateFailed, UpdateSucceeded,
)
from fota_server.campaign.errors import InvalidTransition, PilotRequired
from fota_server.campaign.model import AttemptOutcomeKind
from fota_server.campaign.reasons import EngineReason as R

from tests.campaign.simulation import ACCOUNT, World


def starts(world: World) -> list[tuple[datetime, StartAttempt]]:
    return [(t, c) for t, c in world.driver.submitted if isinstance(c, StartAttempt)]


def test_cell_cap_limits_devices_updating_at_once_per_cell(make_world: Any) -> None:
    world = make_world(settings={"cell_cap": 3})
    ids = world.add_devices(10, cells=1)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    world.step()
    rows = world.rows(campaign.campaign_id)
    assert sum(r.status == DeviceStatus.IN_PROGRESS for r in rows) == 3
    queued = [r for r in rows if r.status == DeviceStatus.QUEUED]
    assert len(queued) == 7 and all(r.next_attempt_at is None for r in queued)
    world.run()
    assert {r.status for r in world.rows(campaign.campaign_id)} == {DeviceStatus.SUCCESS}


def test_global_cap_and_fairness_across_cells(make_world: Any) -> None:
    world = make_world(settings={"cell_cap": 5, "global_cap": 4})
    big = world.add_devices(20, cell_of=lambda i: "big")
    small = world.add_devices(2, prefix="sml", cell_of=lambda i: "small")
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(big + small))
    world.step()
    running = [r for r in world.rows(campaign.campaign_id) if r.status == DeviceStatus.IN_PROGRESS]
    assert len(running) == 4
    assert {r.cell for r in running} == {"big", "small"}   # the small cell is not starved by the big one


def test_devices_without_cell_form_one_group(make_world: Any) -> None:
    world = make_world(settings={"cell_cap": 2})
    ids = world.add_devices(6, cells=0)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    world.step()
    assert sum(r.status == DeviceStatus.IN_PROGRESS for r in world.rows(campaign.campaign_id)) == 2


def test_window_defers_first_attempt_and_next_attempt_time_is_true(make_world: Any) -> None:
    world = make_world()   # 09:30 UTC
    ids = world.add_devices(3)
    spec = world.spec(ids, windows=(TimeWindow(22, 24), TimeWindow(0, 6)))
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    tonight = datetime(2026, 3, 10, 22, tzinfo=timezone.utc)
    assert {r.next_attempt_at for r in world.rows(campaign.campaign_id)} == {tonight}
    world.run()
    assert [t for t, _ in starts(world)] == [tonight] * 3


def test_future_campaign_starts_at_midnight_utc(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(2)
    spec = world.spec(ids, start_date=world.clock.now().date() + timedelta(days=1),
                      end_date=world.clock.now().date() + timedelta(days=3))
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    assert campaign.status == CampaignStatus.REQUEST_QUEUED
    midnight = datetime(2026, 3, 11, tzinfo=timezone.utc)
    world.run(until=midnight - timedelta(seconds=1))
    assert starts(world) == []
    world.run()
    assert [t for t, _ in starts(world)] == [midnight] * 2


def test_failures_retry_with_backoff_and_reason(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(1)
    world.driver.devices[ids[0]] = SimulatedDevice(delay=timedelta(minutes=1), fail_times=2)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    world.step()
    world.step()   # the failure arrives
    row = world.stores.rows.get_row(campaign.campaign_id, ids[0])
    assert row.status == DeviceStatus.PENDING
    assert row.result_reason == "LwM2M update result 8: firmware update failed"
    assert row.next_attempt_at == row.recent_attempt_at + timedelta(minutes=1) + timedelta(minutes=5)
    world.run()
    attempts = world.stores.rows.attempts(device_id=ids[0])
    assert [a.outcome for a in attempts] == [AttemptOutcomeKind.FAILURE] * 2 + [AttemptOutcomeKind.SUCCESS]
    assert [a.result_code for a in attempts[:2]] == ["8", "8"]


def test_permanent_failure_ends_the_device_at_once(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(1)
    world.driver.devices[ids[0]] = SimulatedDevice(outcome="fail:2")
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    world.run()
    row = world.stores.rows.get_row(campaign.campaign_id, ids[0])
    assert (row.status, row.result_reason) == (DeviceStatus.FAILED, "LwM2M update result 2: not enough flash memory for the new package")


def test_lwm2m_unreachable_retried_daily_at_four_for_three_days(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(1)
    world.driver.devices[ids[0]] = SimulatedDevice(delay=timedelta(minutes=2), outcome="unreachable")
    spec = world.spec(ids, end_date=world.clock.now().date() + timedelta(days=10))
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    world.run()
    times = [t for t, _ in starts(world)]
    assert times[1:] == [datetime(2026, 3, d, 4, tzinfo=timezone.utc) for d in (11, 12, 13)]
    row = world.stores.rows.get_row(campaign.campaign_id, ids[0])
    assert (row.status, row.result_reason) == (DeviceStatus.FAILED, R.NOT_REACHABLE_FINAL)


def test_silent_device_times_out_and_is_retried(make_world: Any) -> None:
    world = make_world(settings={"attempt_timeout_s": 600})
    ids = world.add_devices(1)
    world.driver.devices[ids[0]] = SimulatedDevice(outcome="silent")
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids, end_date=world.clock.now().date()))
    world.run()
    attempts = world.stores.rows.attempts(device_id=ids[0])
    assert attempts[0].outcome == AttemptOutcomeKind.TIMEOUT
    assert attempts[0].ended_at - attempts[0].started_at == timedelta(seconds=600)
    row = world.stores.rows.get_row(campaign.campaign_id, ids[0])
    assert row.status == DeviceStatus.FAILED and row.final
    assert world.service.get_campaign(ACCOUNT, campaign.campaign_id).status == CampaignStatus.ENDED


def test_success_needs_the_reported_version(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(1)
    world.driver.devices[ids[0]] = SimulatedDevice(outcome="wrong-version")
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids, end_date=world.clock.now().date()))
    world.run()
    attempts = world.stores.rows.attempts(device_id=ids[0])
    assert attempts and all(a.result_reason == R.WRONG_VERSION_AFTER for a in attempts)
    assert world.stores.rows.get_row(campaign.campaign_id, ids[0]).status == DeviceStatus.FAILED


def test_ineligible_devices_get_reasons_not_a_failed_request(world: World) -> None:
    ok = world.add_devices(1)
    wrong_fw = world.add_devices(1, prefix="old", firmware_version="0.9")
    wrong_model = world.add_devices(1, prefix="mdl", model="Other")
    wrong_proto = world.add_devices(1, prefix="htp", protocol="HTTP")
    unlicensed = world.add_devices(1, prefix="lic", license=False)
    spec = world.spec(ok + wrong_fw + wrong_model + wrong_proto + unlicensed + ["ghost"])
    campaign, results = world.service.schedule_campaign(ACCOUNT, spec)
    reasons = {r.device_id: r.reason for r in results}
    assert reasons[wrong_fw[0]] == R.WRONG_VERSION
    assert reasons[wrong_model[0]] == R.WRONG_MAKE_MODEL
    assert reasons[wrong_proto[0]] == R.WRONG_PROTOCOL
    assert reasons[unlicensed[0]] == R.LICENSE_MISSING
    assert reasons["ghost"] == R.UNKNOWN_DEVICE
    assert campaign.status == CampaignStatus.SCHEDULED
    busy, results2 = world.service.schedule_campaign(ACCOUNT, world.spec(ok))
    assert results2[0].reason == R.BUSY and busy.status == CampaignStatus.REQUEST_FAILED


def test_auto_assign_license(world: World) -> None:
    ids = world.add_devices(2, license=False)
    campaign, results = world.service.schedule_campaign(ACCOUNT, world.spec(ids, auto_assign_license=True))
    assert [r.status for r in results] == ["UpgradePending"] * 2
    assert all(world.db.licenses.has_license(d) for d in ids)


def test_pilot_cap_until_pilots_succeed() -> None:
    world = World(settings={"pilot_cap": 4, "pilot_min_devices": 2})
    ids = world.add_devices(10)
    with pytest.raises(PilotRequired) as refused:
        world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    assert "Acme Tracker 1.0 -> 2.0" in refused.value.message
    pilot, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids[:3]))
    assert pilot.is_pilot
    world.run()
    world.db.devices.devices.clear()
    rest = world.add_devices(7, prefix="nxt")
    full, _ = world.service.schedule_campaign(ACCOUNT, world.spec(rest))
    assert not full.is_pilot


def test_cancel_before_start_and_abort_after_start(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(4)
    later = world.spec(ids[:2], start_date=world.clock.now().date() + timedelta(days=1),
                       end_date=world.clock.now().date() + timedelta(days=2))
    queued, _ = world.service.schedule_campaign(ACCOUNT, later)
    cancelled = world.service.cancel(ACCOUNT, queued.campaign_id)
    assert cancelled.status == CampaignStatus.CANCELLED
    assert {r.status for r in world.rows(queued.campaign_id)} == {DeviceStatus.CANCELLED}
    world2 = make_world(settings={"cell_cap": 1})
    ids2 = world2.add_devices(3)
    running, _ = world2.service.schedule_campaign(ACCOUNT, world2.spec(ids2))
    world2.step()
    aborted = world2.service.cancel(ACCOUNT, running.campaign_id)
    assert aborted.status == CampaignStatus.ABORTED
    world2.run()
    statuses = sorted(r.status.value for r in world2.rows(running.campaign_id))
    assert statuses == ["UpgradeCancelled", "UpgradeCancelled", "UpgradeSuccess"]   # the running one finished
    assert len(starts(world2)) == 1
    with pytest.raises(InvalidTransition):
        world2.service.cancel(ACCOUNT, running.campaign_id)


def test_change_dates_rules(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(2)
    today = world.clock.now().date()
    future, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids[:1], start_date=today + timedelta(days=2),
                                                                    end_date=today + timedelta(days=3)))
    moved = world.service.change_dates(ACCOUNT, future.campaign_id, today + timedelta(days=1),
                                       today + timedelta(days=5), windows=(TimeWindow(1, 2),))
    row = world.stores.rows.get_row(future.campaign_id, ids[0])
    assert row.next_attempt_at == datetime(2026, 3, 11, 1, tzinfo=timezone.utc)
    assert moved.spec.windows == (TimeWindow(1, 2),)
    started, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids[1:]))
    with pytest.raises(InvalidTransition):
        world.service.change_dates(ACCOUNT, started.campaign_id, today, today + timedelta(days=4),
                                   windows=(TimeWindow(1, 2),))
    with pytest.raises(InvalidTransition):
        world.service.change_dates(ACCOUNT, started.campaign_id, today, today)
    longer = world.service.change_dates(ACCOUNT, started.campaign_id, today, today + timedelta(days=9))
    assert longer.end_at == datetime(2026, 3, 20, tzinfo=timezone.utc)


def test_add_and_remove_devices(world: World) -> None:
    ids = world.add_devices(4)
    world.clock.set(world.clock.now())
    spec = world.spec(ids[:2], windows=(TimeWindow(22, 24),))
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    added = world.service.add_devices(ACCOUNT, campaign.campaign_id, [ids[2], ids[0], "ghost"])
    assert [(r.status, r.reason) for r in added] == [
        ("AddDeviceSucceed", R.ADDED), ("AddDeviceFailed", R.DUPLICATE), ("AddDeviceFailed", R.UNKNOWN_DEVICE)]
    removed = world.service.remove_devices(ACCOUNT, campaign.campaign_id, [ids[1], ids[3]])
    assert [r.status for r in removed] == ["RemoveDeviceSucceed", "RemoveDeviceFailed"]
    world.run()
    final = {r.device_id: r.status for r in world.rows(campaign.campaign_id)}
    assert final == {ids[0]: DeviceStatus.SUCCESS, ids[1]: DeviceStatus.CANCELLED, ids[2]: DeviceStatus.SUCCESS}


def test_error_threshold_pauses_and_resume_continues(make_world: Any) -> None:
    world = make_world(settings={"cell_cap": 2})
    ids = world.add_devices(10)
    for device_id in ids:
        world.driver.devices[device_id] = SimulatedDevice(outcome="fail:8")
    spec = world.spec(ids, error_threshold=ErrorThreshold(50, 2))
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    world.run(until=world.clock.now() + timedelta(hours=1))
    paused = world.service.get_campaign(ACCOUNT, campaign.campaign_id)
    assert paused.status == CampaignStatus.FAILED and "threshold" in paused.reason
    count = len(starts(world))
    world.run(until=world.clock.now() + timedelta(hours=6))
    assert len(starts(world)) == count   # nothing new while paused
    for device_id in ids:
        world.driver.devices[device_id] = SimulatedDevice()
    world.service.resume(ACCOUNT, campaign.campaign_id)
    world.run()
    assert world.service.get_campaign(ACCOUNT, campaign.campaign_id).status == CampaignStatus.ENDED
    assert all(r.final for r in world.rows(campaign.campaign_id))


def test_v2_install_window_waits_after_download(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(1)
    spec = world.spec(ids, api_version="v2", download_windows=(TimeWindow(9, 12),),
                      install_windows=(TimeWindow(2, 3),))
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    world.step()
    world.step()   # downloaded
    row = world.stores.rows.get_row(campaign.campaign_id, ids[0])
    assert row.status == DeviceStatus.DOWNLOADED
    assert row.next_attempt_at == datetime(2026, 3, 11, 2, tzinfo=timezone.utc)
    world.run()
    installs = [t for t, c in world.driver.submitted if isinstance(c, InstallPackage)]
    assert installs == [datetime(2026, 3, 11, 2, tzinfo=timezone.utc)]
    assert world.stores.rows.get_row(campaign.campaign_id, ids[0]).status == DeviceStatus.SUCCESS


def test_stale_and_unknown_outcomes_are_ignored(world: World) -> None:
    ids = world.add_devices(1)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    commands = world.engine.tick(world.clock.now())
    attempt_id = commands[0].attempt_id
    now = world.clock.now()
    assert world.engine.on_outcome(UpdateFailed("nope", "4"), now) == []
    world.engine.on_outcome(AttemptProgressed(attempt_id, "50%"), now)
    assert world.stores.rows.get_row(campaign.campaign_id, ids[0]).result_reason == R.DOWNLOADING
    world.engine.on_outcome(UpdateSucceeded(attempt_id, "2.0"), now)
    world.engine.on_outcome(UpdateFailed(attempt_id, "8"), now)   # late duplicate
    world.engine.on_outcome(DeviceUnreachable(attempt_id), now)
    world.engine.on_outcome(PackageDownloaded(attempt_id), now)
    assert world.stores.rows.get_row(campaign.campaign_id, ids[0]).status == DeviceStatus.SUCCESS


def test_recover_reissues_running_attempts_with_same_ids(world: World) -> None:
    ids = world.add_devices(3)
    world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    first = world.engine.tick(world.clock.now())
    again = world.engine.recover(world.clock.now())
    assert sorted(c.attempt_id for c in again) == sorted(c.attempt_id for c in first)
    assert all(isinstance(c, StartAttempt) and c.resumed for c in again)
    assert world.engine.tick(world.clock.now()) == []


def test_callback_notices_are_kept_per_listener(world: World) -> None:
    world.service.register_listener(ACCOUNT, "v3", "https://listener.example/fota")
    ids = world.add_devices(1)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    world.run()
    events = world.service.pending_callback_events(ACCOUNT)
    device_events = [e.payload["status"] for e in events if e.payload["type"] == "DeviceStatus"]
    assert device_events == ["UpgradePending", "UpgradeInProgress", "UpgradeSuccess"]
    assert events[-1].payload == {**events[-1].payload, "campaignStatus": "CampaignEnded"}
    assert {e.url for e in events} == {"https://listener.example/fota"}


def test_auto_add_devices_join_a_running_campaign(world: World) -> None:
    ids = world.add_devices(2)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids[:1], auto_add_devices=True))
    assert world.service.offer_device(ids[1]) == [campaign.campaign_id]
    assert world.service.offer_device(ids[1]) == []   # already in it
    late = world.add_devices(1, prefix="new", license=False)
    assert world.service.offer_device(late[0]) == []    # no license and no auto-assign
    world.run()
    assert {r.device_id: r.status for r in world.rows(campaign.campaign_id)} == {
        ids[0]: DeviceStatus.SUCCESS, ids[1]: DeviceStatus.SUCCESS}


def test_device_report_pages_and_history(world: World) -> None:
    ids = world.add_devices(5)
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    page = world.service.campaign_devices(ACCOUNT, campaign.campaign_id, limit=2)
    assert [r.device_id for r in page.rows] == ids[:2] and page.has_more and page.last_seen == ids[1]
    last = world.service.campaign_devices(ACCOUNT, campaign.campaign_id, after_device_id=ids[3], limit=2)
    assert [r.device_id for r in last.rows] == ids[4:] and not last.has_more
    world.run()
    (entry,) = world.service.device_history(ACCOUNT, ids[0])
    assert entry[0].campaign_id == campaign.campaign_id and entry[1].status == DeviceStatus.SUCCESS
    assert [a.outcome for a in world.service.device_attempts(ACCOUNT, ids[0])] == [AttemptOutcomeKind.SUCCESS]
    assert world.service.device_history("someone-else", ids[0]) == []
    listed, more = world.service.list_campaigns(ACCOUNT, CampaignStatus.ENDED)
    assert [c.campaign_id for c in listed] == [campaign.campaign_id] and not more


def test_windows_are_checked_and_normalised(world: World) -> None:
    from fota_server.campaign.errors import InvalidCampaign, InvalidWindow
    ids = world.add_devices(1)
    with pytest.raises(InvalidWindow):
        world.service.schedule_campaign(ACCOUNT, world.spec(ids, windows=(TimeWindow(22, 6),)))
    with pytest.raises(InvalidCampaign):
        world.service.schedule_campaign(ACCOUNT, world.spec(ids, protocol="HTTP"))   # the package is LwM2M
    campaign, _ = world.service.schedule_campaign(
        ACCOUNT, world.spec(ids, windows=(TimeWindow(22, 24), TimeWindow(0, 6), TimeWindow(22, 24))))
    assert campaign.spec.windows == (TimeWindow(0, 6), TimeWindow(22, 24))


def test_an_unreachable_lwm2m_device_that_comes_back_is_retried_then_not_at_four(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(1)
    world.driver.devices[ids[0]] = SimulatedDevice(delay=timedelta(minutes=2), outcome="unreachable")
    spec = world.spec(ids, end_date=world.clock.now().date() + timedelta(days=10))
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    world.run(until=world.clock.now() + timedelta(minutes=10))
    row = world.stores.rows.get_row(campaign.campaign_id, ids[0])
    assert row.status == DeviceStatus.PENDING and row.wake_at.hour == 4
    world.driver.devices[ids[0]].outcome = "success"
    back_at = world.clock.now()
    assert world.service.device_back(ids[0]) == 1       # its registration Update arrived
    assert world.service.device_back(ids[0]) == 0       # already moved: nothing twice
    world.run()
    assert starts(world)[-1][0] == back_at
    row = world.stores.rows.get_row(campaign.campaign_id, ids[0])
    assert (row.status, row.attempts) == (DeviceStatus.SUCCESS, 2)


def test_a_device_back_with_no_unreachable_row_moves_nothing(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(1)
    world.driver.devices[ids[0]] = SimulatedDevice(delay=timedelta(minutes=2), outcome="fail:4")
    campaign, _ = world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    world.run(until=world.clock.now() + timedelta(minutes=3))
    row = world.stores.rows.get_row(campaign.campaign_id, ids[0])
    assert row.status == DeviceStatus.PENDING and row.unreachable_count == 0
    assert world.service.device_back(ids[0]) == 0
    assert world.stores.rows.get_row(campaign.campaign_id, ids[0]).wake_at == row.wake_at


@pytest.mark.parametrize("first_s", [5, 300])
def test_first_retry_s_scales_the_retry_ladder(make_world: Any, first_s: int) -> None:
    world = make_world(settings={"first_retry_s": first_s})
    ids = world.add_devices(1)
    world.driver.devices[ids[0]] = SimulatedDevice(delay=timedelta(seconds=1), outcome="success", fail_times=2)
    world.service.schedule_campaign(ACCOUNT, world.spec(ids))
    world.run()
    times = [t for t, _ in starts(world)]
    assert len(times) == 3
    assert times[1] - times[0] == timedelta(seconds=1 + first_s)
    assert times[2] - times[1] == timedelta(seconds=1 + 3 * first_s)   # 15 min is three times 5 min


def test_recovery_continues_downloaded_and_installing_attempts_with_their_ids(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(2)
    for device_id in ids:
        world.driver.devices[device_id] = SimulatedDevice(delay=timedelta(minutes=1))
    spec = world.spec(ids, api_version="v2", install_windows=(TimeWindow(2, 3),))
    campaign, _ = world.service.schedule_campaign(ACCOUNT, spec)
    world.run(until=world.clock.now() + timedelta(minutes=5))
    rows = {r.device_id: r for r in world.rows(campaign.campaign_id)}
    assert {r.status for r in rows.values()} == {DeviceStatus.DOWNLOADED}
    commands = world.engine.recover(world.clock.now())
    assert sorted((c.attempt_id, type(c).__name__, getattr(c, "resumed", None), getattr(c, "install", None))
                  for c in commands) == sorted((rows[d].attempt_id, "StartAttempt", True, False) for d in ids)


def test_unreachable_waiting_lists_the_devices_parked_until_they_answer(make_world: Any) -> None:
    world = make_world()
    ids = world.add_devices(3)
    world.driver.devices[ids[0]] = SimulatedDevice(delay=timedelta(minutes=2), outcome="unreachable")
    world.driver.devices[ids[1]] = SimulatedDevice(delay=timedelta(minutes=2), outcome="fail:4")
    world.service.schedule_campaign(ACCOUNT, world.spec(ids, end_date=world.clock.now().date() + timedelta(days=5)))
    world.run(until=world.clock.now() + timedelta(minutes=10))
    assert world.service.unreachable_waiting("LWM2M") == [ids[0]]
    assert world.service.unreachable_waiting("HTTP") == []
