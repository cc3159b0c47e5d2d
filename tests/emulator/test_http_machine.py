"""The emulated HTTP device machine paired in memory with the server's HTTP driver (real SQLite file),
on explicit time: offers, resume after cuts, verification failures, install windows, cancel."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from device_emulator.http.machine import (
    CheckInAnswered, DownloadCut, FetchImage, HttpDeviceMachine, HttpDeviceState, HttpFaults, ImageBytes,
    ImageEnded, Phase, RebootedInto, RequestFailed, SendCheckIn, SendStatus, StatusAnswered, UpdateDropped,
    VerificationFailed,
)
from fota_server.adapters.fota_http import build_http_driver
from fota_server.adapters.http_driver import HttpDriver
from fota_server.app import build_services
from fota_server.campaign.drivers import (
    CancelAttempt, InstallPackage, PackageDownloaded, StartAttempt, UpdateFailed, UpdateSucceeded,
)
from fota_server.clock import FakeClock
from fota_server.config import Config
from fota_server.protocol.errors import PeerError, UsageError
from fota_server.protocol.http_fota import manifest
from fota_server.protocol.http_fota.ranges import etag_for, parse_range
from fota_server.protocol.image import build_image
from fota_server.records import Device, Package
from fota_server.services import Services


@dataclass
class Pair:
    services: Services
    driver: HttpDriver
    machine: HttpDeviceMachine
    image: bytes
    package: Package
    now: float = 0.0
    requests: int = 0

    def _serve(self, command: object) -> None:
        device = self.services.db.devices.find_device("d1")
        assert device is not None
        server_now = self.services.clock.now()
        if isinstance(command, SendCheckIn):
            answer = self.driver.checkin(device, manifest.decode_checkin(command.body), server_now, "http://s")
            self.machine.receive(CheckInAnswered(200, manifest.encode_answer(answer)), self.now)
        elif isinstance(command, SendStatus):
            try:
                self.driver.report(device, manifest.decode_report(command.body), server_now)
                status = 200
            except PeerError as exc:
                status = int(exc.hint)  # type: ignore[arg-type]
            self.machine.receive(StatusAnswered(status), self.now)
        elif isinstance(command, FetchImage):
            self._fetch(command)

    def _fetch(self, command: FetchImage) -> None:
        wanted = parse_range(f"bytes={command.offset}-" if command.offset else None, len(self.image))
        etag = etag_for(self.package.sha256)
        first = wanted.first if wanted and (command.etag in (None, etag)) else 0
        body = self.image[first:]
        cut = command.stop_after is not None and command.stop_after < len(body)
        if cut:
            body = body[:command.stop_after]
        for at in range(0, len(body), 50_000):
            self.machine.receive(ImageBytes(first + at, body[at:at + 50_000], etag), self.now)
        self.machine.receive(ImageEnded(206 if first else 200, not cut), self.now)

    def run(self, until: float, max_steps: int = 2000) -> list[object]:
        """Serve every command and jump to each deadline until ``until``; returns the device's events."""
        events: list[object] = []
        for _ in range(max_steps):
            while commands := self.machine.to_send():
                for command in commands:
                    self.requests += 1
                    self._serve(command)
            while (event := self.machine.next_event()) is not None:
                events.append(event)
            deadline = self.machine.next_deadline()
            if deadline is None or deadline > until or self.machine.phase is Phase.BUSY:
                return events
            self.now = max(self.now, deadline)
            self.machine.on_timer(self.now)
        raise AssertionError("the machine did not settle")


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    services = build_services(Config(db_path=str(tmp_path / "f.db"), coap_enabled=False), clock=FakeClock())
    services.auth.create_account("acme")
    services.db.devices.add_device(Device("d1", "acme", "HTTP", firmware_version="1.0.0", created_at=services.clock.now()))
    image = build_image("Acme", "M1", "1.1.0", 180_000)
    package = services.firmware.add(io.BytesIO(image), name="fw", make="Acme", model="M1", version_from="1.0.0",
                                    version_to="1.1.0", protocol="HTTP")
    driver = build_http_driver(services)
    machine = HttpDeviceMachine(HttpDeviceState("1.0.0", make="Acme", model="M1"),
                                services.firmware.public_key_pem().encode(), interval_s=300, install_s=5,
                                reboot_s=5, seed=1)
    return Pair(services, driver, machine, image, package)


