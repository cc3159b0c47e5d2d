"""The quick start's promise, in a real headless Chromium: ``fota-server demo --serve`` runs its rollout, keeps the
server and its fleet running and prints the console's address, user and password; signed in with those, the
user schedules the waiting second update through the wizard, sees the devices reach success on the campaign
page, and at Ctrl-C the devices' own records say each flashed once and runs the new version."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import poll
from tests.web.test_console_browser import WAIT_MS, browser  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow(60)]

CONSOLE = re.compile(r"Web console: (\S+)/ui/\s+\(user (\S+), password (\S+)\)")


class Demo:
    """``fota-server demo --serve`` as a child process, its output read by a thread."""

    def __init__(self, keep: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fota_server", "demo", "--serve", "--lwm2m", "12", "--http", "0", "--omadm", "0",
             "--timeout", "150", "--keep", str(keep)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def console(self) -> tuple[str, str, str]:
        def look() -> re.Match[str] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"the demo ended ({self.proc.returncode}): {self.lines[-40:]}")
            return next((m for line in list(self.lines) if (m := CONSOLE.search(line))), None)

        found = poll(look, lambda m: m is not None, timeout_s=300, what="the demo's console line", interval_s=0.2)
        assert found is not None
        return found.group(1), found.group(2), found.group(3)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(120)
        self._reader.join(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def test_the_demo_fleet_is_updated_from_the_browser(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    keep = tmp_path / "demo"
    demo = Demo(keep)
    try:
        base, user, password = demo.console()
        before = {d["device_id"]: d["final_version"] for d in
                  json.loads((keep / "fleet-results.json").read_text())["devices"]}
        on_new = sorted(d for d, v in before.items() if v == "1.1.0")
        assert len(on_new) >= 8, demo.lines[-40:]   # the demo's rollout updated most of the fleet

        page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
        page.goto(base + "/ui/")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.locator("[data-count=LWM2M] b", has_text="12 / 12").wait_for(timeout=WAIT_MS)   # the fleet is there

        page.goto(base + "/ui/#/wizard")
        wizard = page.locator("#wizard")
        wizard.locator("select[name=firmwareName]").select_option("EMU-1 1.1.0 to 1.2.0 (LWM2M)")
        page.locator("#pilot", has_text="Pilot first").wait_for(timeout=WAIT_MS)
        wizard.locator("select[name=mode]").select_option("filter")
        wizard.locator("input[name=firmware]").fill("1.1.0")
        wizard.locator("button[type=submit]").click()
        page.wait_for_url("**/ui/#/campaign/*", timeout=WAIT_MS)
        page.locator("#main", has_text=f"{len(on_new)} updated").wait_for(timeout=WAIT_MS)
        page.locator("#main", has_text="CampaignEnded").wait_for(timeout=WAIT_MS)
        assert page.locator("#chart polygon[data-layer=success]").count() == 1
        page.locator("#main", has_text="0 failed").wait_for(timeout=WAIT_MS)
    finally:
        code = demo.interrupt()
    assert code == 0, demo.lines[-40:]
    served = {d["device_id"]: d for d in json.loads((keep / "served-fleet-results.json").read_text())["devices"]}
    for device_id, version in before.items():   # the devices' own count of this stage
        device = served[device_id]
        if device_id in on_new:
            assert (device["flashes"], device["final_version"]) == (1, "1.2.0"), device
            assert device["versions"] == ["1.1.0", "1.2.0"], device
        else:
            assert (device["flashes"], device["final_version"]) == (0, version), device
    assert any("While served" in line for line in demo.lines)
