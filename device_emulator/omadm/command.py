"""``device-emulator omadm``: one emulated OMA-DM device against a running server, results printed as JSON lines.

It opens a client-initiated DM session (inventory, and any FUMO job the server has for it), runs the
job (download, check, flash, reboot) and reports the Generic Alert 1226 in a second session. With
``--listen`` it also waits for Package 0 notifications on UDP and answers each with a session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from fota_server.protocol.omadm.digests import AUTH_BASIC, AUTH_MAC, AUTH_MD5
from fota_server.protocol.omadm.syncml import Encoding

from .client import ClientConfig
from .device import DeviceProfile, Fault, OmadmDevice

__all__ = ["add_parser", "run"]

_AUTH = {"md5": AUTH_MD5, "basic": AUTH_BASIC, "mac": AUTH_MAC}


def add_parser(sub: Any) -> None:
    dm = sub.add_parser("omadm", help="one OMA-DM device: DM sessions, FUMO download and update, Package 0")
    dm.add_argument("--server", required=True, help="DM server URL, e.g. http://127.0.0.1:8080/dm")
    dm.add_argument("--dev-id", required=True, help="./DevInfo/DevId, e.g. IMEI:356938035643809")
    dm.add_argument("--user", required=True, help="the OMA-DM user name provisioned on the server")
    dm.add_argument("--secret", required=True, help="the OMA-DM shared secret provisioned on the server")
    dm.add_argument("--firmware-version", default="1.0.0")
    dm.add_argument("--make", default="Acme")
    dm.add_argument("--model", default="Tracker-1")
    dm.add_argument("--fumo-root", default="./FUMO", help="FUMO node, e.g. ./FwUpdate/1")
    dm.add_argument("--auth", choices=sorted(_AUTH), default="md5")
    dm.add_argument("--wbxml", action="store_true", help="speak WBXML instead of XML")
    dm.add_argument("--fault", choices=[f.name.lower() for f in Fault], default="none",
                    help="make the FUMO job end with this result")
    dm.add_argument("--listen", help="HOST:PORT to receive Package 0 on (port 0 picks one)")
    dm.add_argument("--wait-s", type=float, default=0.0, help="with --listen: how long to wait for triggers")
    dm.add_argument("--cafile", help="CA bundle to verify the server certificate")
    dm.add_argument("--insecure", action="store_true", help="do not verify the server certificate")


def _print(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def _run(args: argparse.Namespace) -> int:
    from device_emulator.links.omadm import OmadmLink, SessionFailed

    profile = DeviceProfile(args.dev_id, man=args.make, mod=args.model, fw_version=args.firmware_version,
                            fumo_root=args.fumo_root)
    device = OmadmDevice(profile, Fault[args.fault.upper()])
    config = ClientConfig(args.user, args.secret, auth=_AUTH[args.auth],
                          encoding=Encoding.WBXML if args.wbxml else Encoding.XML)
    link = OmadmLink(device, config, args.server, verify=args.cafile or not args.insecure)
    try:
        if args.listen:
            host, _, port = args.listen.rpartition(":")
            bound = await link.listen(host.strip("[]") or "127.0.0.1", int(port or 0))
            _print("Listening", host=bound[0], port=bound[1])
        code = await link.update_cycle()
        _print("SessionsDone", sessions=link.sessions_run, firmwareVersion=device.firmware_version, result=code)
        if args.listen and args.wait_s > 0:
            try:
                await link.settle(1_000_000, args.wait_s)
            except asyncio.TimeoutError:
                await link.settle(link.triggers_seen)  # let the sessions under way finish
            _print("TriggersDone", sessions=link.sessions_run, firmwareVersion=device.firmware_version,
                   results=link.results, refused=link.triggers_refused, downloads=device.downloads,
                   flashes=device.flashes, versions=device.versions)
    except SessionFailed as exc:
        _print("SessionFailed", detail=str(exc))
        return 1
    finally:
        await link.aclose()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
