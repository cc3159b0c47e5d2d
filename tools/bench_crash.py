"""Exactly once under kill -9, at fleet size: the counts the devices themselves recorded.

    python tools/bench_crash.py                                   # 5,000 LwM2M + 300 HTTP + 200 OMA-DM, three kills
    python tools/bench_crash.py --lwm2m 1000 --http 100 --omadm 100 --kills 0.2,0.45,0.7 --sigterm 0.8
    python tools/bench_crash.py --loss 0.25 --lwm2m 300 --http 50 --omadm 50 --kills ""

Runs ``fota-server run`` on a fresh SQLite file, imports the fleet, schedules one campaign per protocol over
the SMS API, runs the emulated devices in this process, and kills the server with SIGKILL (``--kills``:
shares of devices updated at which to kill; ``--sigterm``: shares at which to stop it with SIGTERM) and starts
it again on the same ports each time. Prints one JSON object: devices, how many flashed never / once / twice
or more, double updates, report rows that disagree with their device, rows still in progress, LwM2M
registrations the server lost, the interruptions and the elapsed time. Target: zeros in the last four.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_emulator.faults import FaultParams, FleetFault  # noqa: E402
from device_emulator.fleet_spec import FleetSpec  # noqa: E402
from tests.crashrig import MAKE, MODEL, Interruption, rehearse  # noqa: E402


def _shares(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lwm2m", type=int, default=5000)
    parser.add_argument("--http", type=int, default=300)
    parser.add_argument("--omadm", type=int, default=200)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--cell-cap", type=int, default=20, help="devices updating at once per cell")
    parser.add_argument("--kills", default="0.2,0.45,0.7", help="shares updated at which to SIGKILL the server")
    parser.add_argument("--sigterm", default="", help="shares updated at which to stop it with SIGTERM")
    parser.add_argument("--loss", type=float, default=0.0, help="packet loss on every device link (0..1)")
    parser.add_argument("--image", type=int, default=4096, help="image size in bytes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    faults = {FleetFault.PACKET_LOSS: 1.0} if args.loss else {}
    spec = FleetSpec(lwm2m=args.lwm2m, http=args.http, omadm=args.omadm, models=((MAKE, MODEL, 1.0),),
                     cells=args.cells, checkin_s=(20.0, 40.0), lifetime_s=(300, 600), account="0000555000-00001",
                     seed=args.seed, start_rate_per_s=500, faults=faults,
                     fault_params=FaultParams(loss_rate=args.loss or 0.2))
    stops = [Interruption(s, signal.SIGKILL) for s in _shares(args.kills)]
    stops += [Interruption(s, signal.SIGTERM) for s in _shares(args.sigterm)]
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        run = asyncio.run(rehearse(Path(tmp), spec, stops, image_size=args.image, timeout_s=args.timeout,
                                   settings={"cell_cap": args.cell_cap},
                                   on_progress=lambda line: print(line, file=sys.stderr, flush=True)))
    print(json.dumps({"command": " ".join(sys.argv[1:]), **run.summary()}, indent=1))


if __name__ == "__main__":
    main()
