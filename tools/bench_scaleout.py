"""Several ``fota-server run`` processes on one PostgreSQL database, beside one process, in one run.

    python tools/bench_scaleout.py [--seconds 5] [--duration 5] [--rounds 3] [--peers 64] [--devices 5000]
                                   [--connections 64]

Three variants, each on a fresh database set up as a user would (an account, ``--devices`` LwM2M devices
imported with ``fota-server device import``, an HTTP device with its token, an HTTP image and a v2 HTTP
campaign scheduled over the SMS API, so that every check-in answers with the offered update):

- **sqlite-1**: one process on a SQLite file (the default);
- **pg-1**: one process on PostgreSQL;
- **pg-1-node** (with ``--variants``): one process on PostgreSQL started as one of pg-2's (``--node a``,
  ``--reuse-port``, fixed ports): what the second process changes, apart from the cluster machinery;
- **pg-2**: two processes on one PostgreSQL database (``--node a`` / ``--node b``) sharing the same fixed HTTP,
  CoAP and CoAPS ports with ``--reuse-port``: the kernel spreads wrk's connections and the load generator's UDP
  sockets (each bound to its own 127.0.x.y address) over the two processes by address.

PostgreSQL is a throwaway cluster started as ``tools/bench_http.py --postgres`` starts it (``tests/pgcluster.py``:
Unix socket, ``fsync`` and ``synchronous_commit`` off), one database per variant.

Each round measures every variant in turn, so that they see the same state of the machine:

- **registrations/s**: LwM2M Register through the (shared) CoAP port for ``--seconds``, ``--peers`` in flight,
  cycling through the imported devices, the devices answering the server's reads after Register (the load of
  ``tools/bench_lwm2m.py``'s register run, from ``tools/coapload.py``);
- **check-ins/s**: ``wrk -t1`` on the HTTP check-in for ``--duration`` seconds (``tools/bench_http.py``'s load).

The figures are the medians of ``--rounds`` rounds, with the CPU time the fota-server processes and the
PostgreSQL server (its postmaster and backends) spent per operation over each load, and the machine's load
average: the load generators, the servers and PostgreSQL share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_http import CHECKIN_BODY, _lua, wrk  # noqa: E402
from bench_lwm2m import _registers, _round, _run  # noqa: E402
from benchserver import ACCOUNT, MAKE, MODEL, FIRMWARE_VERSION, ServerProcess, cli, device_id, proc_stats  # noqa: E402

from tests.pgcluster import Cluster  # noqa: E402
from tests.serverproc import create_account, session_headers  # noqa: E402

HTTP_DEVICE = "bench-http-1"
VARIANTS = ("sqlite-1", "pg-1", "pg-1-node", "pg-2")


# ----------------------------------------------------------------------------------------------- set-up

def _free_ports() -> list[str]:
    """``run`` arguments for HTTP, CoAP, CoAPS and the bootstrap ports, all free on 127.0.0.1 now."""
    held: list[socket.socket] = []
    args: list[str] = []
    try:
        for flag, kind in (("--http-port", socket.SOCK_STREAM), ("--coap-port", socket.SOCK_DGRAM),
                           ("--coaps-port", socket.SOCK_DGRAM), ("--bootstrap-port", socket.SOCK_DGRAM),
                           ("--bootstrap-coaps-port", socket.SOCK_DGRAM)):
            sock = socket.socket(socket.AF_INET, kind)
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            args += [flag, str(sock.getsockname()[1])]
    finally:
        for sock in held:
            sock.close()
    return args


def _provision(work: Path, db: Path | str, env: dict[str, str], devices: int) -> tuple[dict[str, Any], str]:
    """The account, the LwM2M fleet, the HTTP device, its token and an HTTP image; the account's credentials
    and the device's token."""
    os.environ.update(env)   # create_account passes the environment on (FOTA_DATA_DIR for PostgreSQL)
    try:
        creds = create_account(db, ACCOUNT, licenses=10)
    finally:
        for key in env:
            os.environ.pop(key, None)
    manifest = work / "manifest.json"
    manifest.write_text(json.dumps({"format": "fota-fleet-manifest/1", "account": ACCOUNT, "devices": [
        {"deviceId": device_id(i), "imei": device_id(i), "protocol": "LWM2M", "make": MAKE, "model": MODEL,
         "firmwareVersion": FIRMWARE_VERSION} for i in range(devices)]}))
    imported = json.loads(cli("device", "import", str(manifest), db=db, env=env).stdout)
    if imported["errors"] or imported["added"] != devices:
        raise SystemExit(f"device import failed: {imported['errors'][:3]}")
    image = work / "bench-http.bin"
    image.write_bytes(os.urandom(64 * 1024))
    cli("firmware", "add", str(image), "--name", "bench-http", "--make", MAKE, "--model", MODEL, "--from", "1.0.0",
        "--to", "2.0.0", "--protocol", "HTTP", db=db, env=env)
    cli("device", "add", HTTP_DEVICE, "--account", ACCOUNT, "--protocol", "HTTP", "--make", MAKE, "--model",
        MODEL, "--firmware", "1.0.0", "--license", db=db, env=env)
    token: str = json.loads(cli("device", "token", HTTP_DEVICE, "--account", ACCOUNT, db=db, env=env).stdout)["token"]
    return creds, token


