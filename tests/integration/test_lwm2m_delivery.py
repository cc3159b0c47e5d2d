"""Black-box: ``fota-server run`` and emulated LwM2M devices (``device-emulator lwm2m`` processes) on loopback.
Three v3 campaigns name three delivery methods (``push``, ``pull-http``, ``auto``) and each updates its device
that way; a fourth device that takes the Package URI and never downloads shows the method in its report reason
while the attempt runs."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from firmware_samples import SAMPLES_DIR, load_manifest
from tests.serverproc import ServerProcess, cli, create_account, session_headers

pytestmark = pytest.mark.integration
ACC = "0000123456-00001"
FIRMWARE = "Acme-Sensor-1-1.0.0-to-1.1.0"
DEVICES = {"490154203237511": "push", "490154203237512": "pull-http", "490154203237513": "auto",
           "490154203237514": "pull-coap"}
STUCK = "490154203237514"   # --fault ignore-uri: takes the URI, never downloads


def _report(base: str, headers: dict[str, str], campaign_id: str) -> dict[str, Any]:
    rows = httpx.get(f"{base}/api/fota/v3/reports/{ACC}/campaigns/{campaign_id}/devices", headers=headers,
                     timeout=10).json()["deviceList"]
    return dict(rows[0])


def _wait_for(check: Callable[[], bool], timeout_s: float = 90) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.2)   # polling a report over HTTP, not synchronising on time
    return False


@pytest.mark.slow(15)
def test_each_campaign_delivers_the_way_it_names(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACC)
    entry = next(e for e in load_manifest() if e["name"] == FIRMWARE)
    cli("firmware", "add", str(SAMPLES_DIR / entry["file"]), "--name", entry["name"], "--make", entry["make"],
        "--model", entry["model"], "--from", entry["from"], "--to", entry["to"], "--protocol", entry["protocol"], db=db)
    for device_id in DEVICES:
        cli("device", "add", device_id, "--account", ACC, "--protocol", "LWM2M", "--make", "Acme", "--model",
            "Sensor-1", "--firmware", "1.0.0", "--license", db=db)
    server = server_factory(db)
    base, headers = server.base_url, session_headers(server.base_url, creds)
    today, end = date.today().isoformat(), (date.today() + timedelta(days=3)).isoformat()
    campaigns = {}
    for device_id, method in DEVICES.items():
        created = httpx.post(f"{base}/api/fota/v3/campaigns/firmware/{ACC}", headers=headers, timeout=10, json={
            "firmwareName": FIRMWARE, "firmwareFrom": "1.0.0", "firmwareTo": "1.1.0", "protocol": "LWM2M",
            "startDate": today, "endDate": end, "deviceList": [device_id], "deliveryMethod": method})
        assert created.status_code == 200, created.text
        campaigns[device_id] = created.json()["id"]
        if method != "auto":
            assert created.json()["deliveryMethod"] == method

    emulators = {device_id: subprocess.Popen(
        [sys.executable, "-m", "device_emulator", "lwm2m", "--server", f"coap://127.0.0.1:{server.ports['coap']}",
         "--endpoint", f"urn:imei:{device_id}", "--make", "Acme", "--model", "Sensor-1", "--firmware-version", "1.0.0",
         "--protocol-support", "coap,http", "--delivery", "both", "--run-s", "90",
         *(["--fault", "ignore-uri"] if device_id == STUCK else ["--until-version", "1.1.0"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for device_id in DEVICES}
    try:
        stuck_reason = "Device is downloading the package (LwM2M pull-coap)"
        assert _wait_for(lambda: _report(base, headers, campaigns[STUCK]).get("resultReason") == stuck_reason), \
            _report(base, headers, campaigns[STUCK])
        outputs = {}
        for device_id, process in emulators.items():
            if device_id != STUCK:
                outputs[device_id] = process.communicate(timeout=120)
    finally:
        for process in emulators.values():
            if process.poll() is None:
                process.terminate()
                process.communicate(timeout=20)

    for device_id, (stdout, stderr) in outputs.items():
        assert '"firmware_version": "1.1.0"' in stdout, (device_id, stdout[-2000:], stderr[-2000:])
        assert _wait_for(lambda: _report(base, headers, campaigns[device_id])["status"] == "UpgradeSuccess", 30)
        assert _report(base, headers, campaigns[device_id])["resultReason"] == "Upgrade completed successfully"
    log = "".join(server.output)
    used = {"490154203237511": "push", "490154203237512": "pull-http", "490154203237513": "pull-coap"}  # auto: coap
    for device_id, method in used.items():
        assert f"for {device_id} delivers by {method}" in log, (device_id, log[-3000:])
    assert f"for {STUCK} delivers by pull-coap" in log
