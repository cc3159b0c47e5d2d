"""Scheduling rules: request validation, per-device eligibility and the pilot rule (DESIGN.md "Pilot").

Eligibility at scheduling: the device exists in the account, speaks the campaign's protocol, has its
make and model, runs ``firmwareFrom``, is in no other active campaign, and has a license (or gets one
when the campaign asks for auto-assignment). A device that fails gets a reason; the request does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..records import PACKAGE_KINDS, PROTOCOLS, Device
from .errors import InvalidCampaign, PilotRequired, TooManyDevices
from .model import API_VERSIONS, MAX_DEVICES_PER_REQUEST, MAX_NAME_LEN, CampaignSpec, TimeWindow
from .policy import parse_windows
from .reasons import EngineReason as R

__all__ = ["normalise_protocol", "normalise_windows", "validate_spec", "device_problem", "PilotRule", "MAX_DEVICE_ID_LEN"]

MAX_DEVICE_ID_LEN = 64
_PROTOCOL_ALIASES = {"LWM2M": "LWM2M", "HTTP": "HTTP", "OMADM": "OMADM", "OMA": "OMADM", "OMD-DM": "OMADM",
                     "OMDADM": "OMADM", "OMA-DM": "OMADM"}


def normalise_protocol(raw: str) -> str:
    """The spec's many spellings of OMA-DM (OMA, OMD-DM, OMDADM, OMADM; API reference §10.9) as one."""
    protocol = _PROTOCOL_ALIASES.get(raw.strip().upper())
    if protocol is None or protocol not in PROTOCOLS:
        raise InvalidCampaign(f"protocol {raw!r} is not one of LWM2M, HTTP, OMA-DM")
    return protocol


def normalise_windows(windows: Sequence[TimeWindow]) -> tuple[TimeWindow, ...]:
    """Checked (InvalidWindow), sorted and without duplicates, as ``policy.next_open`` expects."""
    return parse_windows([(w.start_hour, w.end_hour) for w in windows])


def validate_spec(spec: CampaignSpec) -> None:
    if spec.api_version not in API_VERSIONS:
        raise InvalidCampaign(f"api version {spec.api_version!r} is not one of {', '.join(API_VERSIONS)}")
    if spec.kind not in PACKAGE_KINDS:
        raise InvalidCampaign(f"kind {spec.kind!r} is not one of {', '.join(PACKAGE_KINDS)}")
    for label, value in (("campaignName", spec.name), ("firmwareName", spec.package_name), ("make", spec.make),
                         ("model", spec.model),
                         ("firmwareFrom", spec.firmware_from), ("firmwareTo", spec.firmware_to)):
        if len(value) > MAX_NAME_LEN:
            raise InvalidCampaign(f"{label} is longer than {MAX_NAME_LEN} characters")
    if not spec.device_ids:
        raise InvalidCampaign("deviceList is empty")
    if len(spec.device_ids) > MAX_DEVICES_PER_REQUEST:
        raise TooManyDevices(f"deviceList has more than {MAX_DEVICES_PER_REQUEST} devices")
    for device_id in spec.device_ids:
        if not device_id or len(device_id) > MAX_DEVICE_ID_LEN:
            raise InvalidCampaign(f"device id {device_id[:MAX_DEVICE_ID_LEN]!r} is empty or too long")
    if spec.windows and (spec.download_windows or spec.install_windows):
        raise InvalidCampaign("give either campaign time windows (v3) or download/install windows (v2)")
    if spec.error_threshold is not None:
        if not 0 < spec.error_threshold.percent <= 100 or spec.error_threshold.min_attempts < 1:
            raise InvalidCampaign("error threshold needs a percent in (0, 100] and a minimum count of at least 1")


def device_version(device: Device, kind: str) -> str | None:
    if kind == "firmware":
        return device.firmware_version
    if kind == "software":
        return device.software_version
    return None


def device_problem(device: Device | None, spec: CampaignSpec) -> str | None:
    """Why this device cannot join the campaign (license and other campaigns aside), or None."""
    if device is None:
        return R.UNKNOWN_DEVICE
    if device.protocol.upper() != spec.protocol:
        return R.WRONG_PROTOCOL
    if spec.make and (device.make.lower(), device.model.lower()) != (spec.make.lower(), spec.model.lower()):
        return R.WRONG_MAKE_MODEL
    version = device_version(device, spec.kind)
    if version is not None and spec.firmware_from and version != spec.firmware_from:
        return R.WRONG_VERSION
    return None


@dataclass(frozen=True)
class PilotRule:
    """Campaigns for one account, make, model and from->to are pilots capped at ``cap`` devices until
    ``min_devices`` pilot devices have updated with a success rate of at least ``min_success``."""

    cap: int
    min_devices: int
    min_success: float

    def met(self, succeeded: int, failed: int) -> bool:
        tried = succeeded + failed
        return succeeded >= self.min_devices and tried > 0 and succeeded / tried >= self.min_success

    def check(self, spec: CampaignSpec, devices: int, succeeded: int, failed: int) -> bool:
        """True if the campaign is a pilot; raises PilotRequired if it is over the pilot cap."""
        if self.met(succeeded, failed):
            return False
        if devices > self.cap:
            raise PilotRequired(
                f"a pilot campaign is needed first for {spec.make} {spec.model} {spec.firmware_from} -> "
                f"{spec.firmware_to}: at most {self.cap} devices until {self.min_devices} pilot devices have "
                f"updated with at least {self.min_success:.0%} success (so far {succeeded} updated, "
                f"{failed} failed)")
        return True
