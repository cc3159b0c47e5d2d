"""The whole product as a user runs it: ``fota-server run`` in its own process, devices provisioned with
the CLI, campaigns scheduled over the SMS API, and one emulated device per protocol (``device-emulator``
processes over real sockets) updated to the new firmware, as the reports then say."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import httpx
import pytest

from firmware_samples import SAMPLES_DIR, load_manifest
from tests.serverproc import ServerProcess, cli, create_account, session_headers

pytestmark = pytest.mark.integration
ACC = "0000123456-00001"


def _emulator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "device_emulator", *args], capture_output=True, text=True, timeout=90)


def _device(db: Path, device_id: str, protocol: str, make: str, model: str, version: str) -> None:
    cli("device", "add", device_id, "--account", ACC, "--protocol", protocol, "--make", make, "--model", model,
        "--firmware", version, "--license", db=db)


def test_one_device_of_each_protocol_is_updated(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACC)
    for entry in load_manifest():
        cli("firmware", "add", str(SAMPLES_DIR / entry["file"]), "--name", entry["name"], "--make", entry["make"],
            "--model", entry["model"], "--from", entry["from"], "--to", entry["to"], "--protocol", entry["protocol"],
            db=db)
    _device(db, "490154203237518", "LWM2M", "Acme", "Sensor-1", "1.0.0")
    _device(db, "356938035643802", "HTTP", "Acme", "Gateway-2", "2.0.0")
    _device(db, "356938035643803", "OMADM", "Acme", "Phone-3", "3.0.0")
    token = json.loads(cli("device", "token", "356938035643802", "--account", ACC, db=db).stdout)["token"]
    cli("device", "omadm", "356938035643803", "--account", ACC, "--user", "dm3", "--secret", "s3cret", db=db)
    public_key = tmp_path / "pub.pem"
    public_key.write_text(cli("keys", "public", db=db).stdout)

    server = server_factory(db)
    base, headers = server.base_url, session_headers(server.base_url, creds)
    today, end = date.today().isoformat(), (date.today() + timedelta(days=3)).isoformat()
    v3 = httpx.post(f"{base}/api/fota/v3/campaigns/firmware/{ACC}", headers=headers, json={
        "firmwareName": "Acme-Sensor-1-1.0.0-to-1.1.0", "firmwareFrom": "1.0.0", "firmwareTo": "1.1.0",
        "protocol": "LWM2M", "startDate": today, "endDate": end, "deviceList": ["490154203237518"],
        "autoAssignLicenseFlag": False, "autoAddDevicesFlag": False}).json()
    v2 = httpx.post(f"{base}/api/fota/v2/campaigns/{ACC}", headers=headers, json={
        "softwareName": "Acme-Gateway-2-2.0.0-to-2.1.0", "softwareFrom": "2.0.0", "softwareTo": "2.1.0",
        "distributionType": "HTTP", "startDate": today, "endDate": end, "deviceList": ["356938035643802"]}).json()
    v1 = httpx.post(f"{base}/api/fota/v1/upgrades", headers=headers, json={
        "accountName": ACC, "firmwareName": "Acme-Phone-3-3.0.0-to-3.1.0", "firmwareTo": "3.1.0",
        "startDate": today, "endDate": end, "deviceList": ["356938035643803"]}).json()

    lwm2m = _emulator("lwm2m", "--server", f"coap://127.0.0.1:{server.ports['coap']}", "--endpoint",
                      "urn:imei:490154203237518", "--make", "Acme", "--model", "Sensor-1", "--public-key", str(public_key), "--firmware-version",
                      "1.0.0", "--until-version", "1.1.0", "--run-s", "60")
    http = _emulator("http", "--server", base, "--device-id", "356938035643802", f"--token={token}",
                     "--firmware-version", "2.0.0", "--make", "Acme", "--model", "Gateway-2", "--public-key",
                     str(public_key), "--until-version", "2.1.0", "--max-checkins", "30", "--speed", "50")
    omadm = _emulator("omadm", "--server", f"{base}/dm", "--dev-id", "IMEI:356938035643803", "--user", "dm3",
                      "--secret", "s3cret", "--firmware-version", "3.0.0", "--make", "Acme", "--model", "Phone-3")
    assert '"firmware_version": "1.1.0"' in lwm2m.stdout, lwm2m.stdout[-2000:] + lwm2m.stderr[-2000:]
    assert http.returncode == 0 and '"version": "2.1.0"' in http.stdout, http.stdout[-2000:] + http.stderr[-2000:]
    assert omadm.returncode == 0 and '"firmwareVersion": "3.1.0"' in omadm.stdout, omadm.stdout + omadm.stderr

    reports = [
        httpx.get(f"{base}/api/fota/v3/reports/{ACC}/campaigns/{v3['id']}/devices", headers=headers).json()["deviceList"],
        httpx.get(f"{base}/api/fota/v2/reports/{ACC}/campaigns/{v2['id']}/devices", headers=headers).json()["deviceList"],
        httpx.get(f"{base}/api/fota/v1/upgrades/{ACC}/upgrade/{v1['id']}", headers=headers).json()["deviceList"],
    ]
    assert [(r[0]["status"], r[0]["resultReason"]) for r in reports] == [
        ("UpgradeSuccess", "Upgrade completed successfully")] * 3
    devices = {d["deviceId"]: d for d in json.loads(cli("device", "list", "--account", ACC, db=db).stdout)}
    assert [devices[d]["firmwareVersion"] for d in ("490154203237518", "356938035643802", "356938035643803")] == [
        "1.1.0", "2.1.0", "3.1.0"]
