"""``fota-server device import FILE``: many devices and their credentials at once, from a device manifest.

The manifest (format ``fota-fleet-manifest/1``, written by ``device-emulator fleet`` or by hand)::

    {"format": "fota-fleet-manifest/1", "account": "0000123456-00001",
     "devices": [{"deviceId", "protocol", "imei"?, "mdn"?, "make", "model", "firmwareVersion", "servingCell"?,
                  "license"?: true,
                  "credentials"?: {"pskIdentity", "pskKey"} | {"httpToken"} | {"omadmUser", "omadmSecret"}}]}

Each device is added on its own: a bad entry is reported by index and reason and the others go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .devices import DeviceRegistry, NewDevice, check_http_token, check_omadm, psk_key
from .errors import DomainError, InvalidRequest
from .store.ports import LicenseStore
from .clock import Clock

__all__ = ["MANIFEST_FORMAT", "MAX_MANIFEST_BYTES", "MAX_MANIFEST_DEVICES", "ImportResult", "import_manifest"]

MANIFEST_FORMAT = "fota-fleet-manifest/1"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_DEVICES = 200_000


@dataclass
class ImportResult:
    account: str
    added: int = 0
    licensed: int = 0
    errors: list[str] = field(default_factory=list)


def _text(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise InvalidRequest(f"{key!r} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON's "\ud800" decodes to a lone surrogate that no store can write
        raise InvalidRequest(f"{key!r} holds a lone surrogate") from None
    return value


def _check_credentials(creds: Any) -> None:
    """Refuse a malformed credential before the device is added (an identity taken by another device
    is found only when stored: the device is then added without it, and the error says so)."""
    if not creds:
        return
    if not isinstance(creds, dict):
        raise InvalidRequest("'credentials' must be an object")
    if "pskIdentity" in creds:
        psk_key(_text(creds, "pskIdentity"), _text(creds, "pskKey"))
    if "httpToken" in creds:
        check_http_token(_text(creds, "httpToken"))
    if "omadmUser" in creds:
        check_omadm(_text(creds, "omadmUser"), _text(creds, "omadmSecret"))


def _credentials(registry: DeviceRegistry, account: str, device_id: str, creds: Any) -> None:
    if not creds:
        return
    if "pskIdentity" in creds:
        registry.set_psk(account, device_id, _text(creds, "pskIdentity"), _text(creds, "pskKey"))
    if "httpToken" in creds:
        registry.set_http_token(account, device_id, _text(creds, "httpToken"))
    if "omadmUser" in creds:
        registry.set_omadm_secret(account, device_id, _text(creds, "omadmUser"), _text(creds, "omadmSecret"))


def _devices(raw: bytes) -> tuple[str, list[Any]]:
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidRequest(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the manifest is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("the manifest is nested too deeply") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise InvalidRequest(f"the manifest must be an object with \"format\": \"{MANIFEST_FORMAT}\"")
    devices = data.get("devices")
    if not isinstance(devices, list) or len(devices) > MAX_MANIFEST_DEVICES:
        raise InvalidRequest(f"'devices' must be a list of at most {MAX_MANIFEST_DEVICES} devices")
    return _text(data, "account"), devices


def import_manifest(raw: bytes, registry: DeviceRegistry, licenses: LicenseStore, clock: Clock,
                    account: str | None = None) -> ImportResult:
    named, devices = _devices(raw)
    result = ImportResult(account or named)
    to_license: list[str] = []
    for index, entry in enumerate(devices):
        try:
            if not isinstance(entry, dict):
                raise InvalidRequest("each device must be an object")
            _check_credentials(entry.get("credentials"))
            device = registry.add(result.account, NewDevice(
                device_id=_text(entry, "deviceId"), protocol=_text(entry, "protocol"), imei=_text(entry, "imei"),
                mdn=_text(entry, "mdn"), make=_text(entry, "make"), model=_text(entry, "model"),
                firmware_version=_text(entry, "firmwareVersion"), serving_cell=_text(entry, "servingCell")))
            _credentials(registry, result.account, device.device_id, entry.get("credentials"))
        except DomainError as exc:
            result.errors.append(f"device {index}: {exc.message}")
            continue
        result.added += 1
        if entry.get("license", False) is True:
            to_license.append(device.device_id)
    result.licensed = len(licenses.assign(result.account, to_license, clock.now()))
    return result
