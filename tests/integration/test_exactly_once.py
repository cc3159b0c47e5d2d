"""Exactly once, truthfully, under the bad day: a mixed fleet updated while ``fota-server run`` is killed
twice (SIGKILL) and stopped once (SIGTERM) mid-campaign, and a campaign with packet loss on every device
link. Judged by the devices themselves: each one flashed exactly once, runs the new version, and the
campaign reports agree with it; no row is left in progress; the server kept every registration."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from device_emulator.faults import FaultParams, FleetFault
from device_emulator.fleet_spec import FleetSpec
from tests.crashrig import MAKE, MODEL, Interruption, Rehearsal, rehearse

pytestmark = pytest.mark.integration


def _verdict(run: Rehearsal) -> None:
    summary = run.summary()
    assert run.finished, summary
    assert run.exit_code == 0, summary
    assert run.doubled() == [], summary
    assert run.disagreements() == [], summary
    assert run.stuck() == [], summary
    assert run.lost_registrations() == [], summary
    for device in run.fleet.devices:
        assert device.flashes == 1 and device.final_version == "2.0.0", device
        assert device.versions == ("1.0.0", "2.0.0"), device


@pytest.mark.slow(45)
@pytest.mark.timeout(300)
def test_kills_and_a_restart_mid_campaign_flash_every_device_exactly_once(tmp_path: Path) -> None:
    spec = FleetSpec(lwm2m=120, http=40, omadm=40, models=((MAKE, MODEL, 1.0),), cells=10, checkin_s=(2.0, 4.0),
                     lifetime_s=(60, 120), account="0000777000-00001", seed=7, start_rate_per_s=400)
    kills = [Interruption(0.2, signal.SIGKILL), Interruption(0.45, signal.SIGKILL), Interruption(0.7, signal.SIGTERM)]
    run = asyncio.run(rehearse(tmp_path, spec, kills, timeout_s=240))
    assert [i["signal"] for i in run.interruptions] == ["SIGKILL", "SIGKILL", "SIGTERM"]
    assert [i["exitCode"] for i in run.interruptions] == [-9, -9, 0]
    _verdict(run)


@pytest.mark.slow(160)
@pytest.mark.timeout(300)
def test_packet_loss_on_every_link_still_flashes_every_device_exactly_once(tmp_path: Path) -> None:
    spec = FleetSpec(lwm2m=12, http=6, omadm=6, models=((MAKE, MODEL, 1.0),), cells=2, checkin_s=(2.0, 4.0),
                     lifetime_s=(60, 120), account="0000777000-00002", seed=9, start_rate_per_s=200,
                     faults={FleetFault.PACKET_LOSS: 1.0}, fault_params=FaultParams(loss_rate=0.2))
    run = asyncio.run(rehearse(tmp_path, spec, [], image_size=2048, timeout_s=240, settings={"cell_cap": 20}))
    assert all(d.fault == "packet-loss" for d in run.fleet.devices)
    _verdict(run)
