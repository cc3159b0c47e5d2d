"""``fota-server run`` for the benchmarks, set up as a user would: a fresh database and data directory, an
account, the LwM2M devices imported with ``fota-server device import`` (so that their Registers are
admitted), and the server process's memory and CPU read from /proc.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.serverproc import ServerProcess, cli  # noqa: E402

__all__ = ["ACCOUNT", "MAKE", "MODEL", "FIRMWARE_VERSION", "ServerProcess", "ProcStats", "cli", "device_id", "endpoint",
           "provision", "proc_stats", "udp_receive_errors"]

ACCOUNT = "0000123456-00001"
MAKE, MODEL, FIRMWARE_VERSION = "BenchMake", "BenchModel", "1.0.0"
_FIRST_IMEI = 350000000000000


def device_id(index: int) -> str:
    """The device id (an IMEI) of bench device ``index``."""
    return str(_FIRST_IMEI + index)


def endpoint(index: int) -> str:
    """The LwM2M endpoint name bench device ``index`` registers with (urn:imei: of its device id)."""
    return f"urn:imei:{_FIRST_IMEI + index}"


def provision(db: Path, devices: int) -> None:
    """A fresh ``db`` (and its data directory beside it) with the bench account and ``devices`` LwM2M devices
    imported from a fleet manifest."""
    cli("account", "create", ACCOUNT, "--licenses", "10", "--json", db=db)
    if devices <= 0:
        return
    manifest = db.parent / f"{db.stem}-manifest.json"
    entries = [{"deviceId": device_id(i), "imei": device_id(i), "protocol": "LWM2M", "make": MAKE, "model": MODEL,
                "firmwareVersion": FIRMWARE_VERSION} for i in range(devices)]
    manifest.write_text(json.dumps({"format": "fota-fleet-manifest/1", "account": ACCOUNT, "devices": entries}))
    imported = json.loads(cli("device", "import", str(manifest), db=db).stdout)
    if imported["errors"] or imported["added"] != devices:
        raise SystemExit(f"device import failed: {imported['errors'][:3]}")
    manifest.unlink()


@dataclass(frozen=True)
class ProcStats:
    rss_kib: int        # VmRSS
    peak_rss_kib: int   # VmHWM: the high-water mark since the process started
    cpu_s: float        # user + system time

    def cpu_since(self, before: "ProcStats") -> float:
        return self.cpu_s - before.cpu_s


def proc_stats(pid: int) -> ProcStats:
    """Resident memory and CPU time of process ``pid`` (Linux /proc; proc(5))."""
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        status[name] = value.split()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime and stime, fields 14 and 15 of stat
    return ProcStats(int(status["VmRSS"][0]), int(status["VmHWM"][0]), cpu)


def udp_receive_errors() -> int:
    """UDP datagrams the kernel dropped for a full receive buffer, machine-wide (/proc/net/snmp
    RcvbufErrors): the server's socket or the generator's."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])
