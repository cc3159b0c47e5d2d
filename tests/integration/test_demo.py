"""``fota-server demo`` with 500 mixed devices and 5 % injected faults: a pilot, then full campaigns over the
SMS API, and every device ends in the state and with the reason its fault implies. By the devices' own
count, every device that updated flashed exactly once, the others never, and the report says so."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
import subprocess
import sys
from pathlib import Path

import pytest

from device_emulator.faults import FleetFault
from fota_server.campaign.model import DeviceStatus
from tests.integration.test_fleet_campaign import expected

pytestmark = pytest.mark.integration


@pytest.mark.slow(60)
@pytest.mark.timeout(400)
def test_demo_of_500_devices(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "fota_server", "demo", "--lwm2m", "250", "--http", "170", "--omadm",
                           "80", "--timeout", "300", "--keep", str(keep)], capture_output=True, text=True, timeout=380)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "pilot: 10 LwM2M devices" in out and "Final report" in out and "Devices that did not update" in out

    results = json.loads((keep / "fleet-results.json").read_text())
    devices = results["devices"]
    assert len(devices) == 500
    faulty = [d for d in devices if d["fault"] != "none"]
    assert 20 <= len(faulty) <= 30  # 5 % of each protocol's devices, rounded per protocol and fault

    with sqlite3.connect(keep / "demo.db") as db:
        rows = {r[0]: (r[1], r[2]) for r in db.execute(
            "SELECT device_id, status, result_reason FROM campaign_devices WHERE status != 'RequestFailed'")}
    assert len(rows) == 500
    for device in devices:
        status, reason = expected(device["protocol"], FleetFault(device["fault"]))
        assert rows[device["device_id"]] == (status.value, reason), device
    not_updated = [d for d in devices if rows[d["device_id"]][0] != DeviceStatus.SUCCESS.value]
    assert 15 <= len(not_updated) <= len(faulty)  # an HTTP download cut once resumes and succeeds
    for device in not_updated:  # the report names every device that did not update, with its reason
        line = next(line for line in out.splitlines() if device["device_id"] in line)
        assert rows[device["device_id"]][1] in line

    # what the devices counted: one flash for each device that updated, none for the others, never two
    for device in devices:
        updated = rows[device["device_id"]][0] == DeviceStatus.SUCCESS.value
        assert device["flashes"] == (1 if updated else 0), device
        assert device["versions"] == (["1.0.0", "1.1.0"] if updated else ["1.0.0"]), device
        assert device["downloads"] >= device["flashes"], device
    assert all(d["flashes"] == 1 for d in devices if d["fault"] == "none")
    assert results["flashedTwiceOrMore"] == 0
    report = out[out.index("Final report"):].splitlines()
    for protocol in ("LWM2M", "HTTP", "OMADM"):
        flashes = Counter(d["flashes"] for d in devices if d["protocol"] == protocol)
        line = next(line for line in report if line.startswith(protocol) and "flashes:" in line)
        assert line.split("flashes:")[1].split() == [
            str(flashes[1]), "devices", "once,", str(flashes[0]), "never,", "0", "twice", "or", "more"]
