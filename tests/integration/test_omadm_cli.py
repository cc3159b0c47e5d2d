"""``device-emulator omadm``: the one-device command against a real server on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from device_emulator.__main__ import main
from fota_server.campaign.drivers import UpdateSucceeded

from .test_omadm_fixtures import IMEI, app_of, make_lab, serving, start

pytestmark = pytest.mark.integration


def test_one_device_command_updates_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = make_lab(tmp_path)
    lab.omadm.driver.submit(start(lab), lab.clock.now())

    async def scenario() -> int:
        async with serving(app_of(lab)) as url:
            return await asyncio.to_thread(main, [
                "omadm", "--server", url + "/dm", "--dev-id", f"IMEI:{IMEI}", "--user", "dev-user-0",
                "--secret", "secret-0-long-enough", "--firmware-version", "1.0.0", "--wbxml"])

    assert asyncio.run(scenario()) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1] == {"event": "SessionsDone", "sessions": 2, "firmwareVersion": "2.0.0", "result": 200}
    assert lab.omadm.driver.collect(lab.clock.now())[-1] == UpdateSucceeded("attempt-1", "2.0.0")


def test_one_device_command_with_wrong_secret_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = make_lab(tmp_path)

    async def scenario() -> int:
        async with serving(app_of(lab)) as url:
            return await asyncio.to_thread(main, [
                "omadm", "--server", url + "/dm", "--dev-id", f"IMEI:{IMEI}", "--user", "dev-user-0",
                "--secret", "wrong"])

    assert asyncio.run(scenario()) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["event"] == "SessionFailed"