def _offer_update(base: str, creds: dict[str, Any], token: str) -> None:
    """A v2 HTTP campaign for the HTTP device; returns once its check-in answers with the update."""
    import httpx

    dates = {"startDate": date.today().isoformat(), "endDate": (date.today() + timedelta(days=2)).isoformat()}
    answer = httpx.post(f"{base}/api/fota/v2/campaigns/{ACCOUNT}", headers=session_headers(base, creds), json={
        "softwareName": "bench-http", "softwareFrom": "1.0.0", "softwareTo": "2.0.0", "distributionType": "HTTP",
        "deviceList": [HTTP_DEVICE], **dates}, timeout=30)
    if answer.status_code != 200:
        raise SystemExit(f"the campaign was refused: {answer.status_code} {answer.text}")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    while not httpx.post(f"{base}/http/v1/devices/{HTTP_DEVICE}/checkin", content=CHECKIN_BODY, headers=headers,
                         timeout=30).json().get("update"):
        if time.monotonic() > deadline:
            raise SystemExit("the campaign's offer did not reach the device within 60 s")
        time.sleep(0.2)


@dataclass
class Variant:
    name: str
    servers: list[ServerProcess]
    coap_port: int
    checkin_url: str
    script: Path
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers if s.proc is not None]

    def stop(self) -> None:
        for server in self.servers:
            try:
                server.stop(timeout_s=120)
            except Exception:   # noqa: BLE001 - a benchmark's servers go, whatever state they are in
                server.kill()


