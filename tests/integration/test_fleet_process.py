"""A mixed fleet against ``fota-server run`` as a user runs it, on SQLite and on PostgreSQL: the devices imported from the fleet's manifest
with ``fota-server device import``, images added with ``fota-server firmware add``, one campaign per protocol
scheduled over the SMS API (v3 LwM2M, v2 HTTP, v1 OMA-DM), then 24 emulated devices (8 per protocol: one per
fault that ends an attempt quickly, two without a fault) in this process. Every device's first attempt must end as its fault
implies, as the campaign reports say, and the device must report the code its fault implies."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from device_emulator.faults import FaultParams, FleetFault, expected_result
from device_emulator.fleet import Fleet, ServerUrls
from device_emulator.fleet_provision import write_manifest
from device_emulator.fleet_spec import FleetSpec, plan_devices
from fota_server.campaign.reasons import EngineReason as R
from fota_server.protocol.image import build_image
from tests.serverproc import ServerProcess, create_account, import_fleet, session_headers

from .test_fleet_campaign import expected

pytestmark = pytest.mark.integration

ACC = "0000123456-00001"
MAKE, MODEL = "FOTA Emulator", "EMU-2"
# Faults whose first attempt ends within seconds under the server's default timeouts (a lossy or offline
# LwM2M device may wait for the driver's 30 s Object 5 poll, several times: those are in test_fleet_campaign).
QUICK = [FleetFault.LATENCY, FleetFault.CONNECTION_CUT, FleetFault.INTEGRITY_FAILURE, FleetFault.NOT_ENOUGH_FLASH,
         FleetFault.UPDATE_FAILURE, FleetFault.REBOOT_LOOP]
SPEC = FleetSpec(lwm2m=8, http=8, omadm=8, models=((MAKE, MODEL, 1.0),), cells=4, checkin_s=(2.0, 3.0),
                 lifetime_s=(600, 600), faults={f: 1 / 8 for f in QUICK}, account=ACC, seed=21,
                 fault_params=FaultParams(latency_s=0.05), start_rate_per_s=100)
PACKAGES = {"LWM2M": "emu2-lwm2m", "HTTP": "emu2-http", "OMADM": "emu2-omadm"}
FINAL = ("UpgradeSuccess", "UpgradeFailed")


def _schedule(base: str, headers: dict[str, str], ids: dict[str, list[str]]) -> dict[str, str]:
    """One campaign per protocol; the URL of each one's device report."""
    today, end = date.today().isoformat(), (date.today() + timedelta(days=2)).isoformat()
    v3 = httpx.post(f"{base}/api/fota/v3/campaigns/firmware/{ACC}", headers=headers, json={
        "firmwareName": PACKAGES["LWM2M"], "firmwareFrom": "1.0.0", "firmwareTo": "2.0.0", "protocol": "LWM2M",
        "startDate": today, "endDate": end, "deviceList": ids["LWM2M"]})
    v2 = httpx.post(f"{base}/api/fota/v2/campaigns/{ACC}", headers=headers, json={
        "softwareName": PACKAGES["HTTP"], "softwareFrom": "1.0.0", "softwareTo": "2.0.0",
        "distributionType": "HTTP", "startDate": today, "endDate": end, "deviceList": ids["HTTP"]})
    v1 = httpx.post(f"{base}/api/fota/v1/upgrades", headers=headers, json={
        "accountName": ACC, "firmwareName": PACKAGES["OMADM"], "firmwareTo": "2.0.0", "startDate": today,
        "endDate": end, "deviceList": ids["OMADM"]})
    for response in (v3, v2, v1):
        assert response.status_code == 200, response.text
    return {"LWM2M": f"{base}/api/fota/v3/reports/{ACC}/campaigns/{v3.json()['id']}/devices",
            "HTTP": f"{base}/api/fota/v2/reports/{ACC}/campaigns/{v2.json()['id']}/devices",
            "OMADM": f"{base}/api/fota/v1/upgrades/{ACC}/upgrade/{v1.json()['id']}"}


async def _reports(client: httpx.AsyncClient, urls: dict[str, str]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for url in urls.values():
        response = await client.get(url)
        assert response.status_code == 200, response.text
        rows.update({d["deviceId"]: d for d in response.json()["deviceList"]})
    return rows


def _attempted(row: dict[str, Any]) -> bool:
    """Ended, or waiting for a retry after an attempt (v1 reports have no recentAttemptTime)."""
    return row["status"] in FINAL or (row["status"] == "UpgradePending" and row["resultReason"] not in (
        R.SCHEDULED, R.ADDED))


async def _run(server: ServerProcess, headers: dict[str, str], reports: dict[str, str]) -> tuple[Any, Any]:
    plans = plan_devices(SPEC)
    urls = ServerUrls(coap=f"coap://127.0.0.1:{server.ports['coap']}", http=server.base_url)
    async with Fleet.from_spec(SPEC, urls) as fleet, httpx.AsyncClient(headers=headers) as client:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 80
        rows = await _reports(client, reports)
        while not (len(rows) == len(plans) and all(_attempted(r) for r in rows.values())):
            assert loop.time() < give_up, [(p.protocol, p.fault.value, rows.get(p.device_id, {}).get("status"),
                                            rows.get(p.device_id, {}).get("resultReason")) for p in plans
                                           if not _attempted(rows.get(p.device_id, {"status": ""}))]
            await fleet.wait_until(lambda _f: False, 0.5)  # the fleet keeps running between report polls
            rows = await _reports(client, reports)
        return rows, fleet.result()


@pytest.mark.slow(12)
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_mixed_fleet_against_fota_server_run(engine: str, tmp_path: Path, request: pytest.FixtureRequest,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    db: Path | str = tmp_path / "fota.db"
    if engine == "postgresql":   # the same, with every command and the server on --db postgresql://...
        db = str(request.getfixturevalue("postgres_url"))
        monkeypatch.setenv("FOTA_DATA_DIR", str(tmp_path / "data"))
    creds = create_account(db, ACC)
    plans = plan_devices(SPEC)
    manifest = tmp_path / "fleet.json"
    write_manifest(plans, ACC, manifest)
    image = build_image(MAKE, MODEL, "2.0.0", 8192)
    import_fleet(db, manifest, {protocol: (name, image) for protocol, name in PACKAGES.items()}, MAKE, MODEL,
                 "1.0.0", "2.0.0")
    server = ServerProcess(db).start()
    try:
        headers = session_headers(server.base_url, creds)
        ids = {p: [d.device_id for d in plans if d.protocol == p] for p in PACKAGES}
        reports = _schedule(server.base_url, headers, ids)
        rows, result = asyncio.run(asyncio.wait_for(_run(server, headers, reports), 100))
    finally:
        server.stop()
    by_id = result.by_id()
    for plan in plans:
        status, reason = expected(plan.protocol, plan.fault)
        row = rows[plan.device_id]
        assert (row["status"], row["resultReason"]) == (status.value, reason), (plan.protocol, plan.fault, row)
        device = by_id[plan.device_id]
        assert device.result_code == expected_result(plan.fault, plan.protocol), (plan, device)
        assert device.final_version == ("2.0.0" if status.value == "UpgradeSuccess" else "1.0.0"), (plan, device)
        # by the device's own count: one flash if it updated or rebooted into its old image, else none
        flashed = status.value == "UpgradeSuccess" or plan.fault is FleetFault.REBOOT_LOOP
        assert device.flashes == (1 if flashed else 0), (plan, device)
    assert result.doubled() == []
