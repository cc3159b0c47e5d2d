"""Campaign request bodies of v1, v2 and v3 parsed into one ``CampaignSpec`` (api reference §5, §10).

Only the wire shapes are checked here (types, required keys, sizes, date format); what the values
mean (dates in the past, windows, eligibility, pilots) is the engine's to judge.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from ..campaign.model import MAX_NAME_LEN, CampaignSpec, TimeWindow
from ..campaign.policy import parse_windows
from ..errors import InvalidRequest, NotFound
from ..protocol.delivery import DELIVERY_NAMES, PROTOCOL_DELIVERIES, Delivery, parse_delivery
from ..records import Package
from ..store.ports import PackageStore
from . import models
from .packages import config_package_name

__all__ = [
    "parse_v1_upgrade", "parse_v2_campaign", "parse_v2_file_or_software", "parse_v3_campaign",
    "parse_dates_change", "parse_add_remove", "device_list", "wire_protocol", "delivery_method", "MAX_DEVICE_LIST",
]

MAX_DEVICE_LIST = 10_000
MAX_WINDOW_LIST = 24

# Protocol spellings on the wire (api reference §10.9) -> the stored protocol.
_PROTOCOLS = {"LWM2M": "LWM2M", "HTTP": "HTTP", "OMA": "OMADM", "OMADM": "OMADM", "OMD-DM": "OMADM",
              "OMDADM": "OMADM", "OMA-DM": "OMADM"}


def wire_protocol(value: Any, key: str = "protocol") -> str:
    if not isinstance(value, str) or value.upper() not in _PROTOCOLS:
        raise InvalidRequest(f"{key!r} must be one of LWM2M, OMA (OMD-DM) or HTTP", "InvalidProtocol")
    return _PROTOCOLS[value.upper()]


def _text(body: dict[str, Any], key: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{key!r} is required", "MissingField")
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{key!r} must be a string", "InvalidField")
    if len(value) > MAX_NAME_LEN:
        raise InvalidRequest(f"{key!r} is longer than {MAX_NAME_LEN} characters", "InvalidField")
    return value


def _date(body: dict[str, Any], key: str, required: bool = True) -> date | None:
    text = _text(body, key, required)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise InvalidRequest(f"{key!r} must be a date YYYY-MM-DD, got {text!r}", "InvalidDate") from None


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key!r} must be true or false", "InvalidField")
    return value


def device_list(body: dict[str, Any]) -> tuple[str, ...]:
    """A campaign's ``deviceList``: up to ``MAX_DEVICE_LIST`` ids per request."""
    return tuple(models.device_list(body, "deviceList", MAX_DEVICE_LIST, "InvalidDeviceList"))


