"""300 emulated LwM2M devices on two UDP sockets against ``fota-server run``: each device has its own source
address (127/8) and port, so the server keeps 300 registrations; a v3 campaign then updates every one of
them, and by the devices' own records each one downloaded and flashed its image exactly once."""

from __future__ import annotations

import asyncio
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from device_emulator.fleet import Fleet, ServerUrls
from device_emulator.fleet_devices import Lwm2mFleetDevice
from device_emulator.fleet_provision import write_manifest
from device_emulator.fleet_spec import FleetSpec, plan_devices
from device_emulator.links.udp_mux import pktinfo_supported
from device_emulator.results import FleetResult
from fota_server.protocol.image import build_image
from tests.serverproc import ServerProcess, create_account, import_fleet, session_headers

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not pktinfo_supported(), reason="needs IP_PKTINFO (Linux) for 127/8 addresses")]

ACC = "0000123456-00014"
MAKE, MODEL = "FOTA Emulator", "EMU-MUX"
DEVICES = 300
PILOT = 20
# 40 cells: the per-cell cap (8 devices updating at once) lets the whole fleet update in one round
SPEC = FleetSpec(lwm2m=DEVICES, models=((MAKE, MODEL, 1.0),), cells=40, lifetime_s=(900, 900), account=ACC,
                 seed=14, start_rate_per_s=300)


def _schedule(base: str, headers: dict[str, str], ids: list[str]) -> str:
    today, end = date.today().isoformat(), (date.today() + timedelta(days=2)).isoformat()
    response = httpx.post(f"{base}/api/fota/v3/campaigns/firmware/{ACC}", headers=headers, json={
        "firmwareName": "emu-mux", "firmwareFrom": "1.0.0", "firmwareTo": "2.0.0", "protocol": "LWM2M",
        "startDate": today, "endDate": end, "deviceList": ids})
    assert response.status_code == 200, response.text
    return f"{base}/api/fota/v3/reports/{ACC}/campaigns/{response.json()['id']}/devices"


async def _until_updated(fleet: Fleet, client: httpx.AsyncClient, report: str, ids: list[str],
                         rows: dict[str, Any]) -> None:
    """Poll the campaign's device report (bounded) until every device of ``ids`` is UpgradeSuccess."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 240
    while True:
        params: dict[str, str] = {}
        while True:  # the report comes in pages
            response = await client.get(report, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            rows.update({r["deviceId"]: r for r in body["deviceList"]})
            if not body["hasMoreData"]:
                break
            params = {"lastSeenDeviceId": body["lastSeenDeviceId"]}
        waiting = [i for i in ids if rows.get(i, {}).get("status") != "UpgradeSuccess"]
        if not waiting:
            return
        assert loop.time() < give_up, (fleet.counts(), [rows.get(i) for i in waiting[:5]])
        await fleet.wait_until(lambda _f: False, 1.0)   # the fleet runs on between report polls


async def _run(server: ServerProcess, headers: dict[str, str]) -> FleetResult:
    urls = ServerUrls(coap=f"coap://127.0.0.1:{server.ports['coap']}", http=server.base_url)
    fleet = Fleet.from_spec(SPEC, urls)
    async with fleet, httpx.AsyncClient(headers=headers, timeout=30) as client:
        assert await fleet.wait_until(lambda f: f.count("starting") == 0, 120), fleet.counts()
        devices = [d for d in fleet.devices if isinstance(d, Lwm2mFleetDevice)]
        addresses = {d.link.address for d in devices if d.link is not None}
        assert len(addresses) == DEVICES                       # one source address and port per device
        assert len(fleet.mux.udp.ports()) <= 4                 # on a handful of sockets
        assert len(os.listdir("/proc/self/fd")) < DEVICES      # not a descriptor per device

        ids = [d.plan.device_id for d in devices]
        rows: dict[str, Any] = {}
        for wave in (ids[:PILOT], ids[PILOT:]):   # the server wants a pilot campaign before a large one
            report = await asyncio.to_thread(_schedule, server.base_url, headers, wave)
            await _until_updated(fleet, client, report, wave, rows)
        await fleet.wait_until(lambda f: f.count("updated") == DEVICES, 60)
        return fleet.result()


def test_three_hundred_devices_on_two_sockets_update_once_each(tmp_path: Path) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACC, licenses=DEVICES)
    plans = plan_devices(SPEC)
    manifest = tmp_path / "fleet.json"
    write_manifest(plans, ACC, manifest)
    import_fleet(db, manifest, {"LWM2M": ("emu-mux", build_image(MAKE, MODEL, "2.0.0", 4096))}, MAKE, MODEL,
                 "1.0.0", "2.0.0")
    server = ServerProcess(db).start()
    try:
        headers = session_headers(server.base_url, creds)
        result = asyncio.run(asyncio.wait_for(_run(server, headers), 600))
    finally:
        server.stop()
    assert result.doubled() == []
    for device in result.devices:
        # by the device's own count: one download, one flash, the versions it ran
        assert (device.downloads, device.flashes, device.versions) == (1, 1, ("1.0.0", "2.0.0")), device
        assert device.final_version == "2.0.0", device
