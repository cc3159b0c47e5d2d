"""``device-emulator one``: one device of any protocol, as a fleet would run it (same fault vocabulary), with
a readable trace of every protocol exchange on stdout::

    device-emulator one --protocol LWM2M --server coap://127.0.0.1:5683 --id 350000000000000
    device-emulator one --protocol HTTP --server http://127.0.0.1:8080 --id 350000000000001 --secret TOKEN
    device-emulator one --protocol OMADM --server http://127.0.0.1:8080 --id 3500... --secret S --fault update-failure

    12.031 LWM2M -> POST /rd ep=urn:imei:350000000000000 lt=300 lwm2m=1.1 b=U
    12.034 LWM2M <- 2.01 rd/5f2a
    12.040 LWM2M <- GET /3/0                               -> 2.05
    12.911 HTTP  -> POST /http/v1/devices/3500.../checkin  {"firmwareVersion": "1.0.0", ...}
    12.915 HTTP  <- 200 {"nextCheckinSeconds": 300, "offer": {...}}
    13.002 OMADM -> POST /dm  SyncHdr(1/1) Alert 1201, Replace ./DevInfo/...
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any, TextIO

import httpx

from device_emulator.links.coap import CoapLink
from device_emulator.lwm2m.client import LwM2MClient
from device_emulator.lwm2m.messages import (
    DeviceRequest, DeviceResponse, SendDeregister, SendRegister, SendUpdate, Uplink,
)
from fota_server.protocol.errors import DecodeError
from fota_server.protocol.omadm.syncml import decode_message
from fota_server.protocol.omadm.tree import Limits

from .faults import FaultParams, FleetFault, hooks_for
from .fleet_devices import FleetDevice, HttpFleetDevice, Lwm2mFleetDevice, OmadmFleetDevice
from .fleet_spec import DevicePlan

__all__ = ["add_parser", "run", "Tracer"]

_T0 = time.monotonic()
_TEXT_LIMIT = 160


class Tracer:
    def __init__(self, protocol: str, out: TextIO | None = None) -> None:
        self.protocol, self.out = protocol, out or sys.stdout

    def line(self, text: str) -> None:
        print(f"{time.monotonic() - _T0:8.3f} {self.protocol:<5} {text}", file=self.out, flush=True)


def _short(body: bytes) -> str:
    """Text as text, binary (TLV, CBOR, WBXML) as ``<N bytes: hex...>``, cut at a line's worth."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if body and (not text or not text.isprintable()):
        return f"<{len(body)} bytes: {body[:24].hex()}{'...' if len(body) > 24 else ''}>"
    return text[:_TEXT_LIMIT] + (" ..." if len(text) > _TEXT_LIMIT else "")


def syncml_summary(body: bytes) -> str:
    """``SyncHdr(session/msg) Alert 1201, Replace ./DevInfo/DevId ...`` of a SyncML message (XML or WBXML)."""
    try:
        message, _ = decode_message(body, Limits(max_bytes=1 << 20))
    except DecodeError as exc:
        return f"(undecodable SyncML: {exc})"
    parts = []
    for command in message.commands:
        what = command.data or (command.items[0].target or command.items[0].source if command.items else "")
        if command.name == "Status":
            what = f"{command.cmd} {command.data}"
        parts.append(f"{command.name} {what}".strip())
    h = message.header
    return f"SyncHdr({h.session_id}/{h.msg_id}) " + ", ".join(parts)