def _start(pair: Pair, install: bool = True) -> None:
    pair.driver.submit(StartAttempt("a1", "c1", "d1", "HTTP", pair.package.package_id, "1.1.0", install),
                       pair.services.clock.now())


def test_idle_device_checks_in_on_its_interval(pair: Pair) -> None:
    pair.run(until=1000)
    # every 300 s within ±20 % jitter: at 0 s and then 2 to 4 more by 1000 s, each one recorded
    assert 3 <= pair.machine.checkins <= 5
    assert len(pair.driver.http_devices.list_checkins("d1")) == pair.machine.checkins


def test_update_installs_and_is_confirmed_by_the_version_after_reboot(pair: Pair) -> None:
    _start(pair)
    events = pair.run(until=100)
    assert RebootedInto("firmware", "1.1.0") in events
    assert pair.machine.state.firmware_version == "1.1.0"
    assert (pair.machine.downloads, pair.machine.flashes, pair.machine.versions) == (1, 1, ["1.0.0", "1.1.0"])
    assert pair.driver.collect(pair.services.clock.now())[-1] == UpdateSucceeded("a1", "1.1.0")


def test_a_cut_download_resumes_where_it_stopped(pair: Pair) -> None:
    pair.machine.faults = HttpFaults(cut_after=70_000, cuts=2)
    _start(pair)
    events = pair.run(until=100)
    cuts = [e for e in events if isinstance(e, DownloadCut)]
    assert [c.received for c in cuts] == [70_000, 140_000]
    assert pair.machine.state.firmware_version == "1.1.0"
    assert (pair.machine.downloads, pair.machine.flashes) == (1, 1)  # resumed Range requests: one download


def test_a_download_rides_out_a_server_gone_for_twenty_seconds(pair: Pair) -> None:
    """The server dies part way through the image and is back 20 s later: the device retries at 1, 2, 4 ...
    s, resumes where it stopped, and it is still one download and one flash."""
    serve = pair._fetch
    etag = etag_for(pair.package.sha256)
    tries: list[tuple[float, int]] = []

    def fetch(command: FetchImage) -> None:
        tries.append((pair.now, command.offset))
        if len(tries) == 1:  # the first transfer is cut by the server's death
            pair.machine.receive(ImageBytes(0, pair.image[:70_000], etag), pair.now)
            pair.machine.receive(ImageEnded(200, False), pair.now)
        elif pair.now < tries[0][0] + 20:  # connection refused while the server is away
            pair.machine.receive(ImageEnded(0, False), pair.now)
        else:
            serve(command)

    pair._fetch = fetch  # type: ignore[method-assign]
    _start(pair)
    pair.run(until=200)
    gaps = [b - a for (a, _), (b, _) in zip(tries, tries[1:])]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert tries[-1][1] == 70_000  # resumed with a Range request
    assert pair.machine.state.firmware_version == "1.1.0"
    assert (pair.machine.downloads, pair.machine.flashes) == (1, 1)


def test_too_many_cuts_report_connection_lost(pair: Pair) -> None:
    pair.machine.faults = HttpFaults(cut_after=10, cuts=100)
    _start(pair)
    pair.run(until=100)
    assert pair.driver.collect(pair.services.clock.now())[-1] == UpdateFailed("a1", "download-failed")
    assert pair.machine.state.firmware_version == "1.0.0"


def test_a_corrupted_image_is_refused_and_reported(pair: Pair) -> None:
    pair.machine.faults = HttpFaults(corrupt_image=True)
    _start(pair)
    events = pair.run(until=100)
    assert VerificationFailed(1, manifest.ResultCode.INTEGRITY_FAILED) in events
    assert pair.driver.collect(pair.services.clock.now())[-1] == UpdateFailed("a1", "hash-mismatch")


