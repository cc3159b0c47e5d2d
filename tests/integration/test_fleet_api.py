"""``run_fleet`` from Python: a spec, the server's URLs and a progress callback in; per-device results out
(and as JSON). Against the three protocol servers in this event loop, over loopback."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from device_emulator.fleet import Fleet, ServerUrls, run_fleet
from device_emulator.fleet_provision import manifest
from device_emulator.fleet_spec import FleetSpec, cell_text, plan_devices
from device_emulator.faults import FleetFault

from .test_fleet_rig import fleet_server

pytestmark = pytest.mark.integration

SPEC = FleetSpec(lwm2m=5, http=3, omadm=2, cells=4, seed=3, faults={FleetFault.LATENCY: 0.2},
                 checkin_s=(5.0, 5.0), lifetime_s=(300, 300))


async def _scenario(tmp_path: Path) -> None:
    plans = plan_devices(SPEC)
    seen: list[Counter[tuple[str, str]]] = []
    async with fleet_server(tmp_path / "fota.db", manifest(plans, SPEC.account)) as rig:
        result = await run_fleet(SPEC, rig.urls, until=lambda f: f.count("starting") == 0, duration_s=30,
                                 on_progress=lambda _t, counts: seen.append(counts), progress_s=0.5)
        stored = {d.device_id: d for d in rig.services.db.devices.list_devices(SPEC.account, limit=100)}
    assert result.counts() == {("LWM2M", "idle"): 5, ("HTTP", "idle"): 3, ("OMADM", "idle"): 2}
    assert seen and seen[-1] == result.counts() and sum(seen[-1].values()) == 10
    assert result.startup_s > 0 and result.elapsed_s >= result.startup_s
    assert [d.device_id for d in result.devices] == [p.device_id for p in plans]
    for plan, device in zip(plans, result.devices):
        assert (device.cell, device.fault, device.final_version) == (cell_text(plan.cell), plan.fault.value, "1.0.0")
    lwm2m = [p for p in plans if p.protocol == "LWM2M"]
    assert all(stored[p.device_id].serving_cell == cell_text(p.cell) for p in lwm2m), "LwM2M cells reported"
    path = tmp_path / "results.json"
    result.write(path)
    data = json.loads(path.read_text())
    assert data["counts"] == {"HTTP/idle": 3, "LWM2M/idle": 5, "OMADM/idle": 2}
    assert [d["device_id"] for d in data["devices"]] == [p.device_id for p in plans]
    # 20 % of 5, 3 and 2 devices, rounded: 1, 1 and 0
    assert Counter((d["protocol"], d["fault"]) for d in data["devices"] if d["fault"] != "none") == {
        ("LWM2M", "latency"): 1, ("HTTP", "latency"): 1}


def test_run_fleet_from_python(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 60), debug=True)


def test_a_fleet_of_lwm2m_devices_needs_a_coap_url() -> None:
    async def start() -> None:
        fleet = Fleet(plan_devices(FleetSpec(lwm2m=1)), ServerUrls(http="http://127.0.0.1:9"))
        try:
            await fleet.start()
        finally:
            await fleet.stop()

    with pytest.raises(ValueError):
        asyncio.run(start())
