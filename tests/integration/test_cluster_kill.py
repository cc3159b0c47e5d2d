"""Two ``fota-server run`` processes on one PostgreSQL database share a mixed fleet and its campaigns; the one
leading the engine is killed (SIGKILL) midway and not started again. Judged by the devices: every one flashed
exactly once and runs the new version, the reports agree with them, no row is left in progress, and the
survivor holds every LwM2M registration at the end (a device of the dead process re-registered with it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device_emulator.fleet_spec import FleetSpec
from tests.clusterrig import rehearse_two_processes
from tests.crashrig import MAKE, MODEL

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_killing_one_of_two_processes_midway_still_flashes_every_device_exactly_once(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOTA_DATA_DIR", str(tmp_path / "data"))   # the commands' and both processes'
    # short lifetimes: a device of the killed process learns it is forgotten at its next Update (4.04)
    spec = FleetSpec(lwm2m=30, http=15, omadm=15, models=((MAKE, MODEL, 1.0),), cells=4, checkin_s=(2.0, 4.0),
                     lifetime_s=(20, 30), account="0000777000-00009", seed=11, start_rate_per_s=200)
    run, held = asyncio.run(rehearse_two_processes(tmp_path, postgres_url, spec, kill_share=0.3))
    summary = run.summary()
    assert [(i["signal"], i["exitCode"]) for i in run.interruptions] == [("SIGKILL", -9)], summary
    assert run.finished, summary
    assert run.exit_code == 0, summary
    assert run.doubled() == [], summary
    assert run.disagreements() == [], summary
    assert run.stuck() == [], summary
    for device in run.fleet.devices:
        assert device.flashes == 1 and device.final_version == "2.0.0", device
    lwm2m = set(run.endpoints.values())
    assert lwm2m <= set(held), sorted(lwm2m - set(held))[:5]
    assert {held[endpoint] for endpoint in lwm2m} == {"b"}, summary