class TracingTransport(httpx.AsyncBaseTransport):
    """Prints each HTTP exchange of one device (bodies of POSTs; sizes of downloads)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, tracer: Tracer) -> None:
        self._inner, self._tracer = inner, tracer

    def _body(self, path: str, body: bytes) -> str:
        return syncml_summary(body) if path == "/dm" else _short(body)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = request.content if request.method == "POST" else b""
        extra = f" Range: {request.headers['range']}" if "range" in request.headers else ""
        self._tracer.line(f"-> {request.method} {path}{extra}  {self._body(path, body)}")
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.HTTPError as exc:
            self._tracer.line(f"<- failed: {exc}")
            raise
        if request.method != "POST":
            self._tracer.line(f"<- {response.status_code} ({response.headers.get('content-length', '?')} bytes)")
            return response
        content = await response.aread()
        self._tracer.line(f"<- {response.status_code} {self._body(path, content)}")
        return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class TracingCoapLink(CoapLink):
    """The CoAP link of one LwM2M device, printing the server's requests and the device's uplinks."""

    def __init__(self, client: LwM2MClient, server_uri: str, tracer: Tracer, **kwargs: Any) -> None:
        super().__init__(client, server_uri, **kwargs)
        self.tracer = tracer

    def _served(self, request: DeviceRequest, answer: DeviceResponse) -> None:
        query = " ".join(request.query)
        self.tracer.line(f"<- {request.method} /{'/'.join(request.path)} {query}".rstrip()
                         + f"  -> {answer.code} {_short(answer.payload)}")

    def _sending(self, uplink: Uplink) -> None:
        if isinstance(uplink, SendRegister):
            self.tracer.line("-> POST /rd " + " ".join(uplink.query) + f"  {_short(uplink.payload)}")
        elif isinstance(uplink, SendUpdate):
            self.tracer.line(f"-> POST /{'/'.join(uplink.location)} " + " ".join(uplink.query))
        elif isinstance(uplink, SendDeregister):
            self.tracer.line(f"-> DELETE /{'/'.join(uplink.location)}")
        else:
            self.tracer.line(f"-- {type(uplink).__name__} (new source address and port after the reboot)")

    def _uplink_done(self, uplink: Uplink, code: str) -> None:
        c = self.client
        self.tracer.line(f"<- {code}  {c.phase.value} {'/'.join(c.location)} firmware {c.firmware_version} "
                         f"(Object 5 state {int(c.firmware.state)} result {int(c.firmware.result)})")

    async def _download(self, uri: str) -> None:
        self.tracer.line(f"-> GET {uri} (pull download)")
        await super()._download(uri)
        f = self.client.firmware
        self.tracer.line(f"   download ended: Object 5 state {int(f.state)} result {int(f.result)}")


def add_parser(sub: Any) -> None:
    one = sub.add_parser("one", help="one device of any protocol with a readable trace of every exchange")
    one.add_argument("--protocol", required=True, type=str.upper, choices=["LWM2M", "HTTP", "OMADM"])
    one.add_argument("--server", required=True, help="coap://host:port (LwM2M) or http(s)://host:port")
    one.add_argument("--id", required=True, help="device id (IMEI digits); endpoint urn:imei:ID, DevId IMEI:ID")
    one.add_argument("--secret", default="", help="HTTP token or OMA-DM secret (OMA-DM user: dm-ID)")
    one.add_argument("--user", help="OMA-DM user name (default dm-ID)")
    one.add_argument("--make", default="FOTA Emulator")
    one.add_argument("--model", default="EMU-1")
    one.add_argument("--firmware-version", default="1.0.0")
    one.add_argument("--cell", default="310-410-100-1000", help="MCC-MNC-LAC-CellID")
    one.add_argument("--interval", type=float, default=60.0, help="lifetime (LwM2M) or check-in interval, s")
    one.add_argument("--fault", default="none", choices=[f.value for f in FleetFault])
    one.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
    one.add_argument("--until-version", help="stop once the device runs this version")
    one.add_argument("--until-registered", action="store_true",
                     help="stop once registered, checked in or through its first DM session")


def _device(args: argparse.Namespace, tracer: Tracer) -> FleetDevice:
    try:
        mcc, mnc, lac, cell_id = (int(p) for p in args.cell.split("-"))
    except ValueError:
        raise SystemExit(f"--cell wants MCC-MNC-LAC-CellID, not {args.cell!r}") from None
    plan = DevicePlan(args.id, args.protocol, args.make, args.model, args.firmware_version,
                      (mcc, mnc, lac, cell_id), args.interval, FleetFault(args.fault), args.secret)
    hooks = hooks_for(plan.fault, plan.protocol, FaultParams())
    if plan.protocol == "LWM2M":
        host, _, port = args.server.removeprefix("coap://").rstrip("/").rpartition(":")
        return Lwm2mFleetDevice(plan, hooks, (host.strip("[]"), int(port or 5683)),
                                link_factory=lambda client, uri, **kw: TracingCoapLink(client, uri, tracer, **kw))
    pool = TracingTransport(httpx.AsyncHTTPTransport(verify=False), tracer)
    if plan.protocol == "HTTP":
        return HttpFleetDevice(plan, hooks, args.server, pool)
    device = OmadmFleetDevice(plan, hooks, args.server.rstrip("/") + "/dm", pool)
    if args.user:
        device.link.config = type(device.link.config)(args.user, args.secret)
    return device


async def _run(args: argparse.Namespace) -> int:
    tracer = Tracer(args.protocol)
    device = _device(args, tracer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    end = loop.time() + args.duration if args.duration > 0 else None
    await device.start()
    try:
        state = ""
        while not stop.is_set() and (end is None or loop.time() < end):
            now_state = f"{device.state()} firmware {device.version()} codes {device.codes}"
            if now_state != state:
                tracer.line(f"== {now_state}")
                state = now_state
            if args.until_version and device.version() == args.until_version:
                break
            if args.until_registered and device.state() != "starting":
                break
            await asyncio.sleep(0.1)
    finally:
        await device.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
