"""The emulated HTTP device over real HTTP and HTTPS on loopback: resume after a cut, the one-device
command, a generated certificate, a user-provided certificate (trustme) and mutual TLS."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trustme

from device_emulator.http.machine import DownloadCut, Event, HttpDeviceMachine, HttpDeviceState, HttpFaults
from device_emulator.links.http import HttpLink
from fota_server.adapters.http_driver import HttpFotaSettings
from fota_server.adapters.tls_cert import load_or_create_certificate, uvicorn_ssl_options
from fota_server.campaign.drivers import UpdateSucceeded
from tests.integration.test_http_fixtures import Lab, make_lab

pytestmark = pytest.mark.integration
FAST = HttpFotaSettings(checkin_interval_s=60, busy_interval_s=10)


def _machine(lab: Lab, faults: HttpFaults | None = None) -> HttpDeviceMachine:
    return HttpDeviceMachine(HttpDeviceState("1.0.0", make="Acme", model="M1"),
                             lab.services.firmware.public_key_pem().encode(), interval_s=60, install_s=2,
                             reboot_s=2, retry_s=1, faults=faults, seed=3)


async def _drive(lab: Lab, token: str, machine: HttpDeviceMachine, verify: ssl.SSLContext | str | bool = True
                 ) -> list[Event]:
    events: list[Event] = []
    link = HttpLink(lab.url, "d1", token, verify=verify, speed=200)
    try:
        await asyncio.wait_for(link.run(machine, lambda m: m.state.firmware_version == "1.1.0" and m.settled, events.append), 60)
    finally:
        await link.aclose()
    return events


def test_emulator_resumes_a_cut_download_over_http(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, settings=FAST)
    try:
        token = lab.add_device("d1")
        package, _ = lab.add_image(payload=1_500_000)
        lab.offer("d1", package)
        events = asyncio.run(_drive(lab, token, _machine(lab, HttpFaults(cut_after=400_000, cuts=2))))
        assert [e.received for e in events if isinstance(e, DownloadCut)] == [400_000, 800_000]
        assert UpdateSucceeded("a-d1", "1.1.0") in lab.driver.collect(lab.clock.now())
    finally:
        lab.server.stop()
        lab.services.db.close()


def test_emulator_over_https_with_a_generated_certificate(tmp_path: Path) -> None:
    cert, key = load_or_create_certificate(tmp_path / "tls", ["127.0.0.1", "localhost"])
    assert load_or_create_certificate(tmp_path / "tls", ["ignored"]) == (cert, key)
    lab = make_lab(tmp_path, ssl=uvicorn_ssl_options(cert, key), settings=FAST)
    try:
        assert lab.url.startswith("https://")
        token = lab.add_device("d1")
        package, _ = lab.add_image()
        lab.offer("d1", package)
        asyncio.run(_drive(lab, token, _machine(lab), verify=ssl.create_default_context(cafile=str(cert))))
        with pytest.raises(httpx.ConnectError):
            httpx.get(lab.url + "/health", timeout=5)
    finally:
        lab.server.stop()
        lab.services.db.close()


def test_user_provided_certificate_and_mutual_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    server_cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    device_cert = ca.issue_cert("d1")
    device_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "device.pem"))
    lab = make_lab(tmp_path, ssl=uvicorn_ssl_options(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"))
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        context.load_cert_chain(str(tmp_path / "device.pem"))
        assert httpx.get(lab.url + "/health", verify=context, timeout=5).status_code == 200
        bare = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(lab.url + "/health", verify=bare, timeout=5)
    finally:
        lab.server.stop()
        lab.services.db.close()


def test_the_one_device_command(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, settings=FAST)
    try:
        token = lab.add_device("d1")
        package, _ = lab.add_image()
        lab.offer("d1", package)
        key = tmp_path / "public.pem"
        key.write_text(lab.services.firmware.public_key_pem())
        proc = subprocess.run(
            [sys.executable, "-m", "device_emulator", "http", "--server", lab.url, "--device-id", "d1",
             f"--token={token}", "--firmware-version", "1.0.0", "--public-key", str(key), "--until-version", "1.1.0",
             "--speed", "200", "--cut-after", "50000", "--cuts", "1"],
            capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        names = [line["event"] for line in lines]
        assert names[0] == "UpdateOffered" and "DownloadCut" in names and "RebootedInto" in names
        assert lines[-1]["firmwareVersion"] == "1.1.0"
        wrong = subprocess.run(
            [sys.executable, "-m", "device_emulator", "http", "--server", lab.url, "--device-id", "d1",
             "--token", "forged", "--firmware-version", "1.0.0", "--max-checkins", "1"],
            capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 3 and "refused" in wrong.stderr
        assert json.loads(wrong.stdout.splitlines()[0]) == {"event": "CheckInRefused", "status": 401}
    finally:
        lab.server.stop()
        lab.services.db.close()


@pytest.mark.parametrize("kind", ["software", "config"])
def test_software_and_configuration_packages_reach_http_devices_like_firmware(tmp_path: Path, kind: str) -> None:
    lab = make_lab(tmp_path, settings=FAST)
    try:
        token = lab.add_device("d1")
        package, _ = lab.add_image(version_from="", version_to="2.0.0", kind=kind)
        lab.offer("d1", package)
        machine = HttpDeviceMachine(HttpDeviceState("1.0.0", software_version="1.0.0", config_version="c1"),
                                    lab.services.firmware.public_key_pem().encode(), interval_s=60, install_s=2,
                                    reboot_s=2, seed=5)

        async def drive() -> None:
            link = HttpLink(lab.url, "d1", token, speed=200)
            try:
                await asyncio.wait_for(link.run(machine, lambda m: m.state.version_of(kind) == "2.0.0" and m.settled), 60)
            finally:
                await link.aclose()

        asyncio.run(drive())
        assert machine.state.firmware_version == "1.0.0"
        assert UpdateSucceeded("a-d1", "2.0.0") in lab.driver.collect(lab.clock.now())
    finally:
        lab.server.stop()
        lab.services.db.close()
