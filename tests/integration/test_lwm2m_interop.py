"""OMA interop cases int-101..104 and int-751..780 (OMA-ETS-LightweightM2M-V1_0_2; reference §7), server
against the emulator over real UDP on 127.0.0.1 with OS-assigned ports."""

from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import aiocoap
import aiocoap.resource as resource
import pytest

from device_emulator.links.coap import CoapLink, _bound_port, free_udp_port
from device_emulator.lwm2m.client import ClientConfig, LwM2MClient
from device_emulator.lwm2m.faults import Fault
from device_emulator.lwm2m.firmware import DeviceFirmware
from fota_server.adapters.lwm2m_update_session import UpdateSession
from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings, add_lwm2m_resources
from fota_server.app import build_services
from fota_server.config import Config
from fota_server.protocol.image import build_image
from fota_server.protocol.lwm2m import firmware_messages as fm
from fota_server.protocol.lwm2m.content import ContentFormat, decode_values
from fota_server.protocol.lwm2m.firmware import FirmwareUpdate
from fota_server.protocol.lwm2m.objects import ProtocolSupport, result_reason
from fota_server.protocol.lwm2m.paths import LwM2MPath as P
from fota_server.records import Package
from fota_server.services import Services

pytestmark = pytest.mark.integration

EP = "urn:imei:490154203237518"
IMAGE = build_image("FOTA Emulator", "EMU-LWM2M", "2.0.0", 30_000)


