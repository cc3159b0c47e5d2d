"""v3 firmware-version synchronisation (api reference §4.3 v3 firmware, §4.5, models DeviceFirmwareList,
DeviceFirmwareVersionUpdateResult).

- ``PUT /firmware/{acc}/devices`` (body FirmwareIMEI, at most 100 devices) answers at once with the
  firmware version the server last heard from each device; ``firmwareVersionUpdateTime`` is the device's
  last report (every report refreshes the version), absent when it never reported.
- ``PUT /firmware/{acc}/async/{deviceId}`` records a request to ask the device for its version and
  answers with its ``requestId``. A protocol driver takes pending requests (``FirmwareVersionRequests``)
  and reads the version at the device's next contact (LwM2M /3/0/3, HTTP check-in, OMA-DM
  ./DevDetail/FwV); the version shown by the listings and by ``PUT …/devices`` is refreshed when the
  device next reports. One pending request per device: asking again returns the same ``requestId``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import NotFound
from ..records import Device
from ..services import Services
from .bodies import read_json_object
from .management import management
from .models import MAX_ID_LEN, device_list
from .wire import rfc3339

__all__ = ["routes", "FirmwareVersionRequest", "FirmwareVersionRequests", "MAX_SYNC_DEVICES"]

MAX_SYNC_DEVICES = 100


@dataclass(frozen=True)
class FirmwareVersionRequest:
    request_id: str
    account_name: str
    device_id: str
    requested_at: datetime


class FirmwareVersionRequests:
    """Pending asks for a device's firmware version, one per device, taken by the protocol drivers."""

    def __init__(self) -> None:
        self._by_device: dict[str, FirmwareVersionRequest] = {}

    def add(self, account_name: str, device_id: str, now: datetime) -> FirmwareVersionRequest:
        pending = self._by_device.get(device_id)
        if pending is not None and pending.account_name == account_name:
            return pending
        request = FirmwareVersionRequest(uuid.uuid4().hex, account_name, device_id, now)
        self._by_device[device_id] = request
        return request

    def pending(self, device_id: str) -> FirmwareVersionRequest | None:
        return self._by_device.get(device_id)

    def take(self, device_id: str) -> FirmwareVersionRequest | None:
        """Remove and return the device's pending request (the driver is about to ask the device)."""
        return self._by_device.pop(device_id, None)




def _version_entry(device_id: str, device: Device | None) -> dict[str, Any]:
    if device is None:
        return {"deviceId": device_id, "firmwareVersion": "", "status": "FirmwareVersionUpdateFailed",
                "reason": "Device does not exist."}
    if not device.firmware_version:
        return {"deviceId": device_id, "firmwareVersion": "", "status": "FirmwareVersionUpdateFailed",
                "reason": "The device has not reported a firmware version yet."}
    entry: dict[str, Any] = {"deviceId": device_id, "firmwareVersion": device.firmware_version,
             "status": "FirmwareVersionUpdateSuccess", "reason": "Success"}
    if device.last_seen_at is not None:
        entry["firmwareVersionUpdateTime"] = rfc3339(device.last_seen_at)
    return entry


@management
async def synchronize(request: Request, services: Services, account: str) -> Response:
    ids = device_list(await read_json_object(request, services.config.max_body_bytes), max_len=MAX_SYNC_DEVICES)
    entries = [_version_entry(i, services.db.devices.get_device(account, i)) for i in ids]
    return JSONResponse({"accountName": account, "deviceFirmwarVersionList": entries})


@management
async def request_report(request: Request, services: Services, account: str) -> Response:
    device_id = request.path_params["deviceId"]
    if len(device_id) > MAX_ID_LEN or services.db.devices.get_device(account, device_id) is None:
        raise NotFound(f"device {device_id[:MAX_ID_LEN]!r} not found", "DeviceNotFound")
    recorded = services.firmware_requests.add(account, device_id, services.clock.now())
    return JSONResponse({"accountName": account, "requestId": recorded.request_id})


routes = [
    Route("/api/fota/v3/firmware/{acc}/devices", synchronize, methods=["PUT"]),
    Route("/api/fota/v3/firmware/{acc}/async/{deviceId}", request_report, methods=["PUT"]),
]
