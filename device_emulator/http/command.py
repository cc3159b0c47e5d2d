"""``device-emulator http``: one emulated HTTP pull device against a running server, events printed as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from device_emulator.http.machine import CheckInRefused, Event, HttpDeviceMachine, HttpDeviceState, HttpFaults, Phase, RebootedInto

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    http = sub.add_parser("http", help="one HTTP pull device: check in, download, verify, install, report")
    http.add_argument("--server", required=True, help="base URL, e.g. https://127.0.0.1:8080")
    http.add_argument("--device-id", required=True)
    http.add_argument("--token", required=True, help="the device token from 'fota-server' or the API")
    http.add_argument("--firmware-version", required=True)
    http.add_argument("--software-version", default="")
    http.add_argument("--config-version", default="")
    http.add_argument("--make", default="")
    http.add_argument("--model", default="")
    http.add_argument("--public-key", type=Path, help="PEM from 'fota-server keys public' to verify signatures")
    http.add_argument("--cafile", help="CA bundle to verify the server certificate")
    http.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    http.add_argument("--until-version", help="stop once the device runs this version")
    http.add_argument("--max-checkins", type=int, default=1, help="stop after this many check-ins (default 1)")
    http.add_argument("--speed", type=float, default=1.0, help="run the device clock this many times faster")
    http.add_argument("--cut-after", type=int, default=0, help="cut downloads after this many bytes")
    http.add_argument("--cuts", type=int, default=0, help="how many downloads to cut")
    http.add_argument("--corrupt", action="store_true", help="flip a byte of the downloaded image")
    http.add_argument("--fail-install", action="store_true")
    http.add_argument("--reboot-into-old", action="store_true")


def _print(event: Event) -> None:
    fields = {k: v for k, v in dataclasses.asdict(event).items() if k != "offer"}
    if hasattr(event, "offer"):
        fields["offer"] = {k: v for k, v in dataclasses.asdict(event.offer).items() if k != "signature"}
    print(json.dumps({"event": type(event).__name__, **fields}), flush=True)


async def _run(args: argparse.Namespace) -> int:
    from device_emulator.links.http import HttpLink

    state = HttpDeviceState(args.firmware_version, args.software_version, args.config_version, args.make, args.model)
    faults = HttpFaults(args.cut_after, args.cuts, args.corrupt, args.fail_install, args.reboot_into_old)
    key = args.public_key.read_bytes() if args.public_key else None
    machine = HttpDeviceMachine(state, key, faults=faults)
    verify: str | bool = args.cafile or not args.insecure
    link = HttpLink(args.server, args.device_id, args.token, verify=verify, speed=args.speed)
    reached: list[bool] = []
    refused: list[int] = []

    def until(m: HttpDeviceMachine) -> bool:
        if args.until_version:
            return m.settled and args.until_version in (
                m.state.firmware_version, m.state.software_version, m.state.config_version) and bool(reached)
        return m.checkins >= args.max_checkins and m.phase is Phase.WAITING

    def on_event(event: Event) -> None:
        if isinstance(event, RebootedInto):
            reached.append(True)
        if isinstance(event, CheckInRefused):
            refused.append(event.status)
        _print(event)

    try:
        await link.run(machine, until, on_event)
    finally:
        await link.aclose()
    s = machine.state
    print(json.dumps({"event": "Stopped", "firmwareVersion": s.firmware_version, "softwareVersion": s.software_version,
                      "configVersion": s.config_version, "checkins": machine.checkins, "downloads": machine.downloads,
                      "flashes": machine.flashes, "versions": machine.versions}), flush=True)
    if refused and refused[-1] in (401, 403):
        print(f"device-emulator http: the server refused the device ({refused[-1]}); check --device-id and --token",
              file=sys.stderr)
        return 3
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (OSError, RuntimeError) as exc:
        print(f"device-emulator http: {exc}", file=sys.stderr)
        return 1
