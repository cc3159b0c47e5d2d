"""What fleet devices count of themselves (downloads, flashes, versions run), without IO: a reboot into the
old image is a flash that changes no version, a failed install is none, and the results and the summary
say how many devices flashed once, never, or twice or more."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from device_emulator.faults import FleetFault, hooks_for
from device_emulator.fleet_devices import HttpFleetDevice, Lwm2mFleetDevice, OmadmFleetDevice
from device_emulator.fleet_spec import DevicePlan, FleetSpec, plan_devices
from device_emulator.lwm2m.messages import DeviceRequest
from device_emulator.progress import flash_lines, summary_table
from device_emulator.results import DeviceResult, FleetResult
from fota_server.protocol.image import build_image

SPEC = FleetSpec(lwm2m=1, http=1, omadm=1, models=(("Acme", "M1", 1.0),), versions=(("1.0.0", 1.0),), seed=3)


def _plan(protocol: str) -> DevicePlan:
    return next(p for p in plan_devices(SPEC) if p.protocol == protocol)


def _lwm2m_update(fault: FleetFault) -> Lwm2mFleetDevice:
    device = Lwm2mFleetDevice(_plan("LWM2M"), hooks_for(fault, "LWM2M"), ("127.0.0.1", 5683))
    client = device.client
    image = build_image("Acme", "M1", "2.0.0", 4096)
    assert client.handle(DeviceRequest("PUT", ("5", "0", "0"), payload=image, content_format=42), 0.0).code == "2.04"
    assert client.handle(DeviceRequest("POST", ("5", "0", "2")), 1.0).code == "2.04"
    client.on_timer(2.0)  # the flash and reboot
    return device


@pytest.mark.parametrize(("fault", "flashes", "versions"), [
    (FleetFault.NONE, 1, ("1.0.0", "2.0.0")),
    (FleetFault.REBOOT_LOOP, 1, ("1.0.0",)),      # written and rebooted, the old image came up
    (FleetFault.UPDATE_FAILURE, 0, ("1.0.0",)),   # the install failed before writing anything
])
def test_lwm2m_fleet_device_counts_its_flashes(fault: FleetFault, flashes: int, versions: tuple[str, ...]) -> None:
    device = _lwm2m_update(fault)

    async def record() -> DeviceResult:
        return device.result()

    result = asyncio.run(record())
    assert (result.downloads, result.flashes, result.versions) == (1, flashes, versions)
    assert result.final_version == versions[-1]


@pytest.mark.parametrize(("rolls_back", "versions"), [(False, ("1.0.0", "2.0.0")), (True, ("1.0.0",))])
def test_omadm_fleet_device_counts_a_rollback_as_a_flash(rolls_back: bool, versions: tuple[str, ...]) -> None:
    fault = FleetFault.REBOOT_LOOP if rolls_back else FleetFault.NONE
    device = OmadmFleetDevice(_plan("OMADM"), hooks_for(fault, "OMADM"), "http://127.0.0.1:1/dm",
                              httpx.AsyncHTTPTransport())
    device.device.staged_version = "2.0.0"  # a package checked and staged, as finish_download leaves it
    device.device.reboot()
    device.device.reboot()  # a second reboot with nothing staged writes nothing
    assert device.tally() == (0, 1, versions)


def test_http_fleet_device_reports_its_machine_counts() -> None:
    device = HttpFleetDevice(_plan("HTTP"), hooks_for(FleetFault.NONE, "HTTP"), "http://127.0.0.1:1",
                             httpx.AsyncHTTPTransport())
    device.machine.downloads, device.machine.flashes = 2, 1
    device.machine.versions.append("2.0.0")
    assert device.tally() == (2, 1, ("1.0.0", "2.0.0"))


def _result(device_id: str, protocol: str, flashes: int) -> DeviceResult:
    return DeviceResult(device_id, protocol, "c", "m", "n", "none", "1", "2", "updated", None, (), "",
                        flashes, flashes, ("1",) + ("2",) * min(flashes, 1))


def test_results_count_devices_flashed_more_than_once(tmp_path: Path) -> None:
    fleet = FleetResult([_result("a", "LWM2M", 1), _result("b", "LWM2M", 2), _result("c", "HTTP", 0),
                         _result("d", "OMADM", 1), _result("e", "LWM2M", 0)])
    assert [d.device_id for d in fleet.doubled()] == ["b"]
    fleet.write(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["flashedTwiceOrMore"] == 1
    assert data["flashes"] == {"HTTP/never": 1, "LWM2M/never": 1, "LWM2M/once": 1, "LWM2M/twiceOrMore": 1,
                               "OMADM/once": 1}
    by_id = {d["device_id"]: d for d in data["devices"]}
    assert (by_id["b"]["downloads"], by_id["b"]["flashes"], by_id["b"]["versions"]) == (2, 2, ["1", "2"])
    assert flash_lines(fleet.devices) == [
        "LWM2M flashes: 1 devices once, 1 never, 1 twice or more",
        "HTTP  flashes: 0 devices once, 1 never, 0 twice or more",
        "OMADM flashes: 1 devices once, 0 never, 0 twice or more",
    ]
    assert summary_table(fleet.devices).splitlines()[-3:] == flash_lines(fleet.devices)
