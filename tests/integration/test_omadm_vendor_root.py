"""A vendor FUMO root set in the server's configuration (``FOTA_OMADM_FUMO_ROOT``) reaches the device: an
OMA-DM device with its FUMO node at ./FwUpdate/1 is updated through ``fota-server run``."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import httpx
import pytest

from firmware_samples import SAMPLES_DIR
from tests.integration.test_end_to_end import ACC, _device
from tests.serverproc import ServerProcess, cli, create_account, session_headers

pytestmark = pytest.mark.integration


@pytest.mark.slow(13)
def test_vendor_fumo_root(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACC)
    cli("firmware", "add", str(SAMPLES_DIR / "acme-phone-3-3.1.0.bin"), "--name", "phone-3.1.0", "--make", "Acme",
        "--model", "Phone-3", "--from", "3.0.0", "--to", "3.1.0", "--protocol", "OMADM", db=db)
    _device(db, "356938035643803", "OMADM", "Acme", "Phone-3", "3.0.0")
    cli("device", "omadm", "356938035643803", "--account", ACC, "--user", "dm3", "--secret", "s3cret", db=db)
    server = server_factory(db, env={"FOTA_OMADM_FUMO_ROOT": "./FwUpdate/1"})
    headers = session_headers(server.base_url, creds)
    today = date.today()
    upgrade = httpx.post(f"{server.base_url}/api/fota/v1/upgrades", headers=headers, json={
        "accountName": ACC, "firmwareName": "phone-3.1.0", "firmwareTo": "3.1.0", "startDate": today.isoformat(),
        "endDate": (today + timedelta(days=2)).isoformat(), "deviceList": ["356938035643803"]}).json()
    device = subprocess.run(
        [sys.executable, "-m", "device_emulator", "omadm", "--server", f"{server.base_url}/dm", "--dev-id",
         "IMEI:356938035643803", "--user", "dm3", "--secret", "s3cret", "--firmware-version", "3.0.0",
         "--make", "Acme", "--model", "Phone-3", "--fumo-root", "./FwUpdate/1"],
        capture_output=True, text=True, timeout=90)
    assert device.returncode == 0 and '"firmwareVersion": "3.1.0"' in device.stdout, device.stdout + device.stderr
    report = httpx.get(f"{server.base_url}/api/fota/v1/upgrades/{ACC}/upgrade/{upgrade['id']}", headers=headers).json()
    assert report["deviceList"][0]["status"] == "UpgradeSuccess"
