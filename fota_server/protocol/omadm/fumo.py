"""FUMO: the Firmware Update Management Object (OMA-TS-DM-FUMO-V1_0 §5-6; reference §10).

Node names under a device-defined root (``./FUMO``, ``./FwUpdate/<x>``, ...), the State values, the
Generic Alert types and the result codes of a Generic Alert 1226 with the reason strings reports show.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "FumoState", "FumoTree", "ALERT_TYPE_PREFIX", "ALERT_TYPES", "RESULT_REASONS", "result_reason",
    "is_success", "TERMINAL_STATES", "FUMO_URN", "PriorExec", "BUSY_STATES", "exec_needed",
]

FUMO_URN = "urn:oma:mo:oma-fumo:1.0"
ALERT_TYPE_PREFIX = "org.openmobilealliance.dm.firmwareupdate."
ALERT_TYPES = {
    "Download": ALERT_TYPE_PREFIX + "download",
    "Update": ALERT_TYPE_PREFIX + "update",
    "DownloadAndUpdate": ALERT_TYPE_PREFIX + "downloadandupdate",
    "DeviceRequest": ALERT_TYPE_PREFIX + "devicerequest",
    "UserRequest": ALERT_TYPE_PREFIX + "userrequest",
}


class FumoState(enum.IntEnum):
    """``x/State`` values (FUMO §5.3.1.10). Vendors add others; keep unknown values as plain ints."""

    IDLE = 10
    DOWNLOAD_FAILED = 20
    DOWNLOAD_PROGRESSING = 30
    DOWNLOAD_COMPLETE = 40
    READY_TO_UPDATE = 50
    UPDATE_PROGRESSING = 60
    UPDATE_FAILED_HAVE_DATA = 70
    UPDATE_FAILED_NO_DATA = 80
    UPDATE_SUCCESSFUL_HAVE_DATA = 90
    UPDATE_SUCCESSFUL_NO_DATA = 100


TERMINAL_STATES = frozenset({20, 70, 80, 90, 100})
# A FUMO operation is under way (download or update); a new Exec would start a second one.
BUSY_STATES = frozenset({30, 40, 50, 60})


class PriorExec(enum.Enum):
    """What the server knows of an earlier Exec of the same job: none was sent, one may have reached the
    device (its session was cut before the Exec's status came back), or the device accepted one (202)."""

    NONE = "none"
    MAYBE = "maybe"
    ACCEPTED = "accepted"


def exec_needed(prior: PriorExec, target_version: str, firmware_version: str | None, state: int | None) -> bool:
    """Whether a job's Exec may be sent, from the device's ``./DevDetail/FwV`` and ``x/State`` read first.

    Never to a device already on the target version, never while a FUMO operation is under way (§5.3.1.10:
    30-60), never again after an accepted Exec, and after an Exec that may have arrived only if the device is
    idle (10 or no State node): a finished operation (20, 70-100) is its answer, reported by a 1226 or read.
    """
    if target_version and firmware_version == target_version:
        return False
    if state in BUSY_STATES or prior is PriorExec.ACCEPTED:
        return False
    return not (prior is PriorExec.MAYBE and state in TERMINAL_STATES)


@dataclass(frozen=True)
class FumoTree:
    """Paths of one FUMO instance under ``root`` (for example ``./FUMO`` or ``./FwUpdate/1``)."""

    root: str = "./FUMO"

    @property
    def pkg_name(self) -> str:
        return f"{self.root}/PkgName"

    @property
    def pkg_version(self) -> str:
        return f"{self.root}/PkgVersion"

    @property
    def download_and_update(self) -> str:
        return f"{self.root}/DownloadAndUpdate"

    @property
    def pkg_url(self) -> str:
        return f"{self.root}/DownloadAndUpdate/PkgURL"

    @property
    def state(self) -> str:
        return f"{self.root}/State"


RESULT_REASONS: dict[int, str] = {
    200: "FUMO 200: update successful",
    400: "FUMO 400: management client error",
    401: "FUMO 401: user cancelled",
    402: "FUMO 402: corrupted firmware update package",
    403: "FUMO 403: firmware update package and device mismatch",
    404: "FUMO 404: failed firmware update package validation",
    405: "FUMO 405: firmware update package not acceptable",
    406: "FUMO 406: alternate download authentication failure",
    407: "FUMO 407: alternate download request time-out",
    408: "FUMO 408: not implemented",
    409: "FUMO 409: undefined error",
    410: "FUMO 410: firmware update failed",
    411: "FUMO 411: malformed or bad URL",
    412: "FUMO 412: alternate download server unavailable",
    500: "FUMO 500: alternate download server error",
    501: "FUMO 501: download failed, device out of memory",
    502: "FUMO 502: update failed, device out of memory",
    503: "FUMO 503: download failed due to network issues",
}


def is_success(code: int) -> bool:
    """200 and the vendor-specified successes 250-299."""
    return code == 200 or 250 <= code <= 299


def result_reason(code: int) -> str:
    """The documented reason string of a FUMO result code, including the vendor-specified ranges."""
    if code in RESULT_REASONS:
        return RESULT_REASONS[code]
    if 250 <= code <= 299:
        return f"FUMO {code}: update successful (vendor-specified)"
    if 450 <= code <= 499:
        return f"FUMO {code}: client error (vendor-specified)"
    if 550 <= code <= 599:
        return f"FUMO {code}: alternate download server error (vendor-specified)"
    return f"FUMO {code}: unknown result code"
