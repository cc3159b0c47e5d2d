"""Result reasons: every protocol result code and every engine decision as a documented reason string.

- LwM2M Object 5 Update Result ``/5/0/5`` values 2..11 (OMA-TS-LightweightM2M, Firmware Update object);
- OMA-DM FUMO result codes in the Generic Alert 1226 (OMA-ERELD-FUMO, 400..412, 500..503, vendor ranges);
- HTTP status reports (hawkBit DDI feedback: ``closed``+``failure``, ``rejected``, ``canceled``) and our
  HTTP FOTA endpoint's ``download-failed``/``hash-mismatch``/``install-failed``.

``lookup(protocol, code)`` gives ``(reason, retryable)``. A retryable failure is retried with backoff
while the campaign's dates allow; a permanent one ends the device as failed at once.
"""

from __future__ import annotations

from ..protocol.lwm2m import objects as lwm2m_objects
from ..protocol.omadm import fumo

__all__ = ["lookup", "EngineReason", "LWM2M_REASONS", "FUMO_REASONS", "HTTP_REASONS"]


class EngineReason:
    SCHEDULED = "Device scheduled for update"
    ADDED = "Device added Successfully"
    QUEUED_CELL = "Waiting for a free update slot in the device's cell"
    QUEUED_GLOBAL = "Waiting for a free update slot in the account"
    PAUSED = "Campaign paused by its error threshold"
    PAUSED_BY_OPERATOR = "Campaign paused by the operator"
    WINDOW_CLOSED = "Waiting for the campaign time window to open"
    ATTEMPT_STARTED = "Update requested from the device"
    DOWNLOADING = "Device is downloading the package"
    DOWNLOADED = "Package downloaded; waiting for the install window"
    INSTALLING = "Device is installing the package"
    SUCCESS = "Upgrade completed successfully"
    NOT_REACHABLE = "The network reports the device is not reachable"
    NOT_REACHABLE_FINAL = "The network reports the device is not reachable; daily retries exhausted"
    TIMEOUT = "The device started the update and then stopped responding"
    END_DATE = "The campaign end date passed before the device could be updated"
    WRONG_VERSION = "Device firmware does not match firmwareFrom"
    WRONG_VERSION_AFTER = "Device reported a version other than firmwareTo after the update"
    LICENSE_MISSING = "No license assigned to the device"
    LICENSE_UNAVAILABLE = "No license available to auto-assign to the device"
    UNKNOWN_DEVICE = "Device does not exist in the account"
    WRONG_MAKE_MODEL = "Device make or model does not match the campaign"
    WRONG_PROTOCOL = "Device protocol does not match the campaign"
    BUSY = "Device is already in another active campaign"
    DUPLICATE = "Device is already in this campaign"
    CANCELLED = "Campaign cancelled"
    ABORTED = "Campaign aborted"
    REMOVED = "Device removed from the campaign"
    REMOVE_BUSY = "Device is updating; it can be removed when the attempt ends"
    NOT_IN_CAMPAIGN = "Device is not in this campaign"
    DEVICE_CANCELLED = "The device reports the update was cancelled"


# The reason strings are the protocol tables' (one place each); the engine adds whether a retry may help.
_LWM2M_RETRYABLE = {3, 4, 5, 8, 11}
LWM2M_REASONS: dict[int, tuple[str, bool]] = {
    code: (lwm2m_objects.result_reason(code), code in _LWM2M_RETRYABLE) for code in range(2, 12)
}
# Update Result still 0 when the attempt timed out: the device went quiet after it started.
LWM2M_REASONS[0] = (EngineReason.TIMEOUT, True)

_FUMO_FINAL = {401, 403, 404, 405, 408, 411}
FUMO_REASONS: dict[int, tuple[str, bool]] = {
    code: (reason, code not in _FUMO_FINAL) for code, reason in fumo.RESULT_REASONS.items() if code != 200
}

HTTP_REASONS: dict[str, tuple[str, bool]] = {
    "failure": ("The device reported the update failed", True),
    "rejected": ("The device rejected the update", False),
    "canceled": ("The device cancelled the update", False),
    "download-failed": ("The device could not download the package", True),
    "hash-mismatch": ("The downloaded package failed its hash check", True),
    "install-failed": ("The device could not install the package", True),
    # the HTTP endpoint's result codes that have no generic name (docs/http-fota.md, "Result codes")
    "httpnotenoughstorage": ("Not enough storage on the device for the package", False),
    "httpoutofmemory": ("The device ran out of memory during the download", True),
    "httpunsupportedpackage": ("The device does not support this package type", False),
    "httpsignatureinvalid": ("The package signature did not verify on the device", False),
    "httpwrongstartingversion": ("The device is not on the campaign's starting version", False),
    "httprebootfailed": ("The device could not boot the new firmware and went back to the old one", True),
    "httpfailureunspecified": ("The device reported a failure without a result code", True),
}


def _numeric(protocol: str, code: int) -> tuple[str, bool]:
    if protocol == "LWM2M":
        return LWM2M_REASONS.get(code, (lwm2m_objects.result_reason(code), True))
    if code in FUMO_REASONS:
        return FUMO_REASONS[code]
    return (fumo.result_reason(code), True)


def lookup(protocol: str, code: str) -> tuple[str, bool]:
    """The reason and retryability of a protocol failure code (always some reason; never raises)."""
    code = code.strip()[:64]
    if protocol == "HTTP":
        return HTTP_REASONS.get(code.lower(), (f"HTTP status report {code!r}", True))
    try:
        value = int(code)
    except ValueError:
        return (f"{protocol} result {code!r}", True)
    return _numeric(protocol, value)
