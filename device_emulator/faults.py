"""Fleet faults: what can go wrong with an emulated device, how many devices of a fleet get each fault
(deterministic for a seed), and which per-protocol hook of the client machines each one turns on.

A fault is one of a small vocabulary shared by the three protocols. ``FaultHooks`` says how a protocol
shows it: the LwM2M ``Fault`` set of Object 5, the HTTP machine's ``HttpFaults``, the OMA-DM ``Fault``
(its Generic Alert 1226 result), or link-level impairments (loss, added latency, time offline) that the
fleet applies on the device's real socket. ``expected_result`` is what the device itself reports.
"""

from __future__ import annotations

import enum
import functools
import random
from dataclasses import dataclass
from typing import Mapping

from device_emulator.lwm2m.faults import Fault as Lwm2mFault
from device_emulator.omadm.device import Fault as OmadmFault

__all__ = ["FleetFault", "FaultParams", "FaultHooks", "assign_faults", "hooks_for", "expected_result",
           "PROTOCOLS"]

PROTOCOLS = ("LWM2M", "HTTP", "OMADM")


class FleetFault(enum.Enum):
    NONE = "none"
    PACKET_LOSS = "packet-loss"            # a share of datagrams (LwM2M) or requests (HTTP, OMA-DM) is lost
    LATENCY = "latency"                    # every datagram or request waits longer
    CONNECTION_CUT = "connection-cut"      # the download is cut part way
    INTEGRITY_FAILURE = "integrity-failure"
    NOT_ENOUGH_FLASH = "not-enough-flash"
    UPDATE_FAILURE = "update-failure"      # the install fails
    REBOOT_LOOP = "reboot-loop"            # reboots, comes back on the old image
    OFFLINE = "offline"                    # the device is gone for a while once its update starts


@dataclass(frozen=True)
class FaultParams:
    loss_rate: float = 0.2          # PACKET_LOSS: share lost, each direction
    latency_s: float = 0.3          # LATENCY: added one-way delay
    offline_s: float = 20.0         # OFFLINE: how long the device is away
    cut_after_bytes: int = 2048     # CONNECTION_CUT: bytes received before the cut
    flash_bytes: int = 1024         # NOT_ENOUGH_FLASH: the free flash (smaller than any image)


@dataclass(frozen=True)
class FaultHooks:
    """What one device of one protocol turns on for its fault (empty for NONE)."""

    lwm2m: frozenset[Lwm2mFault] = frozenset()
    omadm: OmadmFault = OmadmFault.NONE
    http_cut_after: int = 0
    http_cuts: int = 0
    http_corrupt: bool = False
    http_fail_install: bool = False
    reboot_into_old: bool = False
    flash_bytes: int | None = None
    loss_rate: float = 0.0
    latency_s: float = 0.0
    offline_s: float = 0.0


@functools.lru_cache(maxsize=256)
def hooks_for(fault: FleetFault, protocol: str, params: FaultParams = FaultParams()) -> FaultHooks:
    """The per-protocol hooks of ``fault`` (a ValueError for an unknown protocol); one shared object per
    fault, protocol and parameters, so that a fleet's devices do not each hold a copy."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    lw = protocol == "LWM2M"
    table: dict[FleetFault, FaultHooks] = {
        FleetFault.NONE: FaultHooks(),
        FleetFault.PACKET_LOSS: FaultHooks(loss_rate=params.loss_rate),
        FleetFault.LATENCY: FaultHooks(latency_s=params.latency_s),
        FleetFault.CONNECTION_CUT: FaultHooks(
            lwm2m=frozenset({Lwm2mFault.CONNECTION_LOST}), omadm=OmadmFault.NETWORK_FAILURE,
            http_cut_after=params.cut_after_bytes, http_cuts=1),
        FleetFault.INTEGRITY_FAILURE: FaultHooks(
            lwm2m=frozenset({Lwm2mFault.INTEGRITY_FAILURE}), omadm=OmadmFault.CORRUPT_PACKAGE, http_corrupt=True),
        FleetFault.NOT_ENOUGH_FLASH: FaultHooks(
            lwm2m=frozenset({Lwm2mFault.NOT_ENOUGH_FLASH}), omadm=OmadmFault.DOWNLOAD_OUT_OF_MEMORY,
            flash_bytes=None if lw else params.flash_bytes),
        FleetFault.UPDATE_FAILURE: FaultHooks(
            lwm2m=frozenset({Lwm2mFault.UPDATE_FAILED}), omadm=OmadmFault.UPDATE_FAILED, http_fail_install=True),
        FleetFault.REBOOT_LOOP: FaultHooks(reboot_into_old=True),
        FleetFault.OFFLINE: FaultHooks(offline_s=params.offline_s),
    }
    return table[fault]


# What the device reports for its fault: LwM2M /5/0/5 Update Result, the HTTP status report's result code
# (manifest.ResultCode), the OMA-DM 1226 result code. None: the update succeeds from the device's view
# (a link impairment the protocol rides out, or a reboot into the old image reported as done).
_EXPECTED: dict[FleetFault, dict[str, int | None]] = {
    FleetFault.NONE: {"LWM2M": None, "HTTP": None, "OMADM": None},
    FleetFault.PACKET_LOSS: {"LWM2M": None, "HTTP": None, "OMADM": None},
    FleetFault.LATENCY: {"LWM2M": None, "HTTP": None, "OMADM": None},
    FleetFault.CONNECTION_CUT: {"LWM2M": 4, "HTTP": None, "OMADM": 503},
    FleetFault.INTEGRITY_FAILURE: {"LWM2M": 5, "HTTP": 5, "OMADM": 402},
    FleetFault.NOT_ENOUGH_FLASH: {"LWM2M": 2, "HTTP": 2, "OMADM": 501},
    FleetFault.UPDATE_FAILURE: {"LWM2M": 8, "HTTP": 8, "OMADM": 410},
    FleetFault.REBOOT_LOOP: {"LWM2M": None, "HTTP": None, "OMADM": None},
    FleetFault.OFFLINE: {"LWM2M": None, "HTTP": None, "OMADM": None},
}


def expected_result(fault: FleetFault, protocol: str) -> int | None:
    """The failure code the device itself reports for ``fault``, or None when it reports no failure."""
    return _EXPECTED[fault][protocol]


def assign_faults(count: int, rates: Mapping[FleetFault, float], seed: int) -> list[FleetFault]:
    """Exactly ``round(rate * count)`` devices per fault (largest remainders), shuffled by ``seed``.

    The same count, rates and seed always give the same list; the rates must add up to at most 1.
    """
    if any(r < 0 for r in rates.values()) or sum(rates.values()) > 1.0 + 1e-9:
        raise ValueError("fault rates must be non-negative and add up to at most 1")
    faults: list[FleetFault] = [f for f in FleetFault if f is not FleetFault.NONE and rates.get(f, 0.0) > 0]
    exact = {f: rates[f] * count for f in faults}
    counts = {f: int(exact[f]) for f in faults}
    budget = min(count, round(sum(exact.values()))) - sum(counts.values())
    for f in sorted(faults, key=lambda f: (exact[f] - counts[f], -faults.index(f)), reverse=True)[:max(0, budget)]:
        counts[f] += 1
    out: list[FleetFault] = [f for f in faults for _ in range(counts[f])]
    out += [FleetFault.NONE] * (count - len(out))
    random.Random(seed).shuffle(out)
    return out
