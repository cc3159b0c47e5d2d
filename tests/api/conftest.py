"""A real server process with two accounts, seeded devices and packages, and authenticated HTTP clients."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from fota_server.app import build_services
from fota_server.config import load_config
from fota_server.campaign.model import Campaign, CampaignDevice, CampaignSpec, CampaignStatus, DeviceStatus
from fota_server.records import Device
from fota_server.store.campaigns_sqlite import SqliteCampaignStores
from fota_server.store.sqlite import SqliteDatabase
from firmware_samples import SAMPLES_DIR, load_manifest
from tests.serverproc import ServerProcess, create_account

ACC = "0000123456-00001"
OTHER = "0000999999-00001"
UNKNOWN_ACC = "0000000000-00000"
SEEN_AT = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=timezone.utc)
CREATED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

LWM2M_DEV = "356938035643801"
HTTP_DEV = "356938035643802"
OMADM_DEV = "356938035643803"
NAMED_DEV = "lab-sensor-1"           # no numeric IMEI
OTHER_DEV = "356938035643899"        # belongs to OTHER
NO_SUCH_DEV = "356938035643000"


def standard_devices() -> list[Device]:
    return [
        Device(LWM2M_DEV, ACC, "LWM2M", imei=LWM2M_DEV, mdn="5551230001", make="Acme", model="Sensor-1",
               firmware_version="1.1.0", last_seen_at=SEEN_AT, created_at=CREATED_AT),
        Device(HTTP_DEV, ACC, "HTTP", imei=HTTP_DEV, mdn="5551230002", make="Acme", model="Gateway-2",
               firmware_version="2.0.0", software_version="7.2", line_status="suspend", created_at=CREATED_AT),
        Device(OMADM_DEV, ACC, "OMADM", imei=OMADM_DEV, mdn="5551230003", make="Acme", model="Phone-3",
               firmware_version="3.0.0", last_seen_at=SEEN_AT, created_at=CREATED_AT),
        Device(NAMED_DEV, ACC, "LWM2M", make="Acme", model="Sensor-1", created_at=CREATED_AT),
        Device(OTHER_DEV, OTHER, "LWM2M", imei=OTHER_DEV, make="Acme", model="Sensor-1",
               firmware_version="1.0.0", created_at=CREATED_AT),
    ]


def many_devices(count: int, first_imei: int = 490154203237518) -> list[Device]:
    return [Device(str(first_imei + n), ACC, "LWM2M", imei=str(first_imei + n), make="Acme", model="Sensor-1",
                   firmware_version="1.0.0", created_at=CREATED_AT + timedelta(seconds=n)) for n in range(count)]


def seed_devices(db: Path, devices: list[Device]) -> None:
    store = SqliteDatabase(str(db))
    try:
        for device in devices:
            assert store.devices.add_device(device), device.device_id
    finally:
        store.close()


def seed_successful_upgrade(db: Path, device_id: str, package_name: str, version_from: str, version_to: str,
                            done_at: datetime) -> None:
    """A finished campaign in which ``device_id`` upgraded to ``version_to`` at ``done_at``."""
    spec = CampaignSpec("v3", "firmware", "LWM2M", "", "Acme", "Sensor-1", version_from, version_to,
                        done_at.date(), done_at.date(), (device_id,), package_name=package_name)
    campaign = Campaign(f"done-{device_id}", ACC, spec, CampaignStatus.ENDED, False, done_at, done_at, done_at,
                        done_at, None)
    row = CampaignDevice(campaign.campaign_id, device_id, ACC, DeviceStatus.SUCCESS, "Upgrade completed successfully",
                         "", done_at)
    store = SqliteDatabase(str(db))
    try:
        assert SqliteCampaignStores(store).campaigns.create_campaign(campaign, [row], [])
    finally:
        store.close()


def seed_packages(db: Path) -> None:
    """The committed sample images (visible to every account) and one firmware private to OTHER."""
    services = build_services(load_config(environ={}, flags={"db_path": str(db)}))
    try:
        for entry in load_manifest():
            services.firmware.add_file(SAMPLES_DIR / entry["file"], name=entry["name"], make=entry["make"],
                                       model=entry["model"], version_from=entry["from"], version_to=entry["to"],
                                       protocol=entry["protocol"])
        services.firmware.add(io.BytesIO(b"private image"), name="Other-Private-1.0.0-to-1.1.0", make="Acme",
                              model="Sensor-1", version_from="1.0.0", version_to="1.1.0", protocol="LWM2M",
                              account_name=OTHER)
        services.firmware.add(io.BytesIO(b"software bundle"), kind="software", name="Gateway-App-7.2-to-7.3",
                              make="Acme", model="Gateway-2", version_from="7.2", version_to="7.3", protocol="HTTP",
                              release_note="faster uplink")
    finally:
        services.db.close()


@dataclass
class Client:
    """Authenticated management calls of one account, with paths from the host root."""

    base: str
    account: str
    creds: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def login(self) -> "Client":
        token = httpx.post(f"{self.base}/api/ts/v1/oauth2/token", data={"grant_type": "client_credentials"},
                           auth=(self.creds["client_id"], self.creds["client_secret"])).json()["access_token"]
        session = httpx.post(f"{self.base}/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                             json={"username": self.creds["username"], "password": self.creds["password"]})
        self.headers = {"Authorization": f"Bearer {token}", "VZ-M2M-Token": session.json()["sessionToken"],
                        "accept": "application/json"}
        return self

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.call("DELETE", path, **kwargs)


@dataclass
class ApiSetup:
    server: ServerProcess
    acc: Client
    other: Client
    db: Path


def error_of(response: httpx.Response) -> str:
    """The errorCode of a 400, after checking the published error shape."""
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"errorCode", "errorMessage"} and body["errorMessage"], body
    return str(body["errorCode"])


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def build_testbed(db: Path, start: Callable[[Path], ServerProcess], licenses: int = 100,
                  extra_devices: list[Device] | None = None, seed: Callable[[Path], None] | None = None) -> ApiSetup:
    """Accounts, devices and packages; then ``seed(db)`` for more rows; then the server (``start(db)``)."""
    acc_creds = create_account(db, ACC, licenses=licenses)
    other_creds = create_account(db, OTHER, licenses=10)
    seed_devices(db, standard_devices() + (extra_devices or []))
    seed_packages(db)
    if seed is not None:
        seed(db)
    server = start(db)
    return ApiSetup(server, Client(server.base_url, ACC, acc_creds).login(),
                    Client(server.base_url, OTHER, other_creds).login(), db)


@pytest.fixture
def make_testbed(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> Iterator[Callable[..., ApiSetup]]:
    def make(licenses: int = 100, extra_devices: list[Device] | None = None,
             seed: Callable[[Path], None] | None = None) -> ApiSetup:
        """Accounts, devices and packages; then ``seed(db)`` for more rows; then the server."""
        return build_testbed(tmp_path / "fota.db", lambda db: server_factory(db, "--no-coap"), licenses,
                             extra_devices, seed)

    yield make


@pytest.fixture
def testbed(make_testbed: Callable[..., ApiSetup]) -> ApiSetup:
    return make_testbed()


@pytest.fixture(scope="module")
def shared_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiSetup]:
    """The standard testbed, one per module, for tests that only read or are refused: they change nothing
    another test could see. A test that changes anything takes ``testbed``."""
    server: ServerProcess | None = None

    def start(db: Path) -> ServerProcess:
        nonlocal server
        server = ServerProcess(db, ["--no-coap"]).start()
        return server

    try:
        yield build_testbed(tmp_path_factory.mktemp("api") / "fota.db", start)
    finally:
        if server is not None:
            server.kill()
