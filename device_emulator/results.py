"""What a fleet run leaves behind: one record per device and the fleet's totals, as JSON.

Each device record carries what the device itself counted: ``downloads`` started, ``flashes`` (installs
that wrote an image and rebooted) and ``versions`` (the firmware it ran, in order). A device flashed more
than once for one campaign is the thing the server must never cause; ``doubled()`` lists them and the
totals say how many (``flashedTwiceOrMore``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DeviceResult", "FleetResult", "flash_bucket", "FLASH_BUCKETS"]

FLASH_BUCKETS = ("once", "never", "twiceOrMore")


def flash_bucket(flashes: int) -> str:
    return "never" if flashes <= 0 else "once" if flashes == 1 else "twiceOrMore"


@dataclass(frozen=True, slots=True)
class DeviceResult:
    device_id: str
    protocol: str
    cell: str
    make: str
    model: str
    fault: str
    start_version: str
    final_version: str
    final_state: str           # updated, failed, idle, downloading, updating, starting, offline
    result_code: int | None    # the last failure code the device reported (LwM2M /5/0/5, HTTP report, FUMO 1226)
    codes: tuple[int, ...] = ()
    result_name: str = ""      # that code's name in its protocol, e.g. INTEGRITY_FAILURE, CORRUPT_PACKAGE
    downloads: int = 0         # downloads the device started
    flashes: int = 0           # installs that wrote an image and rebooted
    versions: tuple[str, ...] = ()  # firmware versions it ran, in order, from the one it started with

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["codes"] = list(self.codes)
        out["versions"] = list(self.versions)
        return out


@dataclass
class FleetResult:
    devices: list[DeviceResult]
    startup_s: float = 0.0     # until every device was started
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def by_id(self) -> dict[str, DeviceResult]:
        return {d.device_id: d for d in self.devices}

    def counts(self) -> Counter[tuple[str, str]]:
        """(protocol, final state) -> devices."""
        return Counter((d.protocol, d.final_state) for d in self.devices)

    def doubled(self) -> list[DeviceResult]:
        """The devices that flashed an image more than once."""
        return [d for d in self.devices if d.flashes > 1]

    def flash_counts(self) -> Counter[tuple[str, str]]:
        """(protocol, never | once | twiceOrMore) -> devices."""
        return Counter((d.protocol, flash_bucket(d.flashes)) for d in self.devices)

    def as_json(self) -> dict[str, Any]:
        return {"startupSeconds": round(self.startup_s, 3), "elapsedSeconds": round(self.elapsed_s, 3),
                "counts": {f"{p}/{s}": n for (p, s), n in sorted(self.counts().items())},
                "flashes": {f"{p}/{b}": n for (p, b), n in sorted(self.flash_counts().items())},
                "flashedTwiceOrMore": len(self.doubled()), **self.extra,
                "devices": [d.as_json() for d in self.devices]}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=1) + "\n")
