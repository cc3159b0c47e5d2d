"""A device that dies mid-download, against ``fota-server run``: the report says it is not reachable once
its registration lapses (lifetime plus grace), not after the one-hour download timeout; restarted, the
device registers again and the campaign updates it, as the device's own record then says."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from firmware_samples import SAMPLES_DIR, load_manifest
from fota_server.campaign.reasons import EngineReason
from tests.serverproc import ServerProcess, cli, create_account, session_headers
from tests.waiting import poll

pytestmark = pytest.mark.integration
ACC = "0000123456-00001"
DEVICE = "490154203237518"
LIFETIME_S = 5   # the server expires the registration 15 s (its grace) after that without an Update


class Emulator:
    """``device-emulator lwm2m`` as a child process; its JSON lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "device_emulator", "lwm2m", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[dict[str, Any]] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._seen:
                self.lines.append(event)
                self._seen.notify_all()

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
        with self._seen:
            found = self._seen.wait_for(lambda: next((e for e in self.lines if condition(e)), None), timeout_s)
        assert found, f"the emulator never printed what was awaited: {self.lines[-5:]}"
        return found

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self._reader.join(timeout=20)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _report(base: str, headers: dict[str, str], campaign_id: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = httpx.get(f"{base}/api/fota/v3/reports/{ACC}/campaigns/{campaign_id}/devices",
                                           headers=headers).json()["deviceList"]
    return rows[0]


def _until(what: str, probe: Callable[[], dict[str, Any]], good: Callable[[dict[str, Any]], bool],
           timeout_s: float) -> dict[str, Any]:
    """Poll ``probe`` until ``good`` holds: a bounded wait for an outcome, not a measure of time."""
    return poll(probe, good, timeout_s, what, interval_s=0.2)


@pytest.mark.slow(30)
def test_a_device_killed_mid_download_is_reported_unreachable_and_updated_once_it_is_back(
        tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACC)
    entry = next(e for e in load_manifest() if e["protocol"] == "LWM2M")
    cli("firmware", "add", str(SAMPLES_DIR / entry["file"]), "--name", entry["name"], "--make", entry["make"],
        "--model", entry["model"], "--from", entry["from"], "--to", entry["to"], "--protocol", "LWM2M", db=db)
    cli("device", "add", DEVICE, "--account", ACC, "--protocol", "LWM2M", "--make", entry["make"], "--model",
        entry["model"], "--firmware", entry["from"], "--license", db=db)
    server = server_factory(db)
    base, headers = server.base_url, session_headers(server.base_url, creds)
    coap = f"coap://127.0.0.1:{server.ports['coap']}"
    device_args = ("--server", coap, "--endpoint", f"urn:imei:{DEVICE}", "--make", entry["make"], "--model",
                   entry["model"], "--firmware-version", entry["from"], "--lifetime", str(LIFETIME_S))

    # accepts the Package URI, shows State 1 Downloading, and is killed there
    first = Emulator(*device_args, "--fault", "ignore-uri", "--run-s", "300")
    try:
        first.wait_for(lambda e: e.get("phase") == "registered", 60)
        today, end = date.today().isoformat(), (date.today() + timedelta(days=3)).isoformat()
        campaign = httpx.post(f"{base}/api/fota/v3/campaigns/firmware/{ACC}", headers=headers, json={
            "firmwareName": entry["name"], "firmwareFrom": entry["from"], "firmwareTo": entry["to"],
            "protocol": "LWM2M", "startDate": today, "endDate": end, "deviceList": [DEVICE],
            "autoAssignLicenseFlag": False, "autoAddDevicesFlag": False}).json()
        first.wait_for(lambda e: e.get("state") == 1, 90)
        _until("the report never showed the download", lambda: _report(base, headers, campaign["id"]),
               lambda row: str(row.get("resultReason", "")).startswith(EngineReason.DOWNLOADING), 60)
    finally:
        first.kill()

    # the download timeout is an hour: only noticing the silence can end the attempt within this wait
    row = _until("the dead device was never reported unreachable", lambda: _report(base, headers, campaign["id"]),
                 lambda row: row.get("resultReason") == EngineReason.NOT_REACHABLE, 240)
    assert row["status"] != "UpgradeSuccess"

    second = Emulator(*device_args, "--until-version", entry["to"], "--run-s", "240")
    try:
        stopped = second.wait_for(lambda e: e.get("event") == "stopped", 250)
    finally:
        second.kill()
    assert stopped["firmware_version"] == entry["to"] and stopped["flashes"] == 1, second.lines[-5:]
    row = _until("the report never showed the update", lambda: _report(base, headers, campaign["id"]),
                 lambda row: row.get("status") == "UpgradeSuccess", 60)
    assert row["resultReason"] == "Upgrade completed successfully"
