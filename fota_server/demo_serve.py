"""The demo's last stage (``fota-server demo`` at a terminal, or ``--serve``): after its report the server keeps
running with the same fleet, a second update waits in the firmware list, and the web console's address, user
and password are printed, so that the next update is the user's own, from the browser; until Ctrl-C.

The fleet of this stage is the demo's fleet as it ended: the same devices (ids, cells, credentials: the same
draw as ``device-emulator fleet run`` with the demo's flags), each running the firmware it reported at the end
(``final_version`` in the fleet's results), without the injected faults, so that the update the user schedules
goes through. It runs in a thread of this process with its own event loop (the emulator is a library too).
At Ctrl-C it stops and writes its own results (``served-fleet-results.json``: how many times each device
flashed in this stage and the versions it ran), and the demo prints how many devices flashed once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import logging
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from .app import RunningServer
from .protocol.image import build_image

__all__ = ["serve_console", "NEXT_VERSION", "next_firmware_name"]

NEXT_VERSION = "1.2.0"


def next_firmware_name(protocol: str, version_from: str) -> str:
    return f"EMU-1 {version_from} to {NEXT_VERSION} ({protocol})"


class ServedFleet:
    """The emulated fleet in its own thread and event loop, from ``start`` until ``stop``."""

    def __init__(self, plans: list[Any], urls: Any, params: Any) -> None:
        self._plans, self._urls, self._params = plans, urls, params
        self._stop = threading.Event()
        self.started = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="demo-fleet", daemon=True)

    async def _run(self) -> None:
        from device_emulator.fleet import Fleet

        fleet = Fleet(self._plans, self._urls, params=self._params)
        try:
            await fleet.start()
            self.started.set()
            while not self._stop.is_set():
                await fleet.wait_until(lambda _f: self._stop.is_set(), 0.5)
        except BaseException as exc:   # shown by the demo
            self.error = exc
        finally:
            self.result = fleet.result()
            await fleet.stop()
            self.started.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)


def _plans(fleet_args: Callable[[], list[str]], results: Path) -> tuple[list[Any], Any]:
    """The demo fleet's device plans (the CLI's own draw), each on its final firmware, faults off."""
    from device_emulator.faults import FleetFault
    from device_emulator.fleet_command import add_parser, spec_from
    from device_emulator.fleet_spec import plan_devices

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    spec = spec_from(parser.parse_args(["fleet", "run", *fleet_args()]))
    finals = {d["device_id"]: d["final_version"] for d in json.loads(results.read_text())["devices"]}
    plans = [dataclasses.replace(p, version=finals.get(p.device_id, p.version), fault=FleetFault.NONE)
             for p in plan_devices(spec)]
    return plans, spec.fault_params


def _add_next_firmware(server: RunningServer, account: str, make: str, model: str, versions: set[str]) -> list[str]:
    image = build_image(make, model, NEXT_VERSION, 64 * 1024)
    names = []
    for version_from in sorted(versions):
        for protocol in ("LWM2M", "HTTP", "OMADM"):
            name = next_firmware_name(protocol, version_from)
            server.services.firmware.add(io.BytesIO(image), name=name, make=make, model=model,
                                         version_from=version_from, version_to=NEXT_VERSION, protocol=protocol,
                                         account_name=account)
            names.append(name)
    return names


def _flash_lines(devices: list[dict[str, Any]]) -> list[str]:
    out = []
    for protocol in sorted({d["protocol"] for d in devices}):
        counts = Counter(min(int(d["flashes"]), 2) for d in devices if d["protocol"] == protocol)
        now = Counter(d["final_version"] for d in devices if d["protocol"] == protocol)
        out.append(f"{protocol:10} flashes: {counts[1]} devices once, {counts[0]} never, {counts[2]} twice or more;"
                   f" running " + ", ".join(f"{v} {n}" for v, n in sorted(now.items())))
    return out


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve_console(server: RunningServer, ports: dict[str, int], creds: dict[str, Any], *, account: str,
                        make: str, model: str, fleet_args: Callable[[], list[str]], workdir: Path,
                        say: Callable[[str], None]) -> int:
    """Keep ``server`` running with the demo's fleet until SIGINT or SIGTERM; 0 when the fleet ran cleanly."""
    from device_emulator.fleet import ServerUrls

    base = f"http://127.0.0.1:{ports['http']}"
    logging.getLogger("httpx").setLevel(logging.WARNING)   # the fleet's own requests would fill the terminal
    plans, params = _plans(fleet_args, workdir / "fleet-results.json")
    versions = {p.version for p in plans}
    names = _add_next_firmware(server, account, make, model, versions)
    fleet = ServedFleet(plans, ServerUrls(coap=f"coap://127.0.0.1:{ports['coap']}", http=base), params)
    fleet.start()
    await asyncio.get_running_loop().run_in_executor(None, fleet.started.wait, 120.0)
    from device_emulator.fleet_spec import cell_text

    cell = min((cell_text(p.cell) for p in plans if p.protocol == "LWM2M"), default="")
    say(f"""
The server and the fleet keep running: update the fleet from the browser.
Web console: {base}/ui/  (user {creds['username']}, password {creds['password']})
  New campaign: firmware "{next_firmware_name('LWM2M', max(versions))}" is ready ({len(names)} images for
  {', '.join(sorted(versions))} -> {NEXT_VERSION}). Pick devices by filter (firmware now {max(versions)}); the wizard
  explains the pilot rule: first a pilot of at most 20 devices (e.g. the filter's serving cell {cell}),
  then, once 5 have updated, the rest. Watch the campaign page and a device's protocol trace.
Press Ctrl-C to stop.""")
    try:
        await _until_stopped()
    finally:
        say("\nstopping the fleet and the server")
        await asyncio.get_running_loop().run_in_executor(None, fleet.stop)
    if fleet.result is not None:
        fleet.result.write(workdir / "served-fleet-results.json")
        devices = [d.as_json() for d in fleet.result.devices]
        say("While served, as the devices counted it:")
        for line in _flash_lines(devices):
            say(line)
    if fleet.error is not None:
        say(f"the fleet stopped on an error: {fleet.error!r}")
        return 1
    return 0
