"""The server side of the fleet tests (no tests here): the three protocols wired into one event loop the
way the integration tests of each protocol wire them (CoAP /rd with the LwM2M driver, HTTP check-in and /fw
with the HTTP driver, /dm with the OMA-DM driver and its Package 0 dispatcher, the engine runner over all
three), and the import of a fleet device manifest (``device_emulator.fleet_provision``).

Run alone it is a server process for the fleet benchmark::

    python -m tests.integration.test_fleet_rig --db fleet.db --manifest fleet.json

prints one JSON line with the URLs and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aiocoap
import aiocoap.resource as resource
import uvicorn
from starlette.applications import Starlette

from device_emulator.fleet import ServerUrls
from fota_server import device_import
from fota_server.adapters import fota_http, omadm_http
from fota_server.adapters.blobs import FileBlobStore
from fota_server.adapters.http_driver import HttpFotaSettings
from fota_server.adapters.lwm2m_driver import Lwm2mDriver, Lwm2mDriverSettings
from fota_server.adapters.lwm2m_site import add_lwm2m_resources
from fota_server.adapters.omadm_http import build_omadm
from fota_server.adapters.runner import EngineHandle, start_engine
from fota_server.api.errors import install_error_handlers
from fota_server.app import build_http_app, build_services
from fota_server.config import Config
from fota_server.protocol.lwm2m.firmware_messages import FirmwareTimeouts
from fota_server.services import Services


def import_manifest(services: Services, manifest: dict[str, Any], licenses: int = 1_000_000) -> None:
    """The account (if new), then ``fota-server device import``'s own import of the manifest."""
    account = manifest["account"]
    if services.db.accounts.get_account(account) is None:
        services.auth.create_account(account, license_count=licenses)
    result = device_import.import_manifest(json.dumps(manifest).encode(), services.devices, services.db.licenses,
                                           services.clock)
    if result.errors or result.added != len(manifest["devices"]):
        raise RuntimeError(f"manifest import failed: {result.errors[:5]}")


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class FleetServer:
    services: Services
    urls: ServerUrls
    engine: EngineHandle
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def campaigns(self) -> Any:
        return self.services.campaigns


@contextlib.asynccontextmanager
async def fleet_server(db_path: Path, manifest: dict[str, Any] | None = None, *, http_interval_s: int = 2,
                       download_s: float = 60.0,
                       lwm2m_timeouts: FirmwareTimeouts | None = None) -> AsyncIterator[FleetServer]:
    """All three protocols and the engine on 127.0.0.1 with OS-assigned ports, in this event loop."""
    services = build_services(Config(db_path=str(db_path), coap_enabled=False))
    if manifest is not None:
        import_manifest(services, manifest)
    site = resource.Site()
    lwm2m = add_lwm2m_resources(site, services)
    context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0), transports=["udp6"])
    lwm2m.attach(context)
    coap_port = context.request_interfaces[0].token_interface.message_interface.transport.get_extra_info(
        "socket").getsockname()[1]
    wake: list[Any] = []
    lwm2m_driver = Lwm2mDriver(lwm2m, services.db.packages, FileBlobStore(services.config.resolved_data_dir / "blobs"),
                               Lwm2mDriverSettings(coap_base=f"coap://127.0.0.1:{coap_port}", timeouts=lwm2m_timeouts
                                                   or FirmwareTimeouts(poll_interval_s=0.5, command_s=20,
                                                                       download_s=download_s, update_s=60)),
                               on_outcome=lambda: wake[0]() if wake else None, tokens=services.download_tokens)
    campaigns = services.campaigns
    http_driver = fota_http.build_http_driver(
        services, HttpFotaSettings(checkin_interval_s=http_interval_s, busy_interval_s=http_interval_s),
        services.stores.campaigns.get_campaign)
    services.http_driver = http_driver
    omadm = build_omadm(services)
    base = build_http_app(services)
    app = Starlette(routes=[*omadm_http.routes, *fota_http.routes, *base.routes],
                    exception_handlers=install_error_handlers())  # type: ignore[arg-type]
    app.state.services = services
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = _Uvicorn(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, backlog=4096))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(4000):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.005)
    if not server.started:
        serving.result()
    handle = await start_engine(services, {"LWM2M": lwm2m_driver, "HTTP": http_driver, "OMADM": omadm.driver})
    wake.append(handle.wake)
    http_driver.on_outcome = handle.wake
    omadm.driver.on_outcome = handle.wake
    dispatcher = asyncio.create_task(omadm.run_dispatcher(poll_s=0.5))
    http = f"http://127.0.0.1:{sock.getsockname()[1]}"
    urls = ServerUrls(coap=f"coap://127.0.0.1:{coap_port}", http=http, omadm=http + "/dm")
    assert campaigns is handle.service
    try:
        yield FleetServer(services, urls, handle, {"lwm2m": lwm2m})
    finally:
        dispatcher.cancel()
        await asyncio.gather(dispatcher, return_exceptions=True)
        await handle.stop()
        await lwm2m_driver.stop()
        server.should_exit = True
        await asyncio.wait_for(serving, 20)
        await lwm2m.stop()
        await context.shutdown()
        sock.close()
        services.db.close()


async def _serve(db: Path, manifest_path: Path | None) -> None:
    manifest = json.loads(manifest_path.read_text()) if manifest_path else None
    async with fleet_server(db, manifest) as rig:
        print(json.dumps({"coap": rig.urls.coap, "http": rig.urls.http, "omadm": rig.urls.omadm}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="the fleet test server: LwM2M, HTTP and OMA-DM in one process")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--manifest", type=Path)
    args = parser.parse_args()
    asyncio.run(_serve(args.db, args.manifest))


if __name__ == "__main__":
    main()
