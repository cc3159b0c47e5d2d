"""Device listings of the SMS API (api reference §4.1-4.3, paging §4.4, seed v2.9 and v2.10).

- v1 ``GET /devices/{account}/index/{startIndex}``: devices whose IMEI (as an integer) is greater than
  ``startIndex``, in IMEI order; ``lastSeenDeviceId`` (int) is the next cursor, 0 at the end. Devices
  without a numeric IMEI are listed by v2/v3 only. Seed additions: an optional ``clientType`` query filter,
  and each entry's ``clientType`` (LWM2M, OMADM, HTTP) and line-of-service ``status`` (active, suspend).
- v2 ``GET /devices/{account}`` and v3 ``GET /devices/{acc}``: device id order, ``lastSeenDeviceId``
  (string) cursor, ``maxPageSize`` 1000; v2 filters by ``distributionType``, v3 by ``protocol``.
- v3 ``POST /devices/{acc}``: the named devices, each with ``requestStatus`` Success or Failure.

A device is ``fotaEligible`` while its line is active. ``appFotaEligible`` (v2) is true for active HTTP
devices, which take software packages. ``softwareList`` holds the firmware and software versions the
device last reported, each named after the campaign package that brought it (with that upgrade's time) or
else a package that produces that version. ``upgradeTime`` is when a campaign last upgraded the device
(v1: ``01/01/1900 0:0:0`` when never).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..campaign.model import DeviceStatus
from ..records import Device
from ..services import Services
from .bodies import read_json_object
from .management import management
from .models import (
    CLIENT_TYPE, DEVICE_PROTOCOL, DISTRIBUTION_TYPE, PAGE_SIZE, all_devices, device_list, numeric_imei,
    optional_query, page_after, parse_protocol, start_index,
)
from .wire import go_time, rfc3339

__all__ = ["routes", "NEVER_UPGRADED"]

NEVER_UPGRADED = "01/01/1900 0:0:0"  # v1 upgradeTime of a device never upgraded (api §5 DeviceListQueryItem)


@dataclass(frozen=True)
class _Upgrade:
    package_name: str
    kind: str
    version: str
    done_at: datetime


class _DeviceHistory:
    """Per request: the upgrades campaigns completed on each device (newest first), and package names by
    the version they produce, each looked up once."""

    def __init__(self, services: Services, account: str) -> None:
        self._services, self._account = services, account
        self._names: dict[tuple[str, str, str], dict[str, str]] = {}
        self._upgrades: dict[str, list[_Upgrade]] = {}

    def upgrades(self, device_id: str) -> list[_Upgrade]:
        if device_id not in self._upgrades:
            history = self._services.campaigns.device_history(self._account, device_id)
            done = [_Upgrade(c.spec.package_name, c.spec.kind, c.spec.firmware_to, row.updated_at)
                    for c, row in history if row.status == DeviceStatus.SUCCESS]
            self._upgrades[device_id] = sorted(done, key=lambda u: u.done_at, reverse=True)
        return self._upgrades[device_id]

    def last_upgrade_at(self, device: Device) -> datetime | None:
        done = self.upgrades(device.device_id)
        return done[0].done_at if done else None

    def _package_name(self, kind: str, device: Device, version: str) -> str:
        key = (kind, device.make, device.model)
        if key not in self._names:
            packages = self._services.db.packages.list_packages(self._account, kind, make=device.make,
                                                                 model=device.model)
            self._names[key] = {p.version_to: p.name for p in packages}
        return self._names[key].get(version, kind)

    def software_list(self, device: Device) -> list[dict[str, str]]:
        entries = []
        for kind, version in (("firmware", device.firmware_version), ("software", device.software_version)):
            if not version:
                continue
            done = next((u for u in self.upgrades(device.device_id) if (u.kind, u.version) == (kind, version)), None)
            if done is None:
                entries.append({"name": self._package_name(kind, device, version), "version": version,
                                "upgradeTime": ""})
            else:
                entries.append({"name": done.package_name or self._package_name(kind, device, version),
                                "version": version, "upgradeTime": go_time(done.done_at) or ""})
        return entries


def _line_status(device: Device) -> str:
    return device.line_status.capitalize()


def _v1_item(device: Device, licensed: bool, history: _DeviceHistory) -> dict[str, Any]:
    return {
        "deviceId": device.device_id, "mdn": device.mdn, "model": device.model, "make": device.make,
        "firmware": device.firmware_version, "fotaEligible": device.line_status == "active",
        "licenseAssigned": licensed, "upgradeTime": rfc3339(history.last_upgrade_at(device)) or NEVER_UPGRADED,
        "clientType": CLIENT_TYPE.get(device.protocol, device.protocol), "status": device.line_status,
    }


def _times(device: Device, history: _DeviceHistory) -> dict[str, str]:
    stamps = {"createTime": go_time(device.created_at), "upgradeTime": go_time(history.last_upgrade_at(device)),
              "updateTime": go_time(device.last_seen_at), "refreshTime": go_time(device.last_seen_at)}
    return {key: value for key, value in stamps.items() if value is not None}


def _v2_item(device: Device, licensed: bool, history: _DeviceHistory) -> dict[str, Any]:
    active = device.line_status == "active"
    return {
        "deviceId": device.device_id, "mdn": device.mdn, "model": device.model, "make": device.make,
        "fotaEligible": active, "appFotaEligible": active and device.protocol == "HTTP",
        "licenseAssigned": licensed, "distributionType": DISTRIBUTION_TYPE.get(device.protocol, device.protocol),
        "softwareList": history.software_list(device), **_times(device, history),
    }


def _v3_item(device: Device, licensed: bool, history: _DeviceHistory) -> dict[str, Any]:
    return {
        "deviceId": device.device_id, "mdn": device.mdn, "model": device.model, "make": device.make,
        "firmware": device.firmware_version, "fotaEligible": device.line_status == "active",
        "status": _line_status(device), "licenseAssigned": licensed,
        "protocol": DEVICE_PROTOCOL.get(device.protocol, "NONE"), "softwareList": history.software_list(device),
        **_times(device, history),
    }


@management
async def list_v1(request: Request, services: Services, account: str) -> Response:
    cursor = start_index(request.path_params["startIndex"])
    client_type = optional_query(request, "clientType")
    protocol = parse_protocol(client_type, "clientType") if client_type else None
    keyed = [(imei, d) for d in all_devices(services.db.devices, account, protocol)
             if (imei := numeric_imei(d)) is not None and imei > cursor]
    keyed.sort(key=lambda pair: pair[0])
    page = page_after(keyed)
    history, licensed = _DeviceHistory(services, account), services.db.licenses.has_license
    return JSONResponse({
        "accountName": account, "hasMoreData": page.has_more,
        "lastSeenDeviceId": page.items[-1][0] if page.has_more else 0,
        "deviceList": [_v1_item(d, licensed(d.device_id), history) for _, d in page.items],
    })


def _listing(request: Request, services: Services, account: str, filter_name: str) -> tuple[dict[str, Any], list[Device]]:
    after = optional_query(request, "lastSeenDeviceId") or ""
    wanted = optional_query(request, filter_name)
    protocol = parse_protocol(wanted, filter_name) if wanted else None
    page = page_after(services.db.devices.list_devices(account, after_id=after, limit=PAGE_SIZE + 1,
                                                       protocol=protocol))
    body: dict[str, Any] = {"accountName": account, "hasMoreData": page.has_more, "maxPageSize": PAGE_SIZE}
    if page.has_more:
        body["lastSeenDeviceId"] = page.items[-1].device_id
    return body, page.items


@management
async def list_v2(request: Request, services: Services, account: str) -> Response:
    body, devices = _listing(request, services, account, "distributionType")
    history, licensed = _DeviceHistory(services, account), services.db.licenses.has_license
    return JSONResponse({**body, "deviceList": [_v2_item(d, licensed(d.device_id), history) for d in devices]})


@management
async def list_v3(request: Request, services: Services, account: str) -> Response:
    body, devices = _listing(request, services, account, "protocol")
    history, licensed = _DeviceHistory(services, account), services.db.licenses.has_license
    return JSONResponse({**body, "deviceList": [_v3_item(d, licensed(d.device_id), history) for d in devices]})


@management
async def lookup_v3(request: Request, services: Services, account: str) -> Response:
    ids = device_list(await read_json_object(request, services.config.max_body_bytes))
    history, licensed = _DeviceHistory(services, account), services.db.licenses.has_license
    entries: list[dict[str, Any]] = []
    for device_id in ids:
        device = services.db.devices.get_device(account, device_id)
        if device is None:
            entries.append({"deviceId": device_id, "requestStatus": "Failure",
                            "resultReason": "Device does not exist."})
            continue
        entry = {**_v3_item(device, licensed(device_id), history), "requestStatus": "Success", "resultReason": "Success"}
        if device.last_seen_at is not None:
            entry["lastConnectionTime"] = rfc3339(device.last_seen_at)
        entries.append(entry)
    return JSONResponse({"accountName": account, "deviceCount": len(entries), "deviceList": entries})


routes = [
    Route("/api/fota/v1/devices/{account}/index/{startIndex}", list_v1, methods=["GET"]),
    Route("/api/fota/v2/devices/{account}", list_v2, methods=["GET"]),
    Route("/api/fota/v3/devices/{acc}", list_v3, methods=["GET"]),
    Route("/api/fota/v3/devices/{acc}", lookup_v3, methods=["POST"]),
]
