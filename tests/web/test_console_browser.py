"""The console in a real headless Chromium (Debian's ``chromium``, driven by Playwright for Python) against
``fota-server run`` with an emulated fleet (4 LwM2M and 2 HTTP devices imported with ``fota-server device
import``): sign in, upload the images, watch one device's page, schedule a campaign through the wizard, see the
device's protocol trace and the campaign's chart reach success, then schedule one for tomorrow and cancel it.
A screenshot of every page is saved under the test's tmp dir (``screenshots/``), or in ``FOTA_SCREENSHOTS``
(``tools/screenshots.py``).

Skipped, saying why, only when no Chromium can be found (``FOTA_TEST_CHROMIUM`` names one; else ``chromium``
or ``chromium-browser`` on the PATH) or Playwright is not installed."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from device_emulator.fleet import Fleet, ServerUrls
from device_emulator.fleet_provision import write_manifest
from device_emulator.fleet_spec import FleetSpec, plan_devices
from fota_server.protocol.image import build_image
from tests.serverproc import ServerProcess, cli, create_account

pytestmark = [pytest.mark.integration, pytest.mark.slow(20)]

ACC, MAKE, MODEL = "acme", "FOTA Emulator", "EMU-2"
SPEC = FleetSpec(lwm2m=4, http=2, models=((MAKE, MODEL, 1.0),), cells=2, checkin_s=(1.0, 2.0),
                 lifetime_s=(600, 600), account=ACC, seed=5, start_rate_per_s=100)
WAIT_MS = 90_000


def _chromium() -> str:
    found = os.environ.get("FOTA_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no Chromium found: install Debian's chromium (apt-get install chromium) or set FOTA_TEST_CHROMIUM")
    return found


@pytest.fixture()
def browser() -> Iterator[Any]:
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


class RunningFleet:
    """The emulated fleet in its own thread and event loop, until ``stop``."""

    def __init__(self, server: ServerProcess) -> None:
        self.urls = ServerUrls(coap=f"coap://127.0.0.1:{server.ports['coap']}", http=server.base_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.error: BaseException | None = None

    async def _run(self) -> None:
        try:
            async with Fleet.from_spec(SPEC, self.urls) as fleet:
                while not self._stop.is_set():
                    await fleet.wait_until(lambda _f: False, 0.3)
        except BaseException as exc:   # reported by the test
            self.error = exc

    def __enter__(self) -> "RunningFleet":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def _upload(page: Any, image: Path, name: str, protocol: str) -> None:
    page.goto(page.url.split("#")[0] + "#/firmware")
    form = page.locator("#upload")
    for field, value in (("name", name), ("make", MAKE), ("model", MODEL), ("from", "1.0.0"), ("to", "2.0.0")):
        form.locator(f"input[name={field}]").fill(value)
    form.locator("select[name=protocol]").select_option(protocol)
    page.set_input_files("#fw-file", str(image))
    form.locator("button[type=submit]").click()
    page.locator("#packages td", has_text=name).first.wait_for(timeout=WAIT_MS)


def _wizard(page: Any, firmware: str, devices: list[str], start: date) -> str:
    page.goto(page.url.split("#")[0] + "#/wizard")
    wizard = page.locator("#wizard")
    wizard.locator("select[name=firmwareName]").select_option(firmware)
    page.locator("#pilot", has_text="Pilot first").wait_for(timeout=WAIT_MS)   # the rule, explained
    wizard.locator("textarea[name=deviceList]").fill("\n".join(devices))
    wizard.locator("input[name=startDate]").fill(start.isoformat())
    wizard.locator("input[name=endDate]").fill((start + timedelta(days=3)).isoformat())
    wizard.locator("input[name=cellCap]").fill("4")
    wizard.locator("button[type=submit]").click()
    page.wait_for_url("**/ui/#/campaign/*", timeout=WAIT_MS)
    return str(page.url.rsplit("/", 1)[1])


def test_update_a_fleet_from_the_browser(browser: Any, tmp_path: Path) -> None:
    shots = Path(os.environ.get("FOTA_SCREENSHOTS") or tmp_path / "screenshots")   # tools/screenshots.py names one
    shots.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "fota.db"
    creds = create_account(db, ACC)
    plans = plan_devices(SPEC)
    write_manifest(plans, ACC, tmp_path / "fleet.json")
    cli("device", "import", str(tmp_path / "fleet.json"), db=db)
    image = tmp_path / "emu2.bin"
    image.write_bytes(build_image(MAKE, MODEL, "2.0.0", 8192))
    lwm2m = [p.device_id for p in plans if p.protocol == "LWM2M"]
    http = [p.device_id for p in plans if p.protocol == "HTTP"]
    server = ServerProcess(db, env={"FOTA_HTTP_CHECKIN_INTERVAL_S": "2"}).start()   # HTTP devices come often
    try:
        with RunningFleet(server) as fleet:
            context = browser.new_context(viewport={"width": 1280, "height": 860})   # one cookie jar
            page = context.new_page()
            page.goto(server.base_url + "/ui/")
            page.fill("input[name=username]", creds["username"])
            page.fill("input[name=password]", creds["password"])
            page.click("button[type=submit]")
            page.locator("[data-count=LWM2M] b", has_text="4 / 4").wait_for(timeout=WAIT_MS)   # live counts
            page.locator("#devices tbody tr").nth(5).wait_for(timeout=WAIT_MS)
            page.screenshot(path=str(shots / "fleet.png"), full_page=True)

            _upload(page, image, "emu2-lwm2m", "LWM2M")
            _upload(page, image, "emu2-http", "HTTP")
            _upload(page, image, "emu2-spare", "HTTP")
            page.once("dialog", lambda dialog: dialog.accept())   # "Delete emu2-spare?"
            page.locator("button[data-delete=emu2-spare]").click()
            page.locator("button[data-delete=emu2-spare]").wait_for(state="detached", timeout=WAIT_MS)
            page.screenshot(path=str(shots / "firmware.png"), full_page=True)

            watcher = context.new_page()
            watcher.set_viewport_size({"width": 1024, "height": 1300})   # a tablet-sized window
            watcher.goto(f"{server.base_url}/ui/#/device/{lwm2m[0]}")
            watcher.locator("#registration dt", has_text="Endpoint").wait_for(timeout=WAIT_MS)   # registered now

            campaign = _wizard(page, "emu2-lwm2m", lwm2m, date.today())
            page.locator("#main", has_text="4 updated").wait_for(timeout=WAIT_MS)
            assert page.locator("#chart polygon[data-layer=success]").count() == 1
            page.locator("#main", has_text="CampaignEnded").wait_for(timeout=WAIT_MS)
            page.screenshot(path=str(shots / "campaign.png"), full_page=True)

            trace = watcher.locator("#trace")
            trace.locator("td", has_text="/5/0").first.wait_for(timeout=WAIT_MS)   # Object 5 writes and reads
            trace.locator("td", has_text="CoAP").first.wait_for(timeout=WAIT_MS)
            watcher.reload()
            watcher.locator("#history td", has_text="UpgradeSuccess").wait_for(timeout=WAIT_MS)
            explorer = watcher.locator("#explorer")   # the object explorer reads the device itself
            explorer.locator("button[data-object='3']").click()
            explorer.locator("tr[data-path='/3/0/3'] td", has_text="2.0.0").wait_for(timeout=WAIT_MS)
            explorer.locator("input[name=path]").fill("5/0")
            explorer.locator("button[type=submit]").click()
            explorer.locator("#fw-state span.on", has_text="Idle").wait_for(timeout=WAIT_MS)
            explorer.locator("#fw-result", has_text="Update Result 1").wait_for(timeout=WAIT_MS)
            watcher.screenshot(path=str(shots / "device.png"), full_page=True)

            later = _wizard(page, "emu2-http", http, date.today() + timedelta(days=1))
            page.screenshot(path=str(shots / "campaign-queued.png"), full_page=True)
            page.locator("#cancel").click()
            page.locator("#main", has_text="CampaignCancelled").wait_for(timeout=WAIT_MS)
            assert page.locator("#cancel").is_disabled()
            page.goto(server.base_url + "/ui/#/campaigns")
            page.locator("#campaigns td", has_text="CampaignCancelled").wait_for(timeout=WAIT_MS)
            page.screenshot(path=str(shots / "campaigns.png"), full_page=True)
            watcher.goto(f"{server.base_url}/ui/#/device/{http[0]}")   # an HTTP device's check-ins, traced
            watcher.locator("#trace td", has_text="HTTP POST").first.wait_for(timeout=WAIT_MS)
            watcher.screenshot(path=str(shots / "device-http.png"), full_page=True)
            assert campaign != later and fleet.error is None
    finally:
        assert server.stop() == 0
    assert sorted(p.name for p in shots.glob("*.png")) == ["campaign-queued.png", "campaign.png", "campaigns.png",
                                                       "device-http.png", "device.png", "firmware.png", "fleet.png"]
