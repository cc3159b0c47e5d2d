"""Fleet start-up time and memory per emulated device, and the server's CPU and memory under a registered fleet.

    python tools/bench_fleet.py [--sizes 1000,10000] [--lifetime 60] [--window 60] [--start-rate 500]
    python tools/bench_fleet.py --sizes 10000 --http 2000 --omadm 500     # the mixed fleet of issue 8
    python tools/bench_fleet.py --sizes 100000 --lifetime 3600 --start-rate 1000   # one process, 100,000 LwM2M
    python tools/bench_fleet.py --http 20000 --lifetime 3600 --start-rate 1000     # 20,000 HTTP devices only

For each size: write the fleet's device manifest, import it with ``fota-server account create`` and
``fota-server device import``, start ``fota-server run`` on OS-assigned ports (``--server rig`` runs the
fleet test server ``tests/integration/test_fleet_rig.py`` instead, which checks HTTP devices in more often), start that many
LwM2M devices in this process at ``--start-rate`` per second and wait until every one has registered. Then
measure for ``--window`` seconds while the devices keep their registrations up to date (an Update every
``lifetime / 2`` seconds each): the server's CPU share and resident memory (from /proc), and this
process's. Prints one JSON object per size: the seconds until every device was registered (or had its
first check-in answered), this process's resident memory per device and its CPU seconds until then, the
file descriptors it held, and its CoAP retransmissions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from device_emulator.fleet import Fleet, ServerUrls, raise_file_limit  # noqa: E402
from device_emulator.fleet_devices import Lwm2mFleetDevice  # noqa: E402
from device_emulator.fleet_provision import write_manifest  # noqa: E402
from device_emulator.fleet_spec import FleetSpec, plan_devices  # noqa: E402
from device_emulator.progress import StderrProgress  # noqa: E402

_ROOT = Path(__file__).resolve().parent.parent
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")
RIG = [sys.executable, "-m", "tests.integration.test_fleet_rig"]
FOTA_SERVER = [sys.executable, "-m", "fota_server"]
_LISTENING = re.compile(r"listening on (\S+): (.*)")


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


def cpu_seconds(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _fota_server(*args: str) -> str:
    done = subprocess.run([*FOTA_SERVER, *args], capture_output=True, text=True, cwd=_ROOT, check=True)
    return done.stdout


def start_server(kind: str, db: Path, manifest: Path, devices: int) -> tuple[subprocess.Popen[str], dict[str, str], float]:
    """The server process and its URLs; the seconds from import to listening."""
    started = time.monotonic()
    if kind == "rig":
        command = [*RIG, "--db", str(db), "--manifest", str(manifest)]
    else:
        _fota_server("account", "create", "fleet", "--licenses", str(devices), "--db", str(db))
        imported = json.loads(_fota_server("device", "import", str(manifest), "--db", str(db)))
        if imported["errorCount"]:
            raise RuntimeError(f"import failed: {imported['errors'][:3]}")
        command = [*FOTA_SERVER, "run", "--db", str(db), "--http-port", "0", "--coap-port", "0", "--coaps-port",
                   "0", "--log-level", "WARNING"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=_ROOT,
                            preexec_fn=lambda: raise_file_limit(65536))
    assert proc.stdout is not None
    for _ in range(100):
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the server exited ({proc.wait()}) before it listened")
        if kind == "rig":
            return proc, json.loads(line), time.monotonic() - started
        match = _LISTENING.search(line)
        if match:
            ports = dict(re.findall(r"(\w+) port (\d+)", match.group(2)))
            http = f"http://127.0.0.1:{ports['http']}"
            urls = {"coap": f"coap://127.0.0.1:{ports['coap']}", "http": http, "omadm": http + "/dm"}
            return proc, urls, time.monotonic() - started
    raise RuntimeError("the server did not say where it listens")


async def measure(size: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    spec = FleetSpec(lwm2m=size, http=args.http, omadm=args.omadm, lifetime_s=(args.lifetime, args.lifetime),
                     checkin_s=(args.lifetime / 2, args.lifetime), seed=size, start_rate_per_s=args.start_rate)
    plans = plan_devices(spec)
    manifest = work / f"fleet-{size}.json"
    write_manifest(plans, spec.account, manifest)
    proc, urls, server_ready_s = start_server(args.server, work / f"fota-{size}.db", manifest, spec.total)
    try:
        gc.collect()
        rss0, cpu0, s_cpu_start = rss_bytes(), cpu_seconds(), cpu_seconds(proc.pid)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        fleet = Fleet(plans, ServerUrls(coap=urls["coap"], http=urls["http"], omadm=urls["omadm"]),
                      start_rate_per_s=args.start_rate, http_connections=args.http_connections)
        try:
            await fleet.start()
            started_s = loop.time() - t0
            registered = await fleet.wait_until(lambda f: f.count("starting") == 0, args.register_timeout,
                                                poll_s=1.0, on_progress=StderrProgress(), progress_s=5)
            registered_s = loop.time() - t0
            waiting = fleet.count("starting")
            gc.collect()
            rss1, cpu1 = rss_bytes(), cpu_seconds()
            fds, sockets = len(os.listdir("/proc/self/fd")), len(fleet.mux.udp.ports())
            retransmissions_registering = fleet.mux.retransmissions
            s_cpu0, s_rss0 = cpu_seconds(proc.pid), rss_bytes(proc.pid)
            lwm2m = [d for d in fleet.devices if isinstance(d, Lwm2mFleetDevice)]
            regs0 = sum(d.client.registrations for d in lwm2m)
            updates0 = sum(d.client.updates for d in lwm2m)
            w0 = loop.time()
            await fleet.wait_until(lambda f: False, args.window, poll_s=1.0)
            window = loop.time() - w0
            s_cpu1, s_rss1 = cpu_seconds(proc.pid), rss_bytes(proc.pid)
            cpu2 = cpu_seconds()
            reregistered = sum(d.client.registrations for d in lwm2m) - regs0
            updates = sum(d.client.updates for d in lwm2m) - updates0
            still = fleet.count("idle")
        finally:
            await fleet.stop()
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "lwm2m": size, "http": args.http, "omadm": args.omadm, "lifetime_s": args.lifetime, "start_rate_per_s": args.start_rate,
        "server": args.server, "server_import_and_ready_s": round(server_ready_s, 2),
        "fleet_started_s": round(started_s, 2), "all_registered": registered, "not_registered": waiting,
        "all_registered_s": round(registered_s, 2),
        "emulator_rss_per_device_kib": round((rss1 - rss0) / spec.total / 1024, 2),
        "emulator_rss_mib": round(rss1 / 2**20, 1),
        "emulator_cpu_s_startup": round(cpu1 - cpu0, 2), "server_cpu_s_startup": round(s_cpu0 - s_cpu_start, 2),
        "emulator_open_files": fds, "emulator_udp_sockets": sockets,
        "coap_retransmissions_registering": retransmissions_registering,
        "coap_retransmissions_window": fleet.mux.retransmissions - retransmissions_registering,
        "emulator_cpu_share_window": round((cpu2 - cpu1) / window, 3),
        "window_s": round(window, 1), "lwm2m_updates_per_s_expected": round(size / (args.lifetime / 2), 1),
        "lwm2m_updates_per_s_accepted": round(updates / window, 1),
        "server_cpu_share_window": round((s_cpu1 - s_cpu0) / window, 3),
        "server_rss_mib_registered": round(s_rss0 / 2**20, 1), "server_rss_mib_after_window": round(s_rss1 / 2**20, 1),
        "registered_at_end": still, "full_registrations_in_window": reregistered,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", help="LwM2M fleet sizes (default 1000,10000; 0 with --http or --omadm)")
    parser.add_argument("--lifetime", type=int, default=60, help="registration lifetime (Update every half)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of steady state to measure")
    parser.add_argument("--http", type=int, default=0, help="HTTP devices besides each size's LwM2M devices")
    parser.add_argument("--omadm", type=int, default=0, help="OMA-DM devices besides them")
    parser.add_argument("--start-rate", type=float, default=500.0, help="devices started per second")
    parser.add_argument("--http-connections", type=int, default=512,
                        help="connections the HTTP and OMA-DM devices share (default 512)")
    parser.add_argument("--register-timeout", type=float, default=300.0)
    parser.add_argument("--server", choices=["fota-server", "rig"], default="fota-server",
                        help="fota-server run (default) or the fleet test server")
    args = parser.parse_args()
    raise_file_limit(65536)
    if args.sizes is None:
        args.sizes = "0" if args.http or args.omadm else "1000,10000"
    sizes = [int(s) for s in args.sizes.split(",")]
    if len(sizes) > 1:  # each size in a fresh process, so that one size's memory does not hide the next one's
        for size in sizes:
            subprocess.run([sys.executable, __file__, *_without_sizes(sys.argv[1:]), "--sizes", str(size)],
                           check=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(sizes[0], args, Path(tmp)))
    result["emulator_max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result), flush=True)


def _without_sizes(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--sizes":
            skip = True
        elif not arg.startswith("--sizes="):
            out.append(arg)
    return out


if __name__ == "__main__":
    main()