def start_variant(work: Path, name: str, devices: int, cluster: Cluster | None) -> Variant:
    directory = work / name
    directory.mkdir()
    db: Path | str = directory / "fota.db"
    env: dict[str, str] = {}
    if cluster is not None:
        import psycopg

        database = name.replace("-", "_")
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {database}")
        db = cluster.url.replace("/postgres?", f"/{database}?")
        env = {"FOTA_DATA_DIR": str(directory / "data")}   # both processes: one data directory
    creds, token = _provision(directory, db, env, devices)
    processes = 2 if name.endswith("-2") else 1
    as_node = processes > 1 or name.endswith("-node")
    shared = [*_free_ports(), "--reuse-port"] if as_node else []
    servers: list[ServerProcess] = []
    try:
        for node in "ab"[:processes]:
            nodes = ["--node", node] if as_node else []
            servers.append(ServerProcess(db, extra_args=[*shared, *nodes], env=env).start(timeout_s=120))
        if any(s.ports != servers[0].ports for s in servers):
            raise SystemExit(f"{name}: the processes did not share their ports: {[s.ports for s in servers]}")
        base = servers[0].base_url
        _offer_update(base, creds, token)
    except BaseException:
        for server in servers:
            server.kill()
        raise
    script = _lua(directory / "checkin.lua", "POST", CHECKIN_BODY,
                  {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return Variant(name, servers, servers[0].ports["coap"], f"{base}/http/v1/devices/{HTTP_DEVICE}/checkin", script)


# ----------------------------------------------------------------------------------------------- measuring

def _cpu_s(pids: list[int]) -> float:
    return sum(proc_stats(pid).cpu_s for pid in pids)


def _postgres_cpu_s(cluster: Cluster | None) -> float:
    """CPU seconds of the PostgreSQL server so far: its postmaster (with its children that have exited) and
    the backends and workers that run now (/proc; proc(5))."""
    if cluster is None or not (cluster.data / "postmaster.pid").exists():
        return 0.0
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / ticks   # utime stime cutime cstime
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _measured(variant: Variant, cluster: Cluster | None, load: Callable[[], tuple[dict[str, Any], int]]
              ) -> dict[str, Any]:
    """Run ``load`` (figures and the operations it counted) with the servers' and PostgreSQL's CPU over it."""
    servers_before, pg_before = _cpu_s(variant.pids), _postgres_cpu_s(cluster)
    figures, operations = load()
    servers_cpu, pg_cpu = _cpu_s(variant.pids) - servers_before, _postgres_cpu_s(cluster) - pg_before
    per_op = max(operations, 1)
    return {**figures, "server_cpu_us_per_op": round(servers_cpu * 1e6 / per_op, 1),
            "postgres_cpu_us_per_op": round(pg_cpu * 1e6 / per_op, 1), "loadavg_1m": round(os.getloadavg()[0], 2)}


def measure_round(variant: Variant, cluster: Cluster | None, args: argparse.Namespace) -> dict[str, Any]:
    sockets = max(args.peers, 64)

    def registers() -> tuple[dict[str, Any], int]:
        load, elapsed, reads_until = _run(variant.coap_port, args.peers, args.seconds,
                                          _registers(args.devices, sockets), sockets)
        figures = _round(load, elapsed, reads_until)
        return figures, int(figures["ok"])

    def checkins() -> tuple[dict[str, Any], int]:
        result = wrk(variant.checkin_url, variant.script, args.connections, args.duration)
        return result, int(result["ok"])

    register = _measured(variant, cluster, registers)
    checkin = _measured(variant, cluster, checkins)
    print(f"{variant.name:9} registrations {register['per_s']:6}/s (other {register['other'] or '-'}, "
          f"{register['retransmits']} retransmits)  check-ins {checkin['rps']:7.0f}/s (non-200 {checkin['bad']}, "
          f"socket errors {checkin['socket_errors']})  load {checkin['loadavg_1m']}", file=sys.stderr, flush=True)
    return {"register": register, "checkin": checkin}


def _median(variant: Variant, kind: str, key: str) -> float:
    return float(statistics.median(float(run[kind][key]) for run in variant.runs))


def _ratio(top: Variant, bottom: Variant, kind: str, key: str) -> str:
    """The ratio of the medians, and the range of the rounds' side-by-side ratios."""
    paired = [float(a[kind][key]) / float(b[kind][key]) for a, b in zip(top.runs, bottom.runs) if b[kind][key]]
    if not paired:
        return "-"
    spread = f" ({min(paired):.2f}-{max(paired):.2f})" if len(paired) > 1 else ""
    return f"{_median(top, kind, key) / max(_median(bottom, kind, key), 1e-9):.2f}x{spread}"


def report(variants: dict[str, Variant], args: argparse.Namespace) -> str:
    lines = ["| variant | registrations/s | server CPU us per Register | PostgreSQL CPU us per Register "
             "| check-ins/s | server CPU us per check-in | PostgreSQL CPU us per check-in |",
             "|---|---|---|---|---|---|---|"]
    for name, v in variants.items():
        lines.append(f"| {name} | {_median(v, 'register', 'per_s'):,.0f} | "
                     f"{_median(v, 'register', 'server_cpu_us_per_op'):,.0f} | "
                     f"{_median(v, 'register', 'postgres_cpu_us_per_op'):,.0f} | {_median(v, 'checkin', 'rps'):,.0f} | "
                     f"{_median(v, 'checkin', 'server_cpu_us_per_op'):,.0f} | "
                     f"{_median(v, 'checkin', 'postgres_cpu_us_per_op'):,.0f} |")
    pg1, pg2, lite = variants["pg-1"], variants["pg-2"], variants["sqlite-1"]
    node = variants.get("pg-1-node")
    lines += ["", "| ratio | registrations/s | check-ins/s |", "|---|---|---|",
              f"| pg-2 / pg-1 | {_ratio(pg2, pg1, 'register', 'per_s')} | {_ratio(pg2, pg1, 'checkin', 'rps')} |",
              f"| pg-1 / sqlite-1 | {_ratio(pg1, lite, 'register', 'per_s')} | {_ratio(pg1, lite, 'checkin', 'rps')} |",
              f"| pg-2 / sqlite-1 | {_ratio(pg2, lite, 'register', 'per_s')} | {_ratio(pg2, lite, 'checkin', 'rps')} |"]
    if node is not None:
        lines.insert(-1, f"| pg-2 / pg-1-node | {_ratio(pg2, node, 'register', 'per_s')} | "
                         f"{_ratio(pg2, node, 'checkin', 'rps')} |")
    loads = [float(run["checkin"]["loadavg_1m"]) for v in variants.values() for run in v.runs]
    lines.append(f"\n{os.cpu_count()} cores; 1-minute load average after each load {min(loads):.1f}-{max(loads):.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of Registers per round (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per round (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each measuring every variant (default 3)")
    parser.add_argument("--peers", type=int, default=64, help="Registers in flight at once (default 64)")
    parser.add_argument("--devices", type=int, default=5000, help="LwM2M devices imported (default 5000)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    parser.add_argument("--variants", default="sqlite-1,pg-1,pg-2",
                        help=f"comma-separated, of {', '.join(VARIANTS)} (default sqlite-1,pg-1,pg-2)")
    args = parser.parse_args(argv)
    wanted = [name for name in VARIANTS if name in args.variants.split(",")]
    if not {"sqlite-1", "pg-1", "pg-2"} <= set(wanted):
        parser.error("--variants needs sqlite-1, pg-1 and pg-2")
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    variants: dict[str, Variant] = {}
    cluster: Cluster | None = None
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        work = Path(tmp)
        try:
            work.chmod(0o755)   # the cluster runs as the postgres user when this runs as root
            cluster = Cluster(work / "pg").start()
            for name in wanted:
                variants[name] = start_variant(work, name, args.devices, None if name.startswith("sqlite") else cluster)
            for variant in variants.values():   # warm-up: imports, caches, first connections
                wrk(variant.checkin_url, variant.script, 16, 1)
            for round_no in range(args.rounds):
                print(f"round {round_no + 1}", file=sys.stderr, flush=True)
                order = list(variants.values())
                order = order[round_no % len(order):] + order[:round_no % len(order)]   # each goes first in turn
                for variant in order:
                    variant.runs.append(measure_round(variant, cluster, args))
        finally:
            for variant in variants.values():
                variant.stop()
            if cluster is not None:
                cluster.stop()
    print(f"python tools/bench_scaleout.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"Registers: {args.peers} in flight for {args.seconds:g} s, reads on; check-ins: wrk -t1 -c{args.connections} "
          f"-d{args.duration}s; {args.rounds} rounds, medians (ratios: of the medians, and the range of the rounds' "
          f"side-by-side ratios)")
    print(report(variants, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