def test_a_bad_signature_is_refused(pair: Pair, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pair.machine._key = other
    _start(pair)
    events = pair.run(until=100)
    assert VerificationFailed(1, manifest.ResultCode.SIGNATURE_FAILED) in events


def test_install_failure_and_reboot_into_the_old_version(pair: Pair) -> None:
    pair.machine.faults = HttpFaults(reboot_into_old=True)
    _start(pair)
    pair.run(until=100)
    assert pair.driver.collect(pair.services.clock.now())[-1] == UpdateSucceeded("a1", "1.0.0")
    assert (pair.machine.flashes, pair.machine.versions) == (1, ["1.0.0"])  # written and rebooted: a flash


def test_download_only_then_install_when_allowed(pair: Pair) -> None:
    _start(pair, install=False)
    pair.run(until=100)
    assert pair.machine.state.firmware_version == "1.0.0"
    pair.driver.submit(InstallPackage("a1", "d1", "HTTP"), pair.services.clock.now())
    pair.run(until=1000)
    assert pair.machine.state.firmware_version == "1.1.0"


def test_download_only_reports_package_downloaded(pair: Pair) -> None:
    _start(pair, install=False)
    pair.run(until=100)
    assert PackageDownloaded("a1") in pair.driver.collect(pair.services.clock.now())


def test_server_cancel_drops_the_update(pair: Pair) -> None:
    _start(pair, install=False)
    pair.run(until=100)
    pair.driver.submit(CancelAttempt("a1", "d1", "HTTP"), pair.services.clock.now())
    events = pair.run(until=1000)
    assert UpdateDropped(1, "cancelled by the server") in events
    assert pair.machine.update is None


def test_link_failure_backs_off_then_checks_in_again(pair: Pair) -> None:
    pair.machine.on_timer(0.0)
    assert isinstance(pair.machine.to_send()[0], SendCheckIn)
    pair.machine.receive(RequestFailed("connection refused"), 0.0)
    deadline = pair.machine.next_deadline()
    assert deadline is not None and 0 < deadline <= 36
    with pytest.raises(UsageError):
        pair.machine.receive(StatusAnswered(200), 1.0)


def test_a_server_gone_for_long_never_stops_the_check_ins(pair: Pair) -> None:
    """Refused connection after refused connection, the device checks in again within 30 s (plus jitter)
    each time, and the first answer after the outage puts it back on the server's interval."""
    now = 0.0
    for attempt in range(50):
        pair.machine.on_timer(now)
        assert isinstance(pair.machine.to_send()[0], SendCheckIn), attempt
        pair.machine.receive(RequestFailed("ConnectError: connection refused"), now)
        deadline = pair.machine.next_deadline()
        assert deadline is not None and now < deadline <= now + 36
        now = deadline
    assert pair.machine.failed_requests == 50 and pair.machine.checkins == 50
    pair.now = now
    pair.run(until=now + 1000)
    assert pair.machine.checkins > 50 and len(pair.driver.http_devices.list_checkins("d1")) >= 1


def test_an_injected_install_failure_is_reported(pair: Pair) -> None:
    pair.machine.faults = HttpFaults(fail_install=True)
    _start(pair)
    pair.run(until=100)
    assert pair.driver.collect(pair.services.clock.now())[-1] == UpdateFailed("a1", "install-failed")
    assert pair.machine.state.firmware_version == "1.0.0"
    assert (pair.machine.downloads, pair.machine.flashes) == (1, 0)


def test_arbitrary_answers_never_break_the_device() -> None:
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.integers(100, 599), st.binary(max_size=50), st.integers(0, 10**6))
    def check(answer: bytes, status: int, chunk: bytes, first: int) -> None:
        machine = HttpDeviceMachine(HttpDeviceState("1.0"), None, seed=0)
        machine.on_timer(0.0)
        machine.to_send()
        machine.receive(CheckInAnswered(status, answer), 0.0)
        for command in machine.to_send():
            if isinstance(command, FetchImage):
                machine.receive(ImageBytes(first, chunk), 0.0)
                machine.receive(ImageEnded(status, True), 0.0)
            else:
                machine.receive(StatusAnswered(status), 0.0)
        assert machine.phase in (Phase.BUSY, Phase.WAITING, Phase.IDLE)

    check()
