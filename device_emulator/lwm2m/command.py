"""``device-emulator lwm2m``: one emulated LwM2M device against a running server, progress as JSON lines.

It registers with Objects 1, 3, 4 and 5, keeps its registration up to date, answers reads, writes,
executes and observations, accepts push (Block1 to /5/0/0) and pull (CoAP or HTTP Package URI), checks
the image, flashes it, reboots into it from a new source port and registers again. ``--fault`` makes the
update end with that Update Result.
"""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import json
from pathlib import Path
from typing import Any

from fota_server.protocol.lwm2m.formats import FORMAT_NAMES, MULTI_VALUE_FORMATS, parse_format_names

from .client import WAKAAMA_FORMATS, ClientConfig, ClientPhase, LwM2MClient
from fota_server.protocol.lwm2m.objects import SCHEME_PROTOCOLS, DeliveryMethod, ProtocolSupport

from .faults import Fault
from .firmware import DeviceFirmware

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser("lwm2m", help="one LwM2M device: registration, Objects 3/4/5, push and pull updates")
    cmd.add_argument("--server", help="LwM2M server, e.g. coap://127.0.0.1:5683 (or what --bootstrap writes)")
    cmd.add_argument("--bootstrap", metavar="URI",
                     help="start from the LwM2M bootstrap server at URI, e.g. coap://127.0.0.1:5783, then register "
                          "at the server it writes")
    cmd.add_argument("--endpoint", required=True, help="endpoint client name, e.g. urn:imei:490154203237518")
    cmd.add_argument("--lifetime", type=int, default=300, help="registration lifetime in seconds")
    cmd.add_argument("--lwm2m-version", choices=["1.0", "1.1", "1.2"], default="1.1")
    cmd.add_argument("--queue", action="store_true", help="queue mode (b=UQ in 1.0, Q in 1.1)")
    cmd.add_argument("--formats", type=_formats, default=None, metavar="LIST",
                     help="multi-value content formats it reads in, preferred first, from "
                          f"{','.join(FORMAT_NAMES)} (default: all); any other Accept gets 4.06")
    cmd.add_argument("--no-announce-formats", dest="announce_formats", action="store_false",
                     help="leave ct= out of the Register payload (1.1 names its preferred format, 1.2 all)")
    cmd.add_argument("--wakaama", action="store_true",
                     help="behave like Eclipse Wakaama's lwm2mclient built with its defaults: LwM2M 1.1, "
                          "SenML JSON (announced as ct=110) and SenML CBOR, no TLV")
    cmd.add_argument("--fault", action="append", default=[], choices=[f.value for f in Fault],
                     help="make updates fail this way (repeatable)")
    cmd.add_argument("--firmware-version", default="1.0.0")
    cmd.add_argument("--make", default="FOTA Emulator")
    cmd.add_argument("--model", default="EMU-LWM2M")
    cmd.add_argument("--cell", default="310-410-1-1", help="serving cell MCC-MNC-LAC-CellID")
    cmd.add_argument("--public-key", type=Path,
                     help="PEM from 'fota-server keys public': pulled images must carry a valid signature")
    cmd.add_argument("--flash-kib", type=int, default=8192, help="flash available for a package")
    cmd.add_argument("--protocol-support", type=_protocols, default=(ProtocolSupport.COAP, ProtocolSupport.HTTP),
                     metavar="LIST", help="what /5/0/8 lists, from coap,coaps,http,https (default coap,http)")
    cmd.add_argument("--delivery", choices=[d.name.lower() for d in DeliveryMethod], default="both",
                     help="what /5/0/9 says: pull, push or both (default both)")
    cmd.add_argument("--bind", default="127.0.0.1", help="local address to bind (a new port per boot)")
    cmd.add_argument("--run-s", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    cmd.add_argument("--until-version", help="stop once running this firmware version")
    cmd.add_argument("--max-defer", type=int, default=0, metavar="S",
                     help="Object 5 Maximum Defer Period /5/0/13 in seconds (1.1+; with --fault defer)")
    cmd.add_argument("--severity", type=int, choices=[0, 1, 2], default=1,
                     help="Object 5 Severity /5/0/11: 0 critical (never deferred), 1 mandatory, 2 optional")


def _print(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _cell(text: str) -> tuple[int, int, int, int]:
    parts = text.split("-")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise SystemExit(f"--cell wants MCC-MNC-LAC-CellID, not {text!r}")
    mcc, mnc, lac, cell_id = (int(p) for p in parts)
    return mcc, mnc, lac, cell_id


def _protocols(text: str) -> tuple[ProtocolSupport, ...]:
    """``coap,http`` -> the /5/0/8 values (Object 5: 0 CoAP, 1 CoAPS, 2 HTTP, 3 HTTPS)."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names or any(n not in SCHEME_PROTOCOLS for n in names):
        raise argparse.ArgumentTypeError(f"--protocol-support wants names from {','.join(SCHEME_PROTOCOLS)}, not {text!r}")
    return tuple(dict.fromkeys(SCHEME_PROTOCOLS[n] for n in names))


def _formats(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(f) for f in parse_format_names(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_client(args: argparse.Namespace) -> LwM2MClient:
    version, formats = args.lwm2m_version, args.formats
    if args.wakaama:
        version, formats = "1.1", formats or tuple(int(f) for f in WAKAAMA_FORMATS)
    config = ClientConfig(args.endpoint, lifetime_s=args.lifetime, version=version,
                          queue_mode=args.queue, manufacturer=args.make, model=args.model,
                          firmware_version=args.firmware_version, cell=_cell(args.cell),
                          formats=formats or tuple(int(f) for f in MULTI_VALUE_FORMATS),
                          announce_formats=args.announce_formats)
    firmware = DeviceFirmware(flash_bytes=args.flash_kib * 1024, faults=frozenset(Fault(f) for f in args.fault),
                              protocols=args.protocol_support, delivery=DeliveryMethod[args.delivery.upper()],
                              public_key_pem=args.public_key.read_bytes() if args.public_key else None,
                              object_version="1.0" if version == "1.0" else "1.1",
                              severity=args.severity, max_defer_s=max(0, args.max_defer))
    if version == "1.0":  # the LwM2M 1.0 Object 5 (with /5/0/4, without Cancel) registers as </5>;ver=1.0
        versions = {**config.objects.versions, 1: "1.0", 5: "1.0"}
        config = dataclasses.replace(config, objects=dataclasses.replace(config.objects, versions=versions))
    return LwM2MClient(config, firmware)


async def _run(args: argparse.Namespace) -> int:
    from device_emulator.links.coap import CoapLink

    if args.bootstrap and not await _bootstrap(args):
        return 1
    if not args.server:
        raise SystemExit("lwm2m needs --server or --bootstrap")
    client = build_client(args)
    link = CoapLink(client, args.server, bind_host=args.bind)
    await link.start()
    seen: tuple[object, ...] = ()
    answered_at_boot = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + args.run_s if args.run_s > 0 else None
    try:
        while end is None or loop.time() < end:
            link.changed.clear()
            now_seen = (client.phase.value, client.location, client.firmware_version,
                        int(client.firmware.state), int(client.firmware.result), len(link.answered))
            if now_seen != seen:
                seen = now_seen
                _print("status", phase=now_seen[0], location="/".join(client.location), port=link.port,
                       firmware_version=now_seen[2], state=now_seen[3], result=now_seen[4],
                       last_request=" ".join(link.answered[-1]) if link.answered else "")
            if (args.until_version and client.firmware_version == args.until_version
                    and client.phase is ClientPhase.REGISTERED
                    and any(path == "/3/0/3" for _, path, _ in link.answered[answered_at_boot:])):
                break  # re-registered on the new version and the server has read the version back
            if client.firmware_version != args.until_version:
                answered_at_boot = len(link.answered)
            timeout = None if end is None else max(0.0, end - loop.time())
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                async with asyncio.timeout(timeout):
                    await link.changed.wait()
            except TimeoutError:
                break
    finally:
        await link.stop()
    _print("stopped", firmware_version=client.firmware_version, reboots=client.reboots,
           downloads=client.firmware.downloads, flashes=client.firmware.flashes, versions=client.versions)
    return 0


async def _bootstrap(args: argparse.Namespace) -> bool:
    """Client-initiated bootstrap; on success ``args.server`` and ``args.lifetime`` are what was written."""
    from device_emulator.links.coap_bootstrap import BootstrapFailed, run_bootstrap
    from device_emulator.lwm2m.bootstrap import BootstrapClient

    try:
        outcome = await run_bootstrap(BootstrapClient(args.endpoint), args.bootstrap, bind_host=args.bind)
    except BootstrapFailed as exc:
        _print("bootstrap_failed", code=exc.code)
        return False
    _print("bootstrapped", server=outcome.server_uri, security_mode=outcome.security_mode,
           psk_identity=outcome.psk_identity.decode(errors="replace"), lifetime=outcome.lifetime_s)
    if not outcome.server_uri.startswith("coap://"):
        _print("bootstrap_failed", code="unsupported", detail="this emulator registers over coap:// only")
        return False
    args.server, args.lifetime = outcome.server_uri, outcome.lifetime_s
    return True


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130
