"""Request decoding and response shaping shared by the license, device, package and firmware-sync endpoints.

Protocol vocabularies (api reference §6, §10.9): the store keeps ``LWM2M``, ``OMADM`` and ``HTTP``
(``records.PROTOCOLS``); the API spells OMA-DM as ``OMD-DM`` (FirmwareProtocol, CampaignMetaInfoProtocol,
v2 ``distributionType``), ``OMDADM`` (DevicesProtocol), ``OMADM`` (v3 device ``protocol``) and ``OMA``
(campaign docs). Every spelling is accepted on input; each field answers in its own published spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from starlette.requests import Request

from ..errors import InvalidRequest
from ..records import Device, License
from ..store.ports import DeviceStore, LicenseStore

__all__ = [
    "PAGE_SIZE", "MAX_DEVICE_LIST", "MAX_ID_LEN", "parse_protocol", "DISTRIBUTION_TYPE", "DEVICE_PROTOCOL",
    "PACKAGE_PROTOCOL", "CLIENT_TYPE", "device_list", "optional_query", "start_index", "numeric_imei",
    "licenses_after", "all_devices", "Page", "page_after",
]

PAGE_SIZE = 1000          # maxPageSize of every v2/v3 listing and the v1 index step (api §4.4)
MAX_DEVICE_LIST = 1000    # devices in one request body
MAX_ID_LEN = 128          # a device id, IMEI or cursor
MAX_QUERY_LEN = 128

_PROTOCOL_ALIASES = {
    "LWM2M": "LWM2M",
    "OMADM": "OMADM", "OMA-DM": "OMADM", "OMD-DM": "OMADM", "OMDADM": "OMADM", "OMA": "OMADM",
    "HTTP": "HTTP",
}

# Wire spelling of a stored protocol, per field family.
DISTRIBUTION_TYPE = {"LWM2M": "LWM2M", "OMADM": "OMD-DM", "HTTP": "HTTP"}   # v2 distributionType
DEVICE_PROTOCOL = {"LWM2M": "LWM2M", "OMADM": "OMADM", "HTTP": "HTTP"}     # v3 device protocol
PACKAGE_PROTOCOL = {"LWM2M": "LWM2M", "OMADM": "OMD-DM"}                   # v3 FirmwarePackage.protocol
CLIENT_TYPE = DEVICE_PROTOCOL                                              # v1 clientType (seed v2.10)


def parse_protocol(value: str, field: str) -> str:
    """Any published spelling of a protocol -> the stored one; a 400 naming the field otherwise."""
    stored = _PROTOCOL_ALIASES.get(value.strip().upper())
    if stored is None:
        raise InvalidRequest(
            f"{field} {value!r} is not a known protocol; use LWM2M, OMD-DM (or OMADM) or HTTP", "InvalidProtocol")
    return stored


def device_list(body: dict[str, Any], key: str = "deviceList", max_len: int = MAX_DEVICE_LIST,
                error_code: str | None = None) -> list[str]:
    """The ``deviceList`` of a request body: 1..max_len non-empty strings, duplicates dropped, order kept.

    ``error_code`` replaces the MissingField/InvalidField codes (campaign requests answer InvalidDeviceList).
    """
    value = body.get(key)
    if value is None:
        raise InvalidRequest(f"{key!r} is required: a list of device ids", error_code or "MissingField")
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"{key!r} must be a non-empty list of device ids", error_code or "InvalidField")
    if len(value) > max_len:
        raise InvalidRequest(f"{key!r} has {len(value)} devices; at most {max_len} are allowed", "TooManyDevices")
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_ID_LEN:
            raise InvalidRequest(
                f"{key!r} entries must be device ids of 1-{MAX_ID_LEN} characters; got {str(item)[:40]!r}",
                error_code or "InvalidField")
    return list(dict.fromkeys(item.strip() for item in value))


def optional_query(request: Request, name: str) -> str | None:
    """A query parameter, or None when absent or empty (the SDK sends nothing for None)."""
    value = request.query_params.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > MAX_QUERY_LEN:
        raise InvalidRequest(f"query parameter {name!r} is longer than {MAX_QUERY_LEN} characters", "InvalidField")
    return value.strip()


def start_index(raw: str | None, name: str = "startIndex") -> int:
    """A v1 ``startIndex`` (path) or v2 ``startIndex`` (query): a non-negative integer; absent means 0."""
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise InvalidRequest(f"{name} must be a non-negative integer, got {raw[:40]!r}", "InvalidField")
    return int(raw)


def numeric_imei(device: Device) -> int | None:
    """The device's IMEI as an integer (the v1 cursor), from ``imei`` or an all-digit device id."""
    for candidate in (device.imei, device.device_id):
        if candidate.isascii() and candidate.isdigit() and len(candidate) <= 20:
            return int(candidate)
    return None


def licenses_after(store: LicenseStore, account_name: str, after_id: str, limit: int) -> list[License]:
    """Up to ``limit`` licenses with device id greater than ``after_id``, in device id order."""
    found: list[License] = []
    offset = 0
    while len(found) < limit:
        chunk = store.list_licenses(account_name, offset=offset, limit=PAGE_SIZE)
        found.extend(lic for lic in chunk if lic.device_id > after_id)
        if len(chunk) < PAGE_SIZE:
            break
        offset += PAGE_SIZE
    return found[:limit]


def all_devices(store: DeviceStore, account_name: str, protocol: str | None = None) -> Iterator[Device]:
    """Every device of the account in device id order, read a page at a time."""
    after = ""
    while True:
        chunk = store.list_devices(account_name, after_id=after, limit=PAGE_SIZE, protocol=protocol)
        yield from chunk
        if len(chunk) < PAGE_SIZE:
            return
        after = chunk[-1].device_id


@dataclass(frozen=True)
class Page:
    items: list[Any]
    has_more: bool


def page_after(items: Sequence[Any], size: int = PAGE_SIZE) -> Page:
    """The first ``size`` of ``items`` (fetched with one extra to tell whether more exist)."""
    return Page(list(items[:size]), len(items) > size)
