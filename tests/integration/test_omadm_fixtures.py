"""A uvicorn server on 127.0.0.1 with an OS-assigned port in the test's own event loop, serving /dm and /fw,
and the lab (services, accounts, OMA-DM devices with credentials, one OMADM package) of the OMA-DM
integration tests (no tests here)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Iterator

import uvicorn
from starlette.applications import Starlette

from device_emulator.links.omadm import OmadmLink
from device_emulator.omadm import ClientConfig, DeviceProfile, Fault, OmadmDevice
from fota_server.adapters import fota_http, omadm_http
from fota_server.adapters.omadm_http import OmadmServer, build_omadm
from fota_server.api.errors import install_error_handlers
from fota_server.app import build_services
from fota_server.auth import AccountCredentials
from fota_server.campaign.drivers import StartAttempt
from fota_server.clock import Clock, FakeClock
from fota_server.config import Config
from fota_server.devices import NewDevice
from fota_server.protocol.image import build_image
from fota_server.services import Services

START = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
IMEI = "356938035643809"


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: Starlette, tls: dict[str, str] | None = None) -> AsyncIterator[str]:
    """uvicorn on 127.0.0.1 with an OS-assigned port, in this event loop (HTTPS with ``tls`` key/cert files)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = _Uvicorn(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, **(tls or {})))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(2000):
        if server.started or task.done():
            break
        await asyncio.sleep(0.005)
    if not server.started:
        task.result()
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        sock.close()


@dataclass
class Lab:
    services: Services
    omadm: OmadmServer
    package_id: str
    clock: Clock
    account: AccountCredentials

    def api_headers(self) -> dict[str, str]:
        """The bearer and VZ-M2M-Token headers of a logged-in management API user of the account."""
        auth = self.services.auth
        access = auth.issue_access_token(self.account.client_id, self.account.client_secret, "client_credentials")
        session = auth.login(access.value, self.account.username, self.account.password)
        return {"Authorization": f"Bearer {access.value}", "VZ-M2M-Token": session.value}

    def device(self, n: int = 0, fault: Fault = Fault.NONE, **profile: object) -> OmadmDevice:
        return OmadmDevice(DeviceProfile(f"IMEI:{int(IMEI) + n}", **profile), fault)  # type: ignore[arg-type]

    def link(self, url: str, device: OmadmDevice, n: int = 0, password: str = "", username: str = "",
             verify: ssl.SSLContext | bool = True, **config: object) -> OmadmLink:
        client = ClientConfig(username or f"dev-user-{n}", password or f"secret-{n}-long-enough",
                              **config)  # type: ignore[arg-type]
        return OmadmLink(device, client, url + "/dm", verify=verify)


def make_lab(tmp_path: Path, devices: int = 1, clock: Clock | None = None) -> Lab:
    clock = clock or FakeClock(START)
    services = build_services(Config(db_path=str(tmp_path / "fota.db"), coap_enabled=False), clock)
    account = services.auth.create_account("acme", license_count=100)
    for n in range(devices):
        device_id = str(int(IMEI) + n)
        services.devices.add("acme", NewDevice(device_id, "OMADM", make="Acme", model="Tracker-1",
                                               firmware_version="1.0.0", mdn=f"1555000{n:04d}"))
        services.devices.set_omadm_secret("acme", device_id, f"dev-user-{n}", f"secret-{n}-long-enough")
    image = build_image("Acme", "Tracker-1", "2.0.0", 4096)
    package = services.firmware.add(io.BytesIO(image), name="tracker-2.0.0", make="Acme", model="Tracker-1",
                                    version_from="1.0.0", version_to="2.0.0", protocol="OMADM", account_name="acme")
    omadm = build_omadm(services)
    return Lab(services, omadm, package.package_id, clock, account)


def app_of(lab: Lab) -> Starlette:
    app = Starlette(routes=[*omadm_http.routes, *fota_http.routes],
                    exception_handlers=install_error_handlers())  # type: ignore[arg-type]
    app.state.services = lab.services
    return app


def start(lab: Lab, n: int = 0, attempt: str = "attempt-1") -> StartAttempt:
    return StartAttempt(attempt, "campaign-1", str(int(IMEI) + n), "OMADM", lab.package_id, "2.0.0")


