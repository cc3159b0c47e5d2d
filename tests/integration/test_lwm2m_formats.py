"""Content-format negotiation over real sockets: clients without TLV (Eclipse Wakaama's default build, many
LwM2M 1.1+ clients) are read in what they announce or accept, and updated by a whole campaign."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from device_emulator.links.coap import CoapLink
from device_emulator.lwm2m.client import ClientConfig, LwM2MClient
from device_emulator.lwm2m.firmware import DeviceFirmware
from firmware_samples import SAMPLES_DIR, load_manifest
from fota_server.protocol.lwm2m.content import ContentFormat as CF
from fota_server.protocol.lwm2m.objects import ProtocolSupport
from fota_server.protocol.lwm2m.paths import LwM2MPath as P
from tests.integration.test_lwm2m_interop import EP, Lab, job, run
from tests.serverproc import ServerProcess, cli, create_account, session_headers

pytestmark = pytest.mark.integration
ACC = "0000123456-00013"


async def _device(lab: Lab, formats: tuple[int, ...], version: str, announce: bool) -> CoapLink:
    firmware = DeviceFirmware(flash_bytes=1 << 20, protocols=(ProtocolSupport.COAP,))
    config = ClientConfig(EP, version=version, formats=formats, announce_formats=announce, cell=(262, 1, 77, 4242))
    link = CoapLink(LwM2MClient(config, firmware), f"coap://127.0.0.1:{lab.port}")
    lab.links.append(link)
    reported = asyncio.Event()
    lab.server.report_listeners.append(lambda endpoint, report: reported.set())
    await link.start()
    await asyncio.wait_for(reported.wait(), 20)
    return link


def test_a_1_1_client_that_speaks_only_tlv_and_announces_nothing_is_read_and_updated(tmp_path: Path) -> None:
    """SenML CBOR is refused, SenML JSON too; the next read starts from TLV, the first object is read again,
    and the firmware update reads Object 5 in TLV straight away."""
    async def scenario(lab: Lab) -> None:
        link = await _device(lab, (CF.TLV,), "1.1", announce=False)
        report = lab.server.reports[EP]
        assert (report.manufacturer, report.firmware_version, report.serving_cell) == \
            ("FOTA Emulator", "1.0.0", "262-1-77-4242")
        reads = [(path, code) for method, path, code in link.answered if method == "GET"]
        assert reads == [("/3/0", "4.06"), ("/3/0", "4.06"), ("/4/0", "2.05"), ("/3/0", "2.05")]
        assert lab.server.formats.remembered(EP) is CF.TLV
        events = await lab.update(job())
        assert type(events[-1]).__name__ == "UpdateSucceeded", events
        assert ("GET", "/5/0", "2.05") in link.answered
        assert ("GET", "/5/0", "4.06") not in link.answered
    run(tmp_path, scenario)


def test_a_wakaama_like_client_is_read_in_senml_json_first(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        link = await _device(lab, (CF.SENML_JSON, CF.SENML_CBOR), "1.1", announce=True)
        registration = lab.server.book.by_endpoint(EP)
        assert registration is not None and registration.objects.content_formats == (CF.SENML_JSON,)
        assert [code for method, _, code in link.answered if method == "GET"] == ["2.05", "2.05"]
        reply = await lab.server.read(EP, P(5, 0), timeout_s=10)
        assert (reply.code, reply.content_format) == ("2.05", CF.SENML_JSON)
        reply = await lab.server.read(EP, P(3, 0, 3), timeout_s=10)
        assert (reply.code, reply.content_format, reply.payload) == ("2.05", CF.TEXT, b"1.0.0")
        assert len(lab.server.formats) == 0   # the first choice worked: nothing to remember
    run(tmp_path, scenario)


# ---------------------------------------------------------------- against ``fota-server run``

def _wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)  # polling a separate process's database for a condition, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("device_args", [
    pytest.param(["--wakaama"], id="wakaama-default-build"),
    pytest.param(["--lwm2m-version", "1.2", "--formats", "lwm2m-json", "--no-announce-formats"],
                 id="lwm2m-json-only-announces-nothing"),
])
@pytest.mark.slow(13)
def test_a_device_without_tlv_registers_is_described_and_updated_by_a_campaign(
        tmp_path: Path, server_factory: Callable[..., ServerProcess], device_args: list[str]) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACC)
    (entry,) = [e for e in load_manifest() if e["protocol"] == "LWM2M"]
    cli("firmware", "add", str(SAMPLES_DIR / entry["file"]), "--name", entry["name"], "--make", entry["make"],
        "--model", entry["model"], "--from", entry["from"], "--to", entry["to"], "--protocol", "LWM2M", db=db)
    device_id = "490154203237519"
    # nothing about the device is known but its id: make, model, version and cell come from reading it
    cli("device", "add", device_id, "--account", ACC, "--protocol", "LWM2M", "--license", db=db)
    server = server_factory(db)
    device = subprocess.Popen(
        [sys.executable, "-m", "device_emulator", "lwm2m", "--server", f"coap://127.0.0.1:{server.ports['coap']}",
         "--endpoint", f"urn:imei:{device_id}", "--make", entry["make"], "--model", entry["model"],
         "--firmware-version", entry["from"], "--cell", "262-1-77-4242", "--until-version", entry["to"],
         "--run-s", "120", *device_args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def described() -> dict[str, Any] | None:
            listed = json.loads(cli("device", "list", "--account", ACC, db=db).stdout)
            found = [d for d in listed if d["deviceId"] == device_id and d["make"]]
            return found[0] if found else None

        record = _wait_for(described, 60, "the device's /3/0 and /4/0 to be recorded")
        assert (record["make"], record["model"], record["firmwareVersion"], record["cell"]) == \
            (entry["make"], entry["model"], entry["from"], "262-1-77-4242")

        base, headers = server.base_url, session_headers(server.base_url, creds)
        today, end = date.today().isoformat(), (date.today() + timedelta(days=3)).isoformat()
        campaign = httpx.post(f"{base}/api/fota/v3/campaigns/firmware/{ACC}", headers=headers, json={
            "firmwareName": entry["name"], "firmwareFrom": entry["from"], "firmwareTo": entry["to"],
            "protocol": "LWM2M", "startDate": today, "endDate": end, "deviceList": [device_id],
            "autoAssignLicenseFlag": False, "autoAddDevicesFlag": False})
        assert campaign.status_code == 200, campaign.text
        out, err = device.communicate(timeout=150)
    finally:
        if device.poll() is None:
            device.kill()
            device.communicate(timeout=20)
    assert f'"firmware_version": "{entry["to"]}"' in out, out[-2000:] + err[-2000:]
    assert '"reboots": 1' in out, out[-2000:]
    report_url = f"{base}/api/fota/v3/reports/{ACC}/campaigns/{campaign.json()['id']}/devices"

    def finished() -> list[tuple[str, str]] | None:
        devices = httpx.get(report_url, headers=headers).json()["deviceList"]
        statuses = [(d["status"], d["resultReason"]) for d in devices]
        return statuses if statuses and statuses[0][0] != "UpgradeInProgress" else None

    assert _wait_for(finished, 30, "the campaign report") == [("UpgradeSuccess", "Upgrade completed successfully")]
    listed = {d["deviceId"]: d for d in json.loads(cli("device", "list", "--account", ACC, db=db).stdout)}
    assert listed[device_id]["firmwareVersion"] == entry["to"]