@dataclass
class Lab:
    services: Services
    server: Lwm2mServer
    context: aiocoap.Context
    port: int
    package: Package
    http_port: int = 0
    links: list[CoapLink] = field(default_factory=list)

    @property
    def coap_uri(self) -> str:
        """The Package URI a campaign writes for the device ``EP``: the image and its download token."""
        token = self.services.download_tokens.issue(EP.removeprefix("urn:imei:"), self.package.sha256)
        return f"coap://127.0.0.1:{self.port}/fw/{self.package.sha256}/{token}"

    @property
    def http_uri(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/fw/{self.package.sha256}"

    async def device(self, *faults: Fault, endpoint: str = EP, queue: bool = False, version: str = "1.1",
                     lifetime_s: int = 300, cell: tuple[int, int, int, int] = (310, 410, 7, 1001)) -> CoapLink:
        firmware = DeviceFirmware(flash_bytes=1 << 20, faults=frozenset(faults),
                                  protocols=(ProtocolSupport.COAP, ProtocolSupport.HTTP))
        config = ClientConfig(endpoint, lifetime_s=lifetime_s, queue_mode=queue, version=version,
                              queue_awake_s=5.0, cell=cell)
        link = CoapLink(LwM2MClient(config, firmware), f"coap://127.0.0.1:{self.port}")
        self.links.append(link)
        await link.start()
        registered = await link.wait_until(lambda: link.client.location != (), 10)
        assert registered, (link.client.phase, link.client.registrations, dict(self.server.refused), link.port,
                            link.uplink_log)
        return link

    async def read(self, path: P, accept: int | None = None) -> tuple[str, dict[P, object]]:
        reply = await self.server.downlink.request(EP, "GET", path, accept=accept, timeout_s=10)
        values = decode_values(reply.content_format, reply.payload, path) if reply.code == "2.05" else {}
        return reply.code, dict(values)

    async def update(self, job: fm.FirmwareJob, timeouts: fm.FirmwareTimeouts | None = None,
                     endpoint: str = EP) -> list[fm.FirmwareEvent]:
        machine = FirmwareUpdate(job, timeouts or fm.FirmwareTimeouts(poll_interval_s=0.5, command_s=10,
                                                                      download_s=20, update_s=20))
        session = UpdateSession(self.server, endpoint, machine, lambda: IMAGE)
        self.server.listeners.append(lambda e: session.registered()
                                     if e.registration.endpoint == endpoint and type(e).__name__ == "Registered"
                                     else None)
        events: list[fm.FirmwareEvent] = []
        await asyncio.wait_for(session.run(events.append), 60)
        return events


async def _serve_http(image: bytes) -> tuple[asyncio.Server, int]:
    """A minimal HTTP/1.1 file server for int-771 (pull over another protocol)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(image) + image)
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    services = build_services(Config(db_path=str(tmp_path / "fota.db"), enroll="lab"))  # devices join on contact
    services.auth.create_account("lab")
    package = services.firmware.add(io.BytesIO(IMAGE), name="emu-2.0.0", make="FOTA Emulator", model="EMU-LWM2M",
                                    version_from="1.0.0", version_to="2.0.0", protocol="LWM2M")
    site = resource.Site()
    server = add_lwm2m_resources(site, services, settings=Lwm2mSettings(queue_awake_s=5.0))
    # a port nobody holds: aiocoap sockets allow address reuse, and other test runs share this host
    context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", free_udp_port("127.0.0.1", None)),
                                                          transports=["udp6"])
    server.attach(context)
    http, http_port = await _serve_http(IMAGE)
    the_lab = Lab(services, server, context, _bound_port(context), package, http_port)
    try:
        yield the_lab
    finally:
        for link in the_lab.links:
            await link.stop(deregister=False)
        await server.stop()
        await context.shutdown()
        http.close()
        await http.wait_closed()
        services.db.close()


def run(tmp_path: Path, scenario: Callable[[Lab], Awaitable[None]]) -> None:
    async def main() -> None:
        async with lab(tmp_path) as the_lab:
            await scenario(the_lab)
    asyncio.run(asyncio.wait_for(main(), 90), debug=True)


def job(uris: tuple[str, ...] = (), method: fm.Method = fm.Method.PUSH) -> fm.FirmwareJob:
    return fm.FirmwareJob("2.0.0", len(IMAGE), uris, prefer=method)


# ---------------------------------------------------------------- registration interface

def test_int_101_initial_registration(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device()
        reg = lab.server.book.by_endpoint(EP)
        assert reg is not None
        assert (reg.lifetime_s, reg.version, reg.binding) == (300, "1.1", "U")
        assert reg.objects.object_ids == (1, 3, 4, 5) and reg.objects.versions[5] == "1.1"
        assert link.client.location == ("rd", reg.reg_id)
        lab.server.flush()
        assert lab.server.store is not None and lab.server.store.by_endpoint(EP) == reg
        # device data read after Register: /3/0 and /4/0 with the cell
        if EP not in lab.server.reports:
            reported = asyncio.Event()
            lab.server.report_listeners.append(lambda endpoint, report: reported.set())
            await asyncio.wait_for(reported.wait(), 10)
        report = lab.server.reports[EP]
        assert (report.manufacturer, report.firmware_version, report.serving_cell) == \
            ("FOTA Emulator", "1.0.0", "310-410-7-1001")
    run(tmp_path, scenario)


def test_int_102_registration_update_with_new_lifetime(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device()
        reply = await lab.server.downlink.request(EP, "PUT", P(1, 0, 1), b"20", ContentFormat.TEXT, timeout_s=10)
        assert reply.code == "2.04"
        assert await link.wait_until(lambda: lab.server.book.by_endpoint(EP).lifetime_s == 20, 10)  # type: ignore[union-attr]
        first = lab.server.book.by_endpoint(EP)
        assert first is not None
        # within 20 s the client sends an Update with no parameters (it updates at half its lifetime)
        assert await link.wait_until(
            lambda: lab.server.book.by_endpoint(EP).updated_at > first.updated_at, 15)  # type: ignore[union-attr]
    run(tmp_path, scenario)


def test_int_103_deregistration(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device()
        reply = await lab.server.downlink.request(EP, "POST", P(1, 0, 4), timeout_s=10)
        assert reply.code == "2.04"
        assert await link.wait_until(lambda: lab.server.book.by_endpoint(EP) is None and not link.client.location,
                                     10)
        lab.server.flush()
        assert lab.server.store is not None and lab.server.store.by_endpoint(EP) is None
    run(tmp_path, scenario)


def test_int_104_registration_update_trigger(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device()
        before = lab.server.book.by_endpoint(EP)
        assert before is not None
        assert (await lab.server.downlink.request(EP, "POST", P(1, 0, 8), timeout_s=10)).code == "2.04"
        assert await link.wait_until(
            lambda: lab.server.book.by_endpoint(EP).updated_at > before.updated_at, 10)  # type: ignore[union-attr]
    run(tmp_path, scenario)


def test_queue_mode_requests_wait_for_the_next_uplink(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device(queue=True, lifetime_s=16)
        assert lab.server.book.by_endpoint(EP).queue_mode  # type: ignore[union-attr]
        lab.server.downlink.links[EP].awake_until = 0.0  # the awake window has passed
        code, values = await lab.read(P(3, 0, 3))
        assert code == "2.05" and values[P(3, 0, 3)] == "1.0.0"
        assert link.dropped_asleep == 0
    run(tmp_path, scenario)


# ---------------------------------------------------------------- Object 5

def test_int_751_querying_the_readable_resources(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        await lab.device()
        code, values = await lab.read(P(5, 0), ContentFormat.TLV)
        assert code == "2.05"
        assert values[P(5, 0, 3)] == 0 and values[P(5, 0, 5)] == 0
        assert values[P(5, 0, 8, 0)] == 0 and values[P(5, 0, 8, 1)] == 2 and values[P(5, 0, 9)] == 2
    run(tmp_path, scenario)


def test_int_755_setting_the_package(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device()
        downlink = lab.server.downlink
        assert (await downlink.request(EP, "PUT", P(5, 0, 0), b"\x00", 42, timeout_s=10)).code == "2.04"
        assert (await lab.read(P(5, 0, 3)))[1][P(5, 0, 3)] == 0
        reply = await downlink.push(EP, P(5, 0, 0), IMAGE, szx=6)
        assert reply.code == "2.04"
        assert await link.wait_until(lambda: link.client.firmware.state == 2, 5)
        values = (await lab.read(P(5, 0), ContentFormat.TLV))[1]
        assert (values[P(5, 0, 3)], values[P(5, 0, 5)]) == (2, 0)
    run(tmp_path, scenario)


def test_int_756_setting_the_package_uri(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device()
        downlink = lab.server.downlink
        assert (await downlink.request(EP, "PUT", P(5, 0, 1), b"", 0, timeout_s=10)).code == "2.04"
        assert (await downlink.request(EP, "PUT", P(5, 0, 1), lab.coap_uri.encode(), 0, timeout_s=10)).code == "2.04"
        assert await link.wait_until(lambda: link.client.firmware.state == 2, 15)
        values = (await lab.read(P(5, 0), ContentFormat.SENML_JSON))[1]
        assert (values[P(5, 0, 3)], values[P(5, 0, 5)]) == (2, 0)
    run(tmp_path, scenario)


def test_int_760_basic_observation(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        await lab.device()
        downlink = lab.server.downlink
        attrs = await downlink.request(EP, "PUT", P(5, 0), query=("pmin=2", "pmax=10"), timeout_s=10)
        assert attrs.code == "2.04"
        seen: list[int] = []
        got_downloaded = asyncio.Event()

        def on_notify(reply: object) -> None:
            values = decode_values(reply.content_format, reply.payload, P(5, 0, 3))  # type: ignore[attr-defined]
            seen.append(int(values[P(5, 0, 3)]))  # type: ignore[arg-type]
            if seen[-1] == 2:
                got_downloaded.set()
        first = await downlink.observe(EP, P(5, 0, 3), None, on_notify)
        assert first.code == "2.05" and first.payload == b"0"
        assert (await downlink.push(EP, P(5, 0, 0), IMAGE)).code == "2.04"
        await asyncio.wait_for(got_downloaded.wait(), 10)
        assert seen[-1] == 2
        downlink.cancel_observation(EP, P(5, 0, 3))
    run(tmp_path, scenario)


@pytest.mark.parametrize("method", ["push", "pull-coap", "pull-http"])
def test_int_770_771_successful_update(tmp_path: Path, method: str) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device()
        old_port = link.port
        uris = {"push": (), "pull-coap": (lab.coap_uri,), "pull-http": (lab.http_uri,)}[method]
        chosen = fm.Method.PUSH if method == "push" else fm.Method.PULL
        events = await lab.update(job(uris, chosen))
        assert events[-1] == fm.UpdateSucceeded("2.0.0"), (link.client.phase, link.uplink_log, link.port, old_port)
        assert any(isinstance(e, fm.UpdateExecuted) for e in events)
        assert link.client.firmware_version == "2.0.0" and link.client.reboots == 1
        assert link.port != old_port  # re-registered from a new source port
        code, values = await lab.read(P(3, 0, 3))
        assert values[P(3, 0, 3)] == "2.0.0"
    run(tmp_path, scenario)


def test_int_772_execute_without_a_package(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device()
        assert (await lab.server.downlink.request(EP, "POST", P(5, 0, 2), timeout_s=10)).code == "4.05"
        values = (await lab.read(P(5, 0), ContentFormat.TLV))[1]
        assert (values[P(5, 0, 3)], values[P(5, 0, 5)]) == (0, 0)
        assert link.client.firmware_version == "1.0.0"
    run(tmp_path, scenario)


_ERROR_CASES = [
    ("int-773", Fault.NOT_ENOUGH_FLASH, "pull-coap", 2), ("int-773", Fault.NOT_ENOUGH_FLASH, "push", 2),
    ("int-774", Fault.OUT_OF_RAM, "pull-coap", 3), ("int-775", Fault.CONNECTION_LOST, "pull-coap", 4),
    ("int-776", Fault.INTEGRITY_FAILURE, "push", 5), ("int-777", Fault.UNSUPPORTED_PACKAGE, "push", 6),
    ("int-778", Fault.INVALID_URI, "pull-coap", 7), ("int-779", Fault.UPDATE_FAILED, "push", 8),
    ("int-780", Fault.UNSUPPORTED_PROTOCOL, "pull-http", 9),
]


@pytest.mark.parametrize(("case", "fault", "method", "result"), _ERROR_CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in _ERROR_CASES])
def test_int_773_780_error_results(tmp_path: Path, case: str, fault: Fault, method: str, result: int) -> None:
    async def scenario(lab: Lab) -> None:
        link = await lab.device(fault)
        uris = {"push": (), "pull-coap": (lab.coap_uri,), "pull-http": (lab.http_uri,)}[method]
        chosen = fm.Method.PUSH if method == "push" else fm.Method.PULL
        events = await lab.update(job(uris, chosen))
        assert events[-1] == fm.UpdateFailed(result_reason(result), result)
        values = (await lab.read(P(5, 0), ContentFormat.TLV))[1]
        assert values[P(5, 0, 5)] == result
        assert values[P(5, 0, 3)] == (2 if result == 8 else 0)
        assert link.client.firmware_version == "1.0.0"
    run(tmp_path, scenario)
