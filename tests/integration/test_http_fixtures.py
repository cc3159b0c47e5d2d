"""A real uvicorn server on 127.0.0.1 with an OS-assigned port, running our HTTP FOTA and DDI routes in a
thread, and the fixtures of the HTTP integration tests (no tests here)."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from fota_server.adapters import fota_http
from fota_server.adapters.http_driver import HttpDriver, HttpFotaSettings
from fota_server.api import auth_routes, health, management
from fota_server.api.errors import install_error_handlers
from fota_server.app import build_services
from fota_server.campaign.drivers import StartAttempt
from fota_server.clock import FakeClock
from fota_server.config import Config
from fota_server.protocol.image import build_image
from fota_server.records import Device, Package
from fota_server.services import Services

START = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._ready.set()


class ThreadServer:
    """uvicorn serving ``app`` on 127.0.0.1:0 from a thread; ``url`` once started."""

    def __init__(self, app: Starlette, ssl: dict[str, Any] | None = None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if ssl else 'http'}://127.0.0.1:{self.port}"
        ready = threading.Event()
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, **(ssl or {}))
        self._server = _Server(config, ready)
        self._ready = ready
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])),
                                        daemon=True)

    def start(self) -> "ThreadServer":
        self._thread.start()
        if not self._ready.wait(timeout=20):
            raise RuntimeError("the test server did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
        self._sock.close()


def build_app(services: Services, routes: Sequence[BaseRoute]) -> Starlette:
    app = Starlette(routes=[*health.routes, *auth_routes.routes, *management.routes, *routes],
                    exception_handlers=install_error_handlers())  # type: ignore[arg-type]
    app.state.services = services
    return app


@dataclass
class Lab:
    services: Services
    clock: FakeClock
    driver: HttpDriver
    server: ThreadServer

    @property
    def url(self) -> str:
        return self.server.url

    def add_device(self, device_id: str, version: str = "1.0.0", account: str = "acme") -> str:
        self.services.db.devices.add_device(Device(device_id, account, "HTTP", make="Acme", model="M1",
                                                   firmware_version=version, created_at=self.clock.now()))
        return fota_http.issue_http_token(self.services, device_id)

    def add_image(self, version_from: str = "1.0.0", version_to: str = "1.1.0", payload: int = 200_000,
                  kind: str = "firmware") -> tuple[Package, bytes]:
        image = build_image("Acme", "M1", version_to, payload)
        package = self.services.firmware.add(
            io.BytesIO(image), name=f"{kind}-{version_to}", make="Acme", model="M1", version_from=version_from,
            version_to=version_to, protocol="HTTP", kind=kind, file_name=f"acme-{version_to}.bin")
        return package, image

    def offer(self, device_id: str, package: Package, attempt: str = "", install: bool = True,
              campaign: str = "c1") -> None:
        self.driver.submit(StartAttempt(attempt or f"a-{device_id}", campaign, device_id, "HTTP",
                                        package.package_id, package.version_to, install), self.clock.now())


def make_lab(tmp_path: Path, extra_routes: Sequence[BaseRoute] | None = None, ssl: dict[str, Any] | None = None,
             settings: HttpFotaSettings = HttpFotaSettings(), campaign_lookup_of: Any = None,
             start: datetime = START, enroll: str = "") -> Lab:
    """``campaign_lookup_of(services)`` gives the driver its campaign lookup (None: no windows on offers)."""
    clock = FakeClock(start)
    services = build_services(Config(db_path=str(tmp_path / "fota.db"), coap_enabled=False, enroll=enroll),
                              clock=clock)
    services.auth.create_account("acme")
    lookup = campaign_lookup_of(services) if campaign_lookup_of else None
    driver = fota_http.build_http_driver(services, settings, lookup)
    services.http_driver = driver
    server = ThreadServer(build_app(services, [*fota_http.routes, *(extra_routes or [])]), ssl).start()
    return Lab(services, clock, driver, server)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path)
    yield lab
    lab.server.stop()
    lab.services.db.close()
