"""A fleet spec (how many devices per protocol, and the distributions of make/model, firmware version,
serving cell, check-in interval or lifetime, and faults) and the device plans drawn from it.

Everything is drawn from one ``random.Random(seed)``: the same spec gives the same devices, ids,
credentials and faults. The credentials are therefore lab credentials, not secrets.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .faults import FaultParams, FleetFault, assign_faults

__all__ = ["FleetSpec", "DevicePlan", "plan_devices", "load_spec", "cell_text"]

Cell = tuple[int, int, int, int]


@dataclass(frozen=True)
class FleetSpec:
    lwm2m: int = 0
    http: int = 0
    omadm: int = 0
    # (make, model, weight); a model's devices run its firmware versions below
    models: tuple[tuple[str, str, float], ...] = (("FOTA Emulator", "EMU-1", 1.0),)
    versions: tuple[tuple[str, float], ...] = (("1.0.0", 1.0),)
    cells: int = 20
    mcc: int = 310
    mnc: int = 410
    checkin_s: tuple[float, float] = (60.0, 120.0)   # HTTP check-in and OMA-DM session interval, uniform
    lifetime_s: tuple[int, int] = (300, 600)         # LwM2M registration lifetime, uniform
    faults: Mapping[FleetFault, float] = field(default_factory=dict)
    fault_params: FaultParams = FaultParams()
    seed: int = 1
    imei_base: int = 350000000000000                 # device n gets IMEI-like id imei_base + n
    account: str = "fleet"
    start_rate_per_s: float = 1000.0                 # devices started per second (staggered start-up)
    lwm2m_queue_mode: bool = False

    @property
    def total(self) -> int:
        return self.lwm2m + self.http + self.omadm


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """One device as drawn: its id, protocol, identity, cell, timing, fault and credential secret."""

    device_id: str
    protocol: str
    make: str
    model: str
    version: str
    cell: Cell
    interval_s: float      # LwM2M: lifetime; HTTP and OMA-DM: check-in interval
    fault: FleetFault
    secret: str

    @property
    def endpoint(self) -> str:
        """The LwM2M endpoint name (the server derives the device id from the IMEI URN)."""
        return f"urn:imei:{self.device_id}"

    @property
    def user_name(self) -> str:
        """The OMA-DM user name (the secret is ``secret``; HTTP uses ``secret`` as its token)."""
        return f"dm-{self.device_id}"

    @property
    def dev_id(self) -> str:
        """The OMA-DM ./DevInfo/DevId."""
        return f"IMEI:{self.device_id}"


def cell_text(cell: Cell) -> str:
    """``MCC-MNC-LAC-CellID``, the form the server keeps as a device's serving cell."""
    return "-".join(str(v) for v in cell)


def _pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    values = [w[0] for w in weighted]
    return rng.choices(values, weights=[w[1] for w in weighted])[0]


def plan_devices(spec: FleetSpec) -> list[DevicePlan]:
    """The fleet's devices, LwM2M first, then HTTP, then OMA-DM; faults spread over each protocol."""
    rng = random.Random(spec.seed)
    plans: list[DevicePlan] = []
    n = 0
    for offset, (protocol, count) in enumerate((("LWM2M", spec.lwm2m), ("HTTP", spec.http),
                                                ("OMADM", spec.omadm))):
        faults = assign_faults(count, spec.faults, spec.seed * 31 + offset)
        for i in range(count):
            make, model, _ = rng.choices(spec.models, weights=[m[2] for m in spec.models])[0]
            version = _pick(rng, spec.versions)
            c = rng.randrange(max(1, spec.cells))
            cell = (spec.mcc, spec.mnc, 100 + c // 10, 1000 + c)
            if protocol == "LWM2M":
                interval = float(rng.randint(*spec.lifetime_s))
            else:
                interval = round(rng.uniform(*spec.checkin_s), 1)
            secret = f"{rng.getrandbits(128):032x}"
            plans.append(DevicePlan(str(spec.imei_base + n), protocol, make, model, version, cell, interval,
                                    faults[i], secret))
            n += 1
    return plans


def _tuple_of_lists(value: Any) -> Any:
    return tuple(tuple(v) if isinstance(v, list) else v for v in value)


def load_spec(source: Path | Mapping[str, Any], **overrides: Any) -> FleetSpec:
    """A spec from a JSON file or mapping; keys are the field names (``faults`` maps fault names to rates,
    ``fault_params`` the FaultParams fields); ``overrides`` that are not None win."""
    data = dict(json.loads(source.read_text()) if isinstance(source, Path) else source)
    known = {f.name for f in fields(FleetSpec)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown fleet spec keys: {', '.join(sorted(unknown))}")
    if "faults" in data:
        data["faults"] = {FleetFault(k): float(v) for k, v in data["faults"].items()}
    if "fault_params" in data:
        data["fault_params"] = FaultParams(**data["fault_params"])
    for key in ("models", "versions"):
        if key in data:
            data[key] = _tuple_of_lists(data[key])
    for key in ("checkin_s", "lifetime_s"):
        if key in data:
            data[key] = tuple(data[key])
    spec = FleetSpec(**data)
    return replace(spec, **{k: v for k, v in overrides.items() if v is not None})
