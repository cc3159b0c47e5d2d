"""A mixed fleet of 30 emulated devices (10 LwM2M, 10 HTTP, 10 OMA-DM, one per fault and protocol) in one
event loop against the three protocol servers and the engine runner, over real sockets on loopback. One
campaign per protocol; every device must end its first attempt in the campaign status and result reason
its fault implies, and report on the device side the result code its fault implies."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from pathlib import Path

import pytest

from device_emulator.faults import FaultParams, FleetFault, expected_result
from device_emulator.fleet import Fleet
from device_emulator.fleet_provision import manifest
from device_emulator.fleet_spec import FleetSpec, plan_devices
from device_emulator.progress import summary_table
from fota_server.campaign import CampaignSpec
from fota_server.campaign.model import DeviceStatus
from fota_server.adapters.http_driver import engine_code
from fota_server.campaign.reasons import EngineReason as R, FUMO_REASONS, LWM2M_REASONS, lookup
from fota_server.protocol.http_fota.manifest import ReportState, StatusReport
from fota_server.protocol.image import build_image

from .test_fleet_rig import fleet_server

pytestmark = pytest.mark.integration

MAKE, MODEL = "FOTA Emulator", "EMU-1"
FAULTS = [f for f in FleetFault if f is not FleetFault.NONE]
SPEC = FleetSpec(lwm2m=10, http=10, omadm=10, models=((MAKE, MODEL, 1.0),), versions=(("1.0.0", 1.0),), cells=5,
                 checkin_s=(2.0, 3.0), lifetime_s=(86400, 86400), faults={f: 0.1 for f in FAULTS},
                 fault_params=FaultParams(loss_rate=0.2, latency_s=0.05, offline_s=3.0), seed=7,
                 start_rate_per_s=200)
API = {"LWM2M": ("v3", "LWM2M"), "HTTP": ("v2", "HTTP"), "OMADM": ("v1", "OMA-DM")}
OK = (DeviceStatus.SUCCESS, R.SUCCESS)
RETRY, FINAL = DeviceStatus.PENDING, DeviceStatus.FAILED
# An LwM2M device that drops off as its update starts: the attempt ends when the driver's download timeout
# passes, with the Update Result the device last showed (0). Retried, as an unreachable device would be.
OFFLINE_LWM2M = lookup("LWM2M", "0")[0]


def expected(protocol: str, fault: FleetFault) -> tuple[DeviceStatus, str]:
    """The campaign status and reason after the device's first attempt (a retry is minutes away)."""
    code = expected_result(fault, protocol)
    if fault is FleetFault.REBOOT_LOOP:
        return RETRY, R.WRONG_VERSION_AFTER
    if fault is FleetFault.OFFLINE and protocol == "LWM2M":
        return RETRY, OFFLINE_LWM2M
    if code is None:
        return OK
    if protocol == "LWM2M":
        reason, retry = LWM2M_REASONS[code]
    elif protocol == "OMADM":
        reason, retry = FUMO_REASONS[code]
    else:
        reason, retry = lookup("HTTP", engine_code(StatusReport(1, ReportState.FAILURE, code)))
    return (RETRY if retry else FINAL), reason


async def _scenario(tmp_path: Path) -> None:
    plans = plan_devices(SPEC)
    async with fleet_server(tmp_path / "fota.db", manifest(plans, SPEC.account), download_s=10) as rig:
        services = rig.services
        services.db.accounts.update_settings(SPEC.account, {"pilot_cap": 1000})
        packages = {}
        for protocol in API:
            image = build_image(MAKE, MODEL, "2.0.0", 8192)
            packages[protocol] = services.firmware.add(
                io.BytesIO(image), name=f"emu-2.0.0-{protocol.lower()}", make=MAKE, model=MODEL,
                version_from="1.0.0", version_to="2.0.0", protocol=protocol).package_id
        fleet = Fleet.from_spec(SPEC, rig.urls)
        try:
            await fleet.start()
            registered = await fleet.wait_until(lambda f: f.count("starting") == 0, 30)
            assert registered, fleet.counts()
            today = services.clock.now().date()
            campaigns = {}
            for protocol, (api, name) in API.items():
                ids = tuple(p.device_id for p in plans if p.protocol == protocol)
                campaign, results = rig.campaigns.schedule_campaign(SPEC.account, CampaignSpec(
                    api_version=api, kind="firmware", protocol=name, package_id=packages[protocol], make=MAKE,
                    model=MODEL, firmware_from="1.0.0", firmware_to="2.0.0", start_date=today,
                    end_date=today + timedelta(days=2), device_ids=ids, name=f"fleet-{protocol}"))
                assert all(r.status == DeviceStatus.PENDING.value for r in results), results
                campaigns[protocol] = campaign.campaign_id

            def rows() -> dict[str, object]:
                return {r.device_id: r for cid in campaigns.values()
                        for r in rig.campaigns.campaign_devices(SPEC.account, cid, limit=1000).rows}

            def attempted(_f: Fleet) -> bool:
                return all(r.final or (r.status == DeviceStatus.PENDING and r.attempts >= 1)  # type: ignore[attr-defined]
                           for r in rows().values())

            done = await fleet.wait_until(attempted, 90)
            result = fleet.result()
        finally:
            await fleet.stop()
        seen = {d: (r.status, r.result_reason) for d, r in rows().items()}  # type: ignore[attr-defined]
        print(summary_table(result.devices))
        assert done, f"not every device finished an attempt: {seen}"
        by_id = result.by_id()
        for plan in plans:
            assert seen[plan.device_id] == expected(plan.protocol, plan.fault), (plan.protocol, plan.fault)
            device = by_id[plan.device_id]
            assert device.result_code == expected_result(plan.fault, plan.protocol), (plan, device)
            assert bool(device.result_name) == (device.result_code is not None), device
            updated = seen[plan.device_id][0] == DeviceStatus.SUCCESS
            assert device.final_version == ("2.0.0" if updated else "1.0.0"), (plan, device)


@pytest.mark.slow(24)
def test_mixed_fleet_ends_as_its_faults_imply(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 110), debug=True)
