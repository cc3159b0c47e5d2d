"""``fota-server demo`` with 500 mixed devices and 5 % injected faults: a pilot, then full campaigns over the
SMS API, and every device ends in the state and with the reason its fault implies."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from device_emulator.faults import FleetFault
from fota_server.campaign.model import DeviceStatus
from tests.integration.test_fleet_campaign import expected

pytestmark = pytest.mark.integration


@pytest.mark.timeout(400)
def test_demo_of_500_devices(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "fota_server", "demo", "--lwm2m", "250", "--http", "170", "--omadm",
                           "80", "--timeout", "300", "--keep", str(keep)], capture_output=True, text=True, timeout=380)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "pilot: 10 LwM2M devices" in out and "Final report" in out and "Devices that did not update" in out

    devices = json.loads((keep / "fleet-results.json").read_text())["devices"]
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
