"""``device-emulator fleet``: plan, provision and run a fleet of emulated devices.

    device-emulator fleet provision --lwm2m 1000 --http 200 --omadm 50 --out fleet.json
    fota-server account create fleet --licenses 1250     # once: the account the manifest names
    fota-server device import fleet.json                 # the server learns the devices and credentials
    device-emulator fleet run --lwm2m 1000 --http 200 --omadm 50 \\
        --coap coap://127.0.0.1:5683 --http-url http://127.0.0.1:8080 --results results.json

Both subcommands draw the same devices from the same spec and seed (``--spec FILE`` is JSON with the
``FleetSpec`` fields; flags override it). ``--fault NAME=RATE`` gives a share of each protocol's devices
a fault: none, packet-loss, latency, connection-cut, integrity-failure, not-enough-flash, update-failure,
reboot-loop, offline. A spec file looks like::

    {"lwm2m": 10000, "http": 2000, "omadm": 500, "cells": 20, "seed": 7, "account": "fleet",
     "models": [["Quectel", "BG96", 3], ["Nordic", "nRF9160", 1]], "versions": [["1.0.0", 9], ["0.9.0", 1]],
     "lifetime_s": [300, 600], "checkin_s": [60, 120], "start_rate_per_s": 500,
     "faults": {"packet-loss": 0.02, "update-failure": 0.01, "offline": 0.05},
     "fault_params": {"loss_rate": 0.2, "latency_s": 0.3, "offline_s": 20, "cut_after_bytes": 2048}}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from .faults import FleetFault
from .fleet import Fleet, Progress, ServerUrls
from .fleet_provision import write_manifest
from .fleet_spec import FleetSpec, load_spec, plan_devices
from .live_progress import LiveProgress, rich_summary
from .progress import StderrProgress, summary_table

__all__ = ["add_parser", "run"]


def _spec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, help="JSON file of FleetSpec fields")
    parser.add_argument("--lwm2m", type=int, help="LwM2M devices")
    parser.add_argument("--http", type=int, help="HTTP pull devices")
    parser.add_argument("--omadm", type=int, help="OMA-DM devices")
    parser.add_argument("--cells", type=int, help="serving cells to spread devices over (default 20)")
    parser.add_argument("--seed", type=int, help="seed of every draw (default 1)")
    parser.add_argument("--account", help="account of the devices (default fleet)")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME=RATE",
                        help="share of each protocol's devices with this fault (repeatable)")


def add_parser(sub: Any) -> None:
    fleet = sub.add_parser("fleet", help="many devices of all three protocols in one process, with faults",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = fleet.add_subparsers(dest="fleet_action", required=True)
    provision = actions.add_parser("provision", help="write the device manifest the server imports")
    _spec_flags(provision)
    provision.add_argument("--out", type=Path, required=True, help="manifest file to write")
    go = actions.add_parser("run", help="run the fleet against a server")
    _spec_flags(go)
    go.add_argument("--coap", default="", help="LwM2M server, e.g. coap://127.0.0.1:5683")
    go.add_argument("--http-url", default="", help="HTTP FOTA base URL, e.g. http://127.0.0.1:8080")
    go.add_argument("--omadm-url", default="", help="OMA-DM URL (default <http-url>/dm)")
    go.add_argument("--duration", type=float, default=600.0, help="stop after this many seconds (default 600)")
    go.add_argument("--until-updated", type=int, default=0, help="stop once this many devices run new firmware")
    go.add_argument("--until-registered", action="store_true",
                    help="stop once every device has registered, checked in or held its first DM session")
    go.add_argument("--start-rate", type=float, help="devices started per second (default 1000)")
    go.add_argument("--progress-s", type=float, default=5.0, help="progress line period on stderr")
    go.add_argument("--results", type=Path, help="JSON results file (per device and totals)")
    go.add_argument("--insecure", action="store_true", help="do not verify HTTPS certificates")
    go.add_argument("-v", "--verbose", action="store_true",
                    help="also log what the devices and libraries say (INFO); default: progress and summary only")


def spec_from(args: argparse.Namespace) -> FleetSpec:
    faults: dict[str, float] = {}
    for text in args.fault:
        name, sep, rate = text.partition("=")
        try:
            FleetFault(name)
            faults[name] = float(rate) if sep else 0.0
        except ValueError:
            raise SystemExit(f"--fault wants NAME=RATE with NAME one of "
                             f"{', '.join(f.value for f in FleetFault)}, not {text!r}") from None
    overrides = {"lwm2m": args.lwm2m, "http": args.http, "omadm": args.omadm, "cells": args.cells,
                 "seed": args.seed, "account": args.account,
                 "start_rate_per_s": getattr(args, "start_rate", None)}
    try:
        base: dict[str, Any] = json.loads(args.spec.read_text()) if args.spec else {}
        if faults:
            base["faults"] = {**base.get("faults", {}), **faults}
        return load_spec(base, **overrides)
    except (ValueError, TypeError, OSError) as exc:
        raise SystemExit(f"device-emulator fleet: bad spec: {exc}") from None


async def _run(args: argparse.Namespace, spec: FleetSpec) -> int:
    urls = ServerUrls(coap=args.coap, http=args.http_url, omadm=args.omadm_url)
    fleet = Fleet.from_spec(spec, urls, verify=not args.insecure)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def done(f: Fleet) -> bool:
        return stop.is_set() or (args.until_updated > 0 and f.count("updated") >= args.until_updated) or (
            args.until_registered and f.count("starting") == 0)

    live = LiveProgress({"LWM2M": spec.lwm2m, "HTTP": spec.http, "OMADM": spec.omadm}) if sys.stderr.isatty() else None

    def say(text: str) -> None:
        if live is not None:
            live.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)
    say(f"starting {spec.total} devices ({spec.lwm2m} LwM2M, {spec.http} HTTP, {spec.omadm} OMA-DM)")
    try:
        with live if live is not None else contextlib.nullcontext():
            await fleet.start()
            say(f"all devices started in {fleet.startup_s:.1f} s")
            progress: Progress = live if live is not None else StderrProgress()
            await fleet.wait_until(done, args.duration, on_progress=progress,
                                   progress_s=min(1.0, args.progress_s) if live is not None else args.progress_s)
            progress(fleet.elapsed(), fleet.counts())
    finally:
        result = fleet.result()
        await fleet.stop()
    if sys.stdout.isatty():
        console = Console()
        for table in rich_summary(result.devices):
            console.print(table)
    else:
        print(summary_table(result.devices))
    if args.results:
        result.write(args.results)
        print(f"results of {len(result.devices)} devices in {args.results}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    if args.fleet_action == "provision":
        count = write_manifest(plan_devices(spec), spec.account, args.out)
        print(f"{count} devices of account {spec.account!r} in {args.out}; import them with:\n"
              f"  fota-server account create {spec.account} --licenses {count}   (if it does not exist)\n"
              f"  fota-server device import {args.out}")
        return 0
    if spec.lwm2m and not args.coap or (spec.http or spec.omadm) and not args.http_url and not args.omadm_url:
        raise SystemExit("device-emulator fleet run: --coap is needed for LwM2M devices, --http-url for HTTP "
                         "and OMA-DM devices")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(args, spec))