def _windows(body: dict[str, Any], key: str) -> tuple[TimeWindow, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_WINDOW_LIST:
        raise InvalidRequest(f"{key!r} must be a list of at most {MAX_WINDOW_LIST} windows", "InvalidWindow")
    pairs = []
    for item in value:
        if not isinstance(item, dict):
            raise InvalidRequest(f"each entry of {key!r} must be an object {{startTime, endTime}}", "InvalidWindow")
        try:  # int in V2/V3TimeWindow, string in DownloadTimeWindow (§10.10)
            pairs.append((int(item.get("startTime", 0)), int(item["endTime"])))
        except (KeyError, TypeError, ValueError):
            raise InvalidRequest(f"{key!r}: startTime and endTime must be hours", "InvalidWindow") from None
    return parse_windows(pairs)


def delivery_method(body: dict[str, Any], protocol: str) -> Delivery:
    """``deliveryMethod`` (our extension; ``protocol/delivery.py``): absent means ``auto``; HTTP and OMA-DM
    campaigns take only ``auto``, ``pull-http`` and ``pull-https``."""
    value = body.get("deliveryMethod")
    if value is None:
        return Delivery.AUTO
    delivery = parse_delivery(value)
    if delivery is None:
        raise InvalidRequest(f"'deliveryMethod' must be one of {', '.join(DELIVERY_NAMES)}", "InvalidDeliveryMethod")
    allowed = PROTOCOL_DELIVERIES.get(protocol, frozenset({Delivery.AUTO}))
    if delivery not in allowed:
        raise InvalidRequest(f"'deliveryMethod' {delivery.value!r} is not possible for a {protocol} campaign; use one "
                             f"of {', '.join(d.value for d in Delivery if d in allowed)}", "InvalidDeliveryMethod")
    return delivery


MAX_DOWNLOAD_TIMEOUT_MINUTES = 7 * 24 * 60


def download_timeout(body: dict[str, Any]) -> int | None:
    """``downloadTimeoutMinutes`` (our extension): how long a device may take to download the image before
    the attempt fails (a device that goes silent is noticed sooner); absent: the account's setting."""
    value = body.get("downloadTimeoutMinutes")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DOWNLOAD_TIMEOUT_MINUTES:
        raise InvalidRequest(f"'downloadTimeoutMinutes' must be a whole number of minutes from 1 to "
                             f"{MAX_DOWNLOAD_TIMEOUT_MINUTES}", "InvalidDownloadTimeout")
    return value * 60


def _package(packages: PackageStore, account: str, name: str, kinds: tuple[str, ...]) -> Package:
    for kind in kinds:
        package = packages.find_package(kind, account, name)
        if package is not None:
            return package
    raise NotFound(f"no {' or '.join(kinds)} named {name!r} is available to this account", "PackageNotFound")


def _config_file(packages: PackageStore, account: str, file_name: str, version: str) -> Package:
    """A configuration file by name and version, or its newest version when none is given."""
    if version:
        return _package(packages, account, config_package_name(file_name, version), ("config",))
    versions = [p for p in packages.list_packages(account, "config") if p.file_name == file_name]
    if not versions:
        raise NotFound(f"no configuration file named {file_name!r} is available to this account", "PackageNotFound")
    return max(versions, key=lambda p: p.created_at)


def _spec(package: Package, api_version: str, kind: str, protocol: str, body: dict[str, Any],
          start: date | None, end: date | None, devices: tuple[str, ...], **extra: Any) -> CampaignSpec:
    if start is None or end is None:
        raise InvalidRequest("'startDate' and 'endDate' are required", "MissingField")
    extra.setdefault("delivery", delivery_method(body, protocol))
    extra.setdefault("download_timeout_s", download_timeout(body))
    return CampaignSpec(
        api_version=api_version, kind=kind, protocol=protocol, package_id=package.package_id,
        make=package.make, model=package.model, firmware_from=extra.pop("firmware_from", package.version_from),
        firmware_to=extra.pop("firmware_to", package.version_to), start_date=start, end_date=end,
        device_ids=devices, name=_text(body, "campaignName", False), package_name=package.name, **extra,
    )


def parse_v3_campaign(packages: PackageStore, account: str, body: dict[str, Any]) -> CampaignSpec:
    """CampaignFirmwareUpgrade (v3 POST /campaigns/firmware/{accountName})."""
    package = _package(packages, account, _text(body, "firmwareName"), ("firmware",))
    return _spec(package, "v3", "firmware", wire_protocol(body.get("protocol", "LWM2M")), body,
                 _date(body, "startDate"), _date(body, "endDate"), device_list(body),
                 firmware_from=_text(body, "firmwareFrom"), firmware_to=_text(body, "firmwareTo"),
                 windows=_windows(body, "campaignTimeWindowList"),
                 auto_assign_license=_bool(body, "autoAssignLicenseFlag"),
                 auto_add_devices=_bool(body, "autoAddDevicesFlag"))


def _v2_extra(body: dict[str, Any]) -> dict[str, Any]:
    return {"download_windows": _windows(body, "downloadTimeWindowList"),
            "install_windows": _windows(body, "installTimeWindowList"),
            "download_after": _date(body, "downloadAfterDate", False),
            "install_after": _date(body, "installAfterDate", False)}


def parse_v2_campaign(packages: PackageStore, account: str, body: dict[str, Any]) -> CampaignSpec:
    """CampaignSoftwareUpgrade (v2 POST /campaigns/{account}): firmware or software for HTTP/OMA devices."""
    package = _package(packages, account, _text(body, "softwareName"), ("software", "firmware"))
    return _spec(package, "v2", package.kind, wire_protocol(body.get("distributionType"), "distributionType"),
                 body, _date(body, "startDate"), _date(body, "endDate"), device_list(body),
                 firmware_from=_text(body, "softwareFrom"), firmware_to=_text(body, "softwareTo"), **_v2_extra(body))


def parse_v2_file_or_software(packages: PackageStore, account: str, body: dict[str, Any], kind: str) -> CampaignSpec:
    """UploadAndScheduleFileRequest (kind "config") or SchedulesSoftwareUpgradeRequest (kind "software")."""
    if kind == "config":
        package = _config_file(packages, account, _text(body, "fileName"), _text(body, "fileVersion", False))
    else:
        package = _package(packages, account, _text(body, "softwareName"), (kind,))
    protocol = wire_protocol(body.get("distributionType") or "HTTP", "distributionType")
    if kind == "config":
        versions = {"firmware_from": "", "firmware_to": _text(body, "fileVersion", False) or package.version_to}
    else:
        versions = {"firmware_from": _text(body, "softwareFrom", False) or package.version_from,
                    "firmware_to": _text(body, "softwareTo", False) or package.version_to}
    return _spec(package, "v2", kind, protocol, body, _date(body, "startDate"), _date(body, "endDate"),
                 device_list(body), **versions, **_v2_extra(body))


def parse_v1_upgrade(packages: PackageStore, account: str, body: dict[str, Any]) -> CampaignSpec:
    """FirmwareUpgradeRequest (v1 POST /upgrades): account in the body; protocol from the firmware."""
    package = _package(packages, account, _text(body, "firmwareName"), ("firmware",))
    return _spec(package, "v1", "firmware", package.protocol, body, _date(body, "startDate"),
                 _date(body, "endDate"), device_list(body), firmware_to=_text(body, "firmwareTo"))


def parse_dates_change(body: dict[str, Any], api_version: str) -> dict[str, Any]:
    """V2/V3ChangeCampaignDatesRequest: the body replaces dates and windows (api reference §4.5)."""
    change: dict[str, Any] = {"start_date": _date(body, "startDate"), "end_date": _date(body, "endDate")}
    if api_version == "v3":
        change["windows"] = _windows(body, "campaignTimeWindowList")
    else:
        change.update(_v2_extra(body))
    return change


def parse_add_remove(body: dict[str, Any], type_key: str) -> tuple[str, tuple[str, ...]]:
    """``Type`` (v2/v3) or ``type`` (v1): append or remove, with the device list."""
    kind = body.get(type_key)
    if kind not in ("append", "remove"):
        raise InvalidRequest(f"{type_key!r} must be 'append' or 'remove'", "InvalidType")
    return str(kind), device_list(body)
